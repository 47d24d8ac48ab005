"""Threshold sweep: scores per threshold and the recommended threshold, on a soft map with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from SpinalLesionSegLib.analysis.sweep import THRESHOLDS, summarise, sweep_case


def _case() -> tuple[np.ndarray, np.ndarray]:
    """Reference lesions A (8 voxels) and B (4); soft map 0.9 on A with a 0.12 halo of 4 voxels beside it,
    0.3 on B, and a separate 0.6 false-positive blob of 2 voxels."""
    ref = np.zeros((12, 12, 12), dtype=bool)
    soft = np.zeros(ref.shape)
    ref[2, 2, 2:10] = True
    soft[2, 2, 2:10] = 0.9
    soft[2, 3, 2:6] = 0.12        # face-adjacent halo: part of A's component when predicted
    ref[8, 8, 2:6] = True
    soft[8, 8, 2:6] = 0.3
    soft[5, 10, 8:10] = 0.6
    return soft, ref


def _expected(threshold: float) -> tuple[float, float]:
    """(lesion F1, Dice) worked by hand from _case for prediction = soft >= threshold."""
    a, halo, b, fp = threshold <= 0.9, threshold <= 0.12, threshold <= 0.3, threshold <= 0.6
    tp, fn, n_fp = a + b, (not a) + (not b), int(fp)
    f1 = tp / (tp + (n_fp + fn) / 2)
    predicted = 8 * a + 4 * halo + 4 * b + 2 * fp
    overlap = 8 * a + 4 * b
    return f1, 2 * overlap / (predicted + 12)


def test_thresholds_are_0_05_to_0_95() -> None:
    assert THRESHOLDS[0] == 0.05 and THRESHOLDS[-1] == 0.95 and len(THRESHOLDS) == 19
    assert np.allclose(np.diff(THRESHOLDS), 0.05)


def test_scores_per_threshold_match_hand_worked_values() -> None:
    soft, ref = _case()
    rows = sweep_case(soft, ref, 1.0)
    for row in rows:
        f1, dice = _expected(row["threshold"])
        assert row["f1"] == pytest.approx(f1), row["threshold"]
        assert row["dice"] == pytest.approx(dice), row["threshold"]
        assert row["ref_lesion_count"] == 2


def test_recommended_threshold_is_best_f1_then_best_dice() -> None:
    soft, ref = _case()
    result = summarise({"case": sweep_case(soft, ref, 1.0)})
    # F1 is 0.8 for every threshold up to 0.3; among those the halo lowers Dice below 0.12: 0.15 is the first
    # threshold that drops it.
    assert result.recommended["threshold"] == 0.15
    assert result.recommended["mean_f1"] == pytest.approx(0.8)


def test_means_over_cases() -> None:
    soft, ref = _case()
    empty = sweep_case(np.zeros_like(soft), np.zeros_like(ref), 1.0)
    result = summarise({"a": sweep_case(soft, ref, 1.0), "b": empty})
    assert all(row["f1"] == 1.0 and row["pred_lesion_count"] == 0 for row in empty)
    for row in result.mean:
        assert row["f1"] == pytest.approx((_expected(row["threshold"])[0] + 1.0) / 2)
