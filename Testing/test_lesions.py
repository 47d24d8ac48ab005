"""Connected components, per-lesion measurements and the conservation invariants."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from analysis_data import INTERIOR_SLICES, T2, box_lesion, load, save
from SpinalLesionSegLib.analysis.lesions import analyze_lesions, label_components
from SpinalLesionSegLib.analysis.level_sources import load_level_source
from SpinalLesionSegLib.analysis.levels import UNASSIGNED
from SpinalLesionSegLib.analysis.report import level_table, run_stats
from SpinalLesionSegLib.errors import InputError


def _grid(shape_kji: tuple[int, int, int], spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> sitk.Image:
    image = sitk.Image(list(reversed(shape_kji)), sitk.sitkUInt8)
    image.SetSpacing(spacing)
    image.SetOrigin((10.0, -20.0, 30.0))
    return image


@pytest.mark.parametrize(("offset", "counts"), [
    ((0, 0, 1), {6: 1, 18: 1, 26: 1}),   # faces touch
    ((0, 1, 1), {6: 2, 18: 1, 26: 1}),   # edges touch
    ((1, 1, 1), {6: 2, 18: 2, 26: 1}),   # corners touch
])
def test_connectivity(offset: tuple[int, int, int], counts: dict[int, int]) -> None:
    mask = np.zeros((4, 4, 4), dtype=bool)
    mask[1, 1, 1] = True
    mask[1 + offset[0], 1 + offset[1], 1 + offset[2]] = True
    for connectivity, expected in counts.items():
        assert label_components(mask, connectivity)[1] == expected
    with pytest.raises(InputError, match="connectivity"):
        label_components(mask, 8)


def test_per_lesion_measurements_hand_worked() -> None:
    reference = _grid((6, 6, 6), spacing=(0.5, 0.5, 2.0))  # voxel volume 0.5 mm3; k (LPS z = S) is 2 mm
    mask = np.zeros((6, 6, 6), dtype=bool)
    soft = np.zeros((6, 6, 6))
    mask[1:4, 2, 2] = True               # 3 voxels stacked along k: S extent 3 slices x 2 mm
    soft[1:4, 2, 2] = [0.5, 0.25, 1.0]
    mask[5, 5, 5] = True                 # a second lesion
    analysis = analyze_lesions(mask, reference, soft=soft)
    first, second = analysis.lesions
    assert (first.voxel_count, first.volume_mm3, second.volume_mm3) == (3, 1.5, 0.5)
    assert first.soft_volume_mm3 == pytest.approx(1.75 * 0.5)
    assert first.si_extent_mm == 6.0 and second.si_extent_mm == 2.0
    lps = np.mean([reference.TransformIndexToPhysicalPoint((2, 2, k)) for k in (1, 2, 3)], axis=0)
    assert first.centroid_ras == pytest.approx((-lps[0], -lps[1], lps[2]))
    assert first.primary_level == UNASSIGNED  # no level source: everything is unassigned, nothing dropped


def test_min_size_removes_and_reports_small_lesions() -> None:
    reference = _grid((5, 5, 10))
    mask = np.zeros((5, 5, 10), dtype=bool)
    mask[1, 1, 0:4] = True   # 4 mm3
    mask[3, 3, 0:2] = True   # 2 mm3
    mask[3, 3, 5:8] = True   # 3 mm3
    analysis = analyze_lesions(mask, reference, min_size_mm3=3.0)
    assert [lesion.volume_mm3 for lesion in analysis.lesions] == [4.0, 3.0]
    assert [lesion.id for lesion in analysis.lesions] == [1, 2]
    assert (analysis.removed_small_count, analysis.removed_small_voxels) == (1, 2)
    assert set(np.unique(analysis.labels)) == {0, 1, 2}
    assert np.count_nonzero(analysis.labels) == 7


def test_cord_restriction_with_dilation_in_mm() -> None:
    reference = _grid((9, 9, 9), spacing=(0.5, 0.5, 0.5))
    cord = np.zeros((9, 9, 9), dtype=bool)
    cord[:, 4, 4] = True
    mask = np.zeros_like(cord)
    mask[4, 4, 4] = True      # in the cord
    mask[4, 4, 6] = True      # 1.0 mm from it (2 voxels of 0.5 mm)
    kept = analyze_lesions(mask, reference, cord=cord, restrict_to_cord=True, cord_dilation_mm=1.0)
    assert kept.removed_outside_cord_voxels == 0 and kept.total_voxels == 2
    dropped = analyze_lesions(mask, reference, cord=cord, restrict_to_cord=True, cord_dilation_mm=0.9)
    assert dropped.removed_outside_cord_voxels == 1 and dropped.total_voxels == 1
    reported = analyze_lesions(mask, reference, cord=cord)  # no restriction: counted, and reported as outside
    assert reported.total_voxels == 2
    assert sum(lesion.outside_cord_voxels for lesion in reported.lesions) == 1


@pytest.fixture(scope="module")
def labelled(shared_data: Path) -> tuple[sitk.Image, np.ndarray]:
    return load(shared_data / T2 / "t2_seg-manual_labeled.nii.gz")


def _random_lesions(labels: np.ndarray, seed: int) -> np.ndarray:
    """Random boxes over the real cord and around it, including some wholly outside the cord."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(labels.shape, dtype=bool)
    cord_k, cord_j, cord_i = np.nonzero(labels > 0)
    for _ in range(25):
        n = rng.integers(len(cord_k))
        centre = np.array([cord_k[n], cord_j[n], cord_i[n]]) + rng.integers(-12, 13, size=3)
        low = np.clip(centre - rng.integers(0, 3, size=3), 0, labels.shape)
        high = np.clip(centre + rng.integers(1, 4, size=3), 0, labels.shape)
        mask[low[0]:high[0], low[1]:high[1], low[2]:high[2]] = True
    return mask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_invariants_on_the_real_cord(labelled, shared_data: Path, seed: int) -> None:
    reference, labels = labelled
    mask = _random_lesions(labels, seed)
    source = load_level_source(shared_data / T2 / "t2_seg-manual_labeled.nii.gz")
    analysis = analyze_lesions(mask, reference, levels=source, cord=labels > 0)
    rows = level_table(analysis, source)
    by_level = {row["level"]: row for row in rows}
    total = np.count_nonzero(mask)
    # Nothing silently dropped: every mask voxel is in a lesion, and in exactly one level row.
    assert analysis.total_voxels == total == np.count_nonzero(analysis.labels)
    assert sum(row["voxel_count"] for row in rows) == total
    assert sum(row["volume_mm3"] for row in rows) == total * 1.0
    assert sum(row["lesion_count"] for row in rows) == len(analysis.lesions)
    assert by_level["unassigned"]["voxel_count"] > 0  # some boxes lie > 10 mm from any label
    assert [row["level"] for row in rows] == ["C2", "C3", "C4", "C5", "unassigned"]
    for lesion in analysis.lesions:
        assert lesion.level_voxels.sum() == lesion.voxel_count


