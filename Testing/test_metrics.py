"""Hand-worked Dice and lesion-wise metric cases, under the seed paper's rules and ANIMA's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from analysis_data import INTERIOR_SLICES, T2, box_lesion, load
from SpinalLesionSegLib.analysis.metrics import dice, evaluate, mean_metrics

SHAPE = (10, 10, 30)


def _empty() -> np.ndarray:
    return np.zeros(SHAPE, dtype=bool)


def _line(mask: np.ndarray, row: int, start: int, length: int) -> np.ndarray:
    """A straight lesion of ``length`` voxels along the last axis (isolated by its ``row``)."""
    mask[row, row, start:start + length] = True
    return mask


def test_both_empty_scores_one() -> None:
    result = evaluate(_empty(), _empty(), 1.0)
    assert (result.dice, result.f1, result.ppv, result.recall) == (1.0, 1.0, 1.0, 1.0)
    assert (result.tp, result.fp, result.fn, result.ref_lesion_count, result.pred_lesion_count) == (0, 0, 0, 0, 0)


def test_only_prediction_empty() -> None:
    ref = _line(_line(_empty(), 1, 0, 5), 5, 0, 5)
    result = evaluate(ref, _empty(), 2.0)
    assert (result.dice, result.f1, result.ppv, result.recall) == (0.0, 0.0, 0.0, 0.0)
    assert (result.tp, result.fp, result.fn) == (0, 0, 2)
    assert result.abs_count_difference == 2
    assert result.volume_difference_mm3 == -20.0


def test_only_reference_empty() -> None:
    pred = _line(_empty(), 1, 0, 3)
    result = evaluate(_empty(), pred, 1.0)
    assert (result.dice, result.f1, result.ppv) == (0.0, 0.0, 0.0)
    assert result.recall == 1.0  # no reference lesion was missed
    assert (result.tp, result.fp, result.fn) == (0, 1, 0)


def test_exactly_ten_percent_overlap_is_detected_under_the_paper_rules_not_anima() -> None:
    ref = _line(_empty(), 1, 0, 10)    # 10 voxels
    pred = _line(_empty(), 1, 9, 5)     # covers 1 of them (10%), 4 voxels outside
    paper = evaluate(ref, pred, 1.0)
    assert (paper.tp, paper.fp, paper.fn) == (1, 0, 0)
    assert paper.f1 == paper.ppv == paper.recall == 1.0
    assert paper.dice == pytest.approx(2 * 1 / (10 + 5))
    anima = evaluate(ref, pred, 1.0, rules="anima")  # ANIMA needs strictly more than 10%
    assert (anima.tp, anima.fn) == (0, 1)


def test_just_under_ten_percent_is_a_false_negative_but_not_a_false_positive() -> None:
    ref = _line(_empty(), 1, 0, 11)    # 11 voxels, 1 predicted = 9.1%
    pred = _line(_empty(), 1, 10, 3)
    result = evaluate(ref, pred, 1.0)
    assert (result.tp, result.fp, result.fn) == (0, 0, 1)  # the prediction touches the reference: not FP
    assert result.f1 == 0.0 and result.recall == 0.0 and result.ppv == 0.0


def test_touching_lesions_are_separate_under_6_connectivity() -> None:
    ref = _empty()
    ref[2, 2, 2:6] = True
    ref[3, 3, 2:6] = True     # touches the first along edges only: two lesions with 6-connectivity
    pred = _empty()
    pred[2:4, 2:4, 2:6] = True  # one blob covering both (and the two diagonal lines between them)
    result = evaluate(ref, pred, 1.0)
    assert (result.ref_lesion_count, result.pred_lesion_count) == (2, 1)
    assert (result.tp, result.fp, result.fn) == (2, 0, 0)
    assert result.abs_count_difference == 1
    assert result.dice == pytest.approx(2 * 8 / (8 + 16))


def test_lesion_outside_the_cord_is_a_false_positive(shared_data: Path) -> None:
    _, labels = load(shared_data / T2 / "t2_seg-manual_labeled.nii.gz")
    cord = labels > 0
    ref = box_lesion(cord, INTERIOR_SLICES[3])
    pred = ref.copy()
    pred[0:3, 0:3, 0:3] = True  # a corner of the field of view, far outside the cord
    assert not np.any(cord[0:3, 0:3, 0:3])
    result = evaluate(ref, pred, 1.0)
    assert (result.tp, result.fp, result.fn) == (1, 1, 0)
    assert result.f1 == pytest.approx(1 / (1 + 0.5))
    assert result.ppv == 0.5 and result.recall == 1.0
    assert result.volume_difference_mm3 == 27.0


def test_anima_ignores_lesions_of_3_mm3_or_less_and_tests_false_positive_ratio() -> None:
    ref = _line(_line(_empty(), 1, 0, 3), 5, 0, 10)  # a 3 mm3 lesion (ignored) and a 10 mm3 one
    pred = _empty()
    pred[4:7, 4:7, 0:5] = True  # 45 voxels covering half the 10-voxel lesion: 40/45 outside it (> 65%)
    anima = evaluate(ref, pred, 1.0, rules="anima")
    assert anima.ref_lesion_count == 1
    assert (anima.tp, anima.fn) == (0, 1)   # too much of the covering component lies outside the lesion
    assert anima.fp == 0                    # seen from the prediction, the lesion it covers lies inside enough
    assert anima.ppv == 1.0 and anima.recall == 0.0 and anima.f1 == 0.0
    paper = evaluate(ref, pred, 1.0)
    assert (paper.ref_lesion_count, paper.tp, paper.fn, paper.fp) == (2, 1, 1, 0)


def test_dice_hand_worked_and_means() -> None:
    ref = _empty()
    ref[1, 1, 0:4] = True
    pred = _empty()
    pred[1, 1, 2:6] = True
    assert dice(ref, pred) == 0.5
    means = mean_metrics([evaluate(ref, pred, 1.0), evaluate(ref, ref, 1.0)])
    assert means["dice"] == 0.75
    assert means["tp"] == 1.0
