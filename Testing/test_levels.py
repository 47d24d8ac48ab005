"""Vertebral level sources, detection and assignment rules, on the real labelled cord of sct_testing_data/t2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from analysis_data import INTERIOR_SLICES, T2, box_lesion, disc_point_image, disc_points, load, markups_file, save
from SpinalLesionSegLib.analysis.lesions import analyze_lesions
from SpinalLesionSegLib.analysis.level_sources import load_level_source, parse_disc_label
from SpinalLesionSegLib.analysis.levels import UNASSIGNED, assign_levels, level_name, levels_between_discs
from SpinalLesionSegLib.errors import InputError

#: TotalSpineSeg codes of C2..C5 and its C2C3, C3C4, C4C5 discs.
TSS_VERTEBRA = {2: 12, 3: 13, 4: 14, 5: 15}
TSS_DISC = {3: 63, 4: 64, 5: 65}


@pytest.fixture(scope="module")
def labelled(shared_data: Path) -> tuple[sitk.Image, np.ndarray]:
    return load(shared_data / T2 / "t2_seg-manual_labeled.nii.gz")


@pytest.fixture(scope="module")
def lesions(labelled) -> np.ndarray:
    """Three box lesions well inside C2, C3 and C4, partial cross-sections (k halves) so they are not whole slabs."""
    _, labels = labelled
    cord = labels > 0
    return (box_lesion(cord, INTERIOR_SLICES[2]) | box_lesion(cord, INTERIOR_SLICES[3], k=slice(0, 30))
            | box_lesion(cord, INTERIOR_SLICES[4], k=slice(28, None)))


def _levels_per_voxel(source_path: Path, labelled, lesions: np.ndarray, kind: str = "auto",
                      cord: np.ndarray | None = None) -> tuple[str, np.ndarray]:
    reference, _ = labelled
    source = load_level_source(source_path, kind)
    return source.kind, assign_levels(source, reference, np.flatnonzero(lesions), cord=cord)


def test_level_names_follow_sct_numbering() -> None:
    assert [level_name(c) for c in (1, 7, 8, 19, 20, 24, 25, 27, 29, 30, 0)] == [
        "C1", "C7", "T1", "T12", "L1", "L5", "S", "S", "S", "Co", "unassigned"]


@pytest.mark.parametrize(("label", "number"), [
    ("C2-C3", 3), ("C2/C3", 3), ("c2c3", 3), (" C7 - T1 ", 8), ("T12/L1", 20), ("L5-S1", 25), ("L5-S", 25),
    ("C1-C2", 2), ("3", 3), ("C2-C4", None), ("C3-C2", None), ("C2", None), ("disc", None)])
def test_markups_labels_name_discs(label: str, number: int | None) -> None:
    assert parse_disc_label(label) == number


def test_levels_between_discs_hand_worked() -> None:
    # Discs 3 (s = 30 mm), 4 (20 mm) and 6 (0 mm): C3 = (20, 30], C4 = (10, 20], C5 = (0, 10] (gap split evenly).
    numbers, disc_s = np.array([3, 4, 6]), np.array([30.0, 20.0, 0.0])
    s = np.array([31.0, 30.0, 25.0, 20.0, 19.9, 10.0, 9.9, 0.0, -1.0])
    assert levels_between_discs(numbers, disc_s, s).tolist() == [0, 3, 3, 4, 4, 5, 5, 0, 0]


def test_labelled_cord_assigns_each_voxel_its_label(labelled, lesions, shared_data: Path) -> None:
    _, labels = labelled
    kind, codes = _levels_per_voxel(shared_data / T2 / "t2_seg-manual_labeled.nii.gz", labelled, lesions)
    assert kind == "cord-labels"
    assert np.array_equal(codes, labels.ravel()[np.flatnonzero(lesions)])


def test_voxels_outside_the_labels_take_the_nearest_label_within_the_distance(labelled, shared_data: Path) -> None:
    reference, labels = labelled
    cord = labels > 0
    # One voxel 3 mm to the side (+k) of the cord's edge on a C3 slice, one 15 mm away: the first gets C3.
    j = 27
    k_edge = int(np.nonzero(cord[:, j, :].any(axis=1))[0].max())
    i_mid = int(np.nonzero(cord[k_edge, j, :])[0].mean())
    mask = np.zeros(labels.shape, dtype=bool)
    mask[k_edge + 3, j, i_mid] = True
    mask[min(k_edge + 15, labels.shape[0] - 1), j, i_mid] = True
    source = load_level_source(shared_data / T2 / "t2_seg-manual_labeled.nii.gz")
    codes = assign_levels(source, reference, np.flatnonzero(mask))
    assert codes.tolist() == [3, UNASSIGNED]
    assert assign_levels(source, reference, np.flatnonzero(mask), max_distance_mm=20).tolist() == [3, 3]
    assert assign_levels(source, reference, np.flatnonzero(mask), max_distance_mm=0).tolist() == [0, 0]


@pytest.mark.parametrize("with_cord", [False, True], ids=["image-axis", "centreline"])
def test_disc_points_agree_with_the_labelled_cord_away_from_boundaries(labelled, lesions, shared_data: Path,
                                                                       tmp_path: Path, with_cord: bool) -> None:
    reference, labels = labelled
    points = disc_points(labels)
    assert sorted(points) == [2, 3, 4, 5, 6]
    path = save(disc_point_image(labels.shape, points), reference, tmp_path / "discs.nii.gz")
    kind, codes = _levels_per_voxel(path, labelled, lesions, cord=(labels > 0) if with_cord else None)
    assert kind == "disc-points"
    assert np.array_equal(codes, labels.ravel()[np.flatnonzero(lesions)])


def test_markups_point_list_agrees_with_the_labelled_cord(labelled, lesions, tmp_path: Path) -> None:
    reference, labels = labelled
    points = disc_points(labels)
    names = {2: "C1-C2", 3: "C2/C3", 4: "C3C4", 5: "5", 6: "C5-C6"}
    path = markups_file(points, reference, names, tmp_path / "discs.mrk.json")
    kind, codes = _levels_per_voxel(path, labelled, lesions)
    assert kind == "markups"
    assert np.array_equal(codes, labels.ravel()[np.flatnonzero(lesions)])


def _blob(image: np.ndarray, centre: tuple[int, int, int], value: int) -> None:
    k, j, i = centre
    image[k - 1:k + 2, j - 1:j + 2, i - 1:i + 2] = value


def test_totalspineseg_output_agrees_with_the_labelled_cord(labelled, lesions, tmp_path: Path) -> None:
    reference, labels = labelled
    tss = np.zeros(labels.shape, dtype=np.int16)
    for level, code in TSS_VERTEBRA.items():
        tss[labels == level] = code
    # A disc label anterior to the cord (as TotalSpineSeg writes discs 63..100), irrelevant for the vertebra rule.
    k, j, i = disc_points(labels)[3]
    _blob(tss, (k, j, i - 8), TSS_DISC[3])
    path = save(tss, reference, tmp_path / "tss.nii.gz")
    kind, codes = _levels_per_voxel(path, labelled, lesions)
    assert kind == "totalspineseg"
    assert np.array_equal(codes, labels.ravel()[np.flatnonzero(lesions)])


def test_totalspineseg_step1_uses_its_discs(labelled, lesions, tmp_path: Path) -> None:
    reference, labels = labelled
    step1 = np.where(labels > 0, 50, 0).astype(np.int16)  # every vertebra but C1 is 50 in step 1
    points = disc_points(labels)
    for number, code in TSS_DISC.items():
        _blob(step1, points[number], code)
    path = save(step1, reference, tmp_path / "step1.nii.gz")
    kind, codes = _levels_per_voxel(path, labelled, lesions)
    assert kind == "totalspineseg"
    expected = labels.ravel()[np.flatnonzero(lesions)]
    # Discs C2C3..C4C5 bound C3 and C4 only; the C2 lesion lies above the first disc: unassigned, not dropped.
    bounded = np.isin(expected, [3, 4])
    assert np.array_equal(codes[bounded], expected[bounded])
    assert np.all(codes[~bounded] == UNASSIGNED)


def test_per_level_volumes_of_box_lesions_are_exact(labelled, lesions, shared_data: Path) -> None:
    reference, labels = labelled
    source = load_level_source(shared_data / T2 / "t2_seg-manual_labeled.nii.gz")
    analysis = analyze_lesions(lesions, reference, levels=source)
    per_level = analysis.level_voxels()
    for level in (2, 3, 4):
        expected_mm3 = np.count_nonzero(lesions & (labels == level)) * 1.0  # 1 mm isotropic
        assert expected_mm3 > 0
        assert per_level[level] * analysis.voxel_volume_mm3 == expected_mm3
    assert per_level[UNASSIGNED] == 0
    assert sorted(lesion.primary_level for lesion in analysis.lesions) == [2, 3, 4]


def test_explicit_kind_overrides_detection(labelled, shared_data: Path, tmp_path: Path) -> None:
    reference, labels = labelled
    # TotalSpineSeg codes 12..15 alone look like an SCT labelled cord at T5..T8: the kind flag decides.
    tss = np.zeros(labels.shape, dtype=np.int16)
    for level, code in TSS_VERTEBRA.items():
        tss[labels == level] = code
    path = save(tss, reference, tmp_path / "tss_vertebrae.nii.gz")
    assert load_level_source(path).covered_levels() == {12, 13, 14, 15}
    assert load_level_source(path, "totalspineseg").covered_levels() == {2, 3, 4, 5}
    with pytest.raises(InputError, match="outside SCT's vertebral levels"):
        load_level_source(save(tss + 50 * (tss > 0), reference, tmp_path / "big.nii.gz"), "cord-labels")


def test_bad_level_sources_are_one_line_errors(labelled, tmp_path: Path) -> None:
    reference, labels = labelled
    with pytest.raises(InputError, match="contains no labels"):
        load_level_source(save(np.zeros(labels.shape, np.int16), reference, tmp_path / "zeros.nii.gz"))
    one = disc_point_image(labels.shape, {3: disc_points(labels)[3]})
    with pytest.raises(InputError, match="at least two"):
        load_level_source(save(one, reference, tmp_path / "one.nii.gz"))
    points = disc_points(labels)
    with pytest.raises(InputError, match="does not name a disc"):
        load_level_source(markups_file(points, reference, {n: "C2" for n in points}, tmp_path / "bad.mrk.json"))
    (tmp_path / "broken.mrk.json").write_text("{not json")
    with pytest.raises(InputError, match="not a Slicer markups file"):
        load_level_source(tmp_path / "broken.mrk.json")
    swapped = {3: points[4], 4: points[3]}
    source = load_level_source(save(disc_point_image(labels.shape, swapped), reference, tmp_path / "swap.nii.gz"))
    with pytest.raises(InputError, match="superior-to-inferior"):
        assign_levels(source, reference, np.flatnonzero(labels > 0))