def test_per_level_volumes_with_anisotropic_voxels_are_conserved() -> None:
    reference = _grid((8, 20, 8), spacing=(0.6875, 0.6875, 7.5))
    regions = np.zeros((8, 20, 8), dtype=np.int16)
    regions[:, :10, :] = 4
    regions[:, 10:, :] = 3
    levels_image = sitk.GetImageFromArray(regions)
    levels_image.CopyInformation(reference)
    mask = np.zeros((8, 20, 8), dtype=bool)
    mask[2:5, 6:14, 3:5] = True  # spans both levels
    from SpinalLesionSegLib.analysis.levels import LevelSource

    source = LevelSource("cord-labels", Path("regions"), regions=levels_image)
    analysis = analyze_lesions(mask, reference, levels=source)
    (lesion,) = analysis.lesions
    voxel = 0.6875 * 0.6875 * 7.5
    assert lesion.level_voxels[3] == lesion.level_voxels[4] == 24
    assert lesion.primary_level == 3  # a tie goes to the superior level
    rows = level_table(analysis, source)
    assert math.fsum(row["volume_mm3"] for row in rows) == pytest.approx(48 * voxel, rel=1e-12)
    assert [row["volume_mm3"] for row in rows] == [24 * voxel, 24 * voxel, 0.0]


def test_empty_mask_gives_zeros_not_nan(labelled, shared_data: Path, tmp_path: Path) -> None:
    reference, labels = labelled
    lesion = save(np.zeros(labels.shape, np.uint8), reference, tmp_path / "empty.nii.gz")
    soft = save(np.zeros(labels.shape, np.float32), reference, tmp_path / "soft.nii.gz")
    outputs = run_stats(lesion, tmp_path / "out", soft_path=soft,
                        levels_path=shared_data / T2 / "t2_seg-manual_labeled.nii.gz")
    summary = json.loads(outputs.summary_json.read_text())
    assert summary["lesion_count"] == 0
    assert summary["total_volume_mm3"] == summary["total_soft_volume_mm3"] == summary["unassigned_volume_mm3"] == 0
    assert set(summary["per_level"]) == {"C2", "C3", "C4", "C5", "unassigned"}
    cord_columns = {"cord_volume_mm3", "lesion_load_pct"}  # these need a cord: null without one
    assert all(value == 0 for row in summary["per_level"].values() for key, value in row.items()
               if key not in cord_columns)
    assert all(row[key] is None for row in summary["per_level"].values() for key in cord_columns)
    assert "nan" not in outputs.levels_csv.read_text().lower()
    assert outputs.lesions_csv.read_text().count("\n") == 1  # the header only


def test_box_lesions_with_soft_map_and_label_image(labelled, shared_data: Path, tmp_path: Path) -> None:
    reference, labels = labelled
    cord = labels > 0
    c3 = box_lesion(cord, INTERIOR_SLICES[3])
    c4 = box_lesion(cord, INTERIOR_SLICES[4])
    mask = c3 | c4
    soft = np.where(c3, 0.5, 0.0) + np.where(c4, 0.75, 0.0)
    outputs = run_stats(save(mask.astype(np.float64), reference, tmp_path / "les.nii.gz"), tmp_path / "out",
                        soft_path=save(soft.astype(np.float32), reference, tmp_path / "soft.nii.gz"),
                        levels_path=shared_data / T2 / "t2_seg-manual_labeled.nii.gz")
    per_level = outputs.summary["per_level"]
    assert per_level["C3"]["volume_mm3"] == np.count_nonzero(c3)
    assert per_level["C4"]["volume_mm3"] == np.count_nonzero(c4)
    assert per_level["C3"]["soft_volume_mm3"] == pytest.approx(0.5 * np.count_nonzero(c3))
    assert per_level["C4"]["soft_volume_mm3"] == pytest.approx(0.75 * np.count_nonzero(c4))
    assert per_level["C2"]["volume_mm3"] == per_level["C5"]["volume_mm3"] == 0
    written = sitk.ReadImage(str(outputs.label_image))
    assert outputs.label_image.name == "les_lesion_label.nii.gz"
    assert written.GetSize() == reference.GetSize() and written.GetOrigin() == reference.GetOrigin()
    label_values = sitk.GetArrayFromImage(written)
    assert set(np.unique(label_values)) == {0, 1, 2}
    assert np.array_equal(label_values > 0, mask)


def test_other_grids_are_refused_unless_resampling_is_asked_for(labelled, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    reference, labels = labelled
    mask = box_lesion(labels > 0, INTERIOR_SLICES[3])
    lesion = save(mask.astype(np.uint8), reference, tmp_path / "les.nii.gz")
    # The soft map on a grid of half the voxel size, same physical extent: resampled, values preserved.
    soft = save(np.where(mask, 0.5, 0.0).astype(np.float32), reference, tmp_path / "soft.nii.gz")
    fine = sitk.Resample(sitk.ReadImage(str(soft)),
                         [2 * s for s in reference.GetSize()], sitk.Transform(), sitk.sitkNearestNeighbor,
                         reference.TransformContinuousIndexToPhysicalPoint((-0.25, -0.25, -0.25)),
                         [0.5, 0.5, 0.5], reference.GetDirection())
    sitk.WriteImage(fine, str(tmp_path / "fine.nii.gz"))
    with pytest.raises(InputError, match="fine.nii.gz: is on another voxel grid than the lesion mask .*--resample"):
        run_stats(lesion, tmp_path / "out", soft_path=tmp_path / "fine.nii.gz")
    assert not (tmp_path / "out" / "summary.json").exists()
    with caplog.at_level(logging.WARNING):
        outputs = run_stats(lesion, tmp_path / "out", soft_path=tmp_path / "fine.nii.gz", resample=True)
    assert "different voxel grid" in caplog.text and "fine.nii.gz" in caplog.text
    assert outputs.summary["total_soft_volume_mm3"] == pytest.approx(0.5 * np.count_nonzero(mask))
    far = sitk.ReadImage(str(tmp_path / "fine.nii.gz"))
    far.SetOrigin([o + 500.0 for o in far.GetOrigin()])
    sitk.WriteImage(far, str(tmp_path / "far.nii.gz"))
    with pytest.raises(InputError, match="does not overlap"):
        run_stats(lesion, tmp_path / "out", soft_path=tmp_path / "far.nii.gz", resample=True)


def test_a_probability_map_given_as_the_mask_is_refused(labelled, tmp_path: Path) -> None:
    reference, labels = labelled
    soft = save(np.where(labels > 0, 0.4, 0.0), reference, tmp_path / "soft.nii.gz")
    with pytest.raises(InputError, match="looks like a probability map"):
        run_stats(soft, tmp_path / "out")
    outside = save(np.where(labels > 0, 3.0, 0.0).astype(np.float32), reference, tmp_path / "bad_soft.nii.gz")
    with pytest.raises(InputError, match="between 0 and 1"):
        run_stats(save((labels > 0).astype(np.uint8), reference, tmp_path / "m.nii.gz"), tmp_path / "out",
                  soft_path=outside)
