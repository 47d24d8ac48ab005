"""Per-lesion measures (analysis/lesion_measures.py): length along the cord, largest axial area and width, levels
spanned and the longitudinally-extensive flag, maximum axial damage ratio, lesion load per level; in lesions.csv,
levels.csv and summary.json from the command line, and in the Slicer review table.

Lesions are painted into the real manual cord of ``sct_testing_data/t2`` (1 mm, the cord along voxel axis j), and
the same masks are resampled onto an oblique, anisotropic grid. Expected values come from the masks themselves:
from the shapes painted (lengths, areas, widths known by construction), from the level labels, and from SCT's
formulas (``sct_analyze_lesion.py``, cited in docs/conventions.md) recomputed here independently, with the cord's
direction taken from one straight-line fit of the cord centroids around the lesion, not from the code under test.
SCT itself is not installable here (it is not on PyPI), so it was not run.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from analysis_data import T2, load, save
from SpinalLesionSegLib.analysis.lesion_measures import local_slope, slice_frame
from SpinalLesionSegLib.analysis.lesions import analyze_lesions
from SpinalLesionSegLib.analysis.level_sources import load_level_source
from SpinalLesionSegLib.analysis.report import level_table
from SpinalLesionSegLib.cli import main as cli_main
from SpinalLesionSegLib.mrml.nodes import read_volume_node
from SpinalLesionSegLib.mrml.panel import PanelLogic
from SpinalLesionSegLib.mrml.results import create_lesion_segmentation, show_soft_map

#: numpy axes of the t2 grid ([k, j, i] = R, S, P) and of the oblique grid made from it (rotated about L-R).
LR, SLICE, AP = 0, 1, 2


@pytest.fixture(scope="module")
def cord(shared_data: Path) -> tuple[sitk.Image, np.ndarray]:
    reference, values = load(shared_data / T2 / "t2_seg-manual.nii.gz")
    return reference, values > 0


@pytest.fixture(scope="module")
def labels(shared_data: Path) -> np.ndarray:
    return load(shared_data / T2 / "t2_seg-manual_labeled.nii.gz")[1].astype(int)


def prism(cord: np.ndarray, slices: range, half_lr: int = 2, half_ap: int = 1) -> np.ndarray:
    """A lesion along the cord: on each slice a (2 half_lr + 1) x (2 half_ap + 1) voxel rectangle (5 x 3 mm on the
    1 mm grid: 15 mm2, 3 mm anterior-posterior) centred on the cord's centroid, for ``len(slices)`` slices."""
    lesion = np.zeros(cord.shape, dtype=bool)
    for j in slices:
        k, i = np.nonzero(cord[:, j, :])
        ck, ci = round(k.mean()), round(i.mean())
        lesion[ck - half_lr:ck + half_lr + 1, j, ci - half_ap:ci + half_ap + 1] = True
    return lesion


def half_cord(cord: np.ndarray, slices: range) -> np.ndarray:
    """On each slice, the first half (floor(n/2) of n voxels, in (k, i) order: the right half) of the cord."""
    lesion = np.zeros(cord.shape, dtype=bool)
    for j in slices:
        k, i = np.nonzero(cord[:, j, :])  # row-major: sorted by k (R-L), then i
        half = k.size // 2
        lesion[k[:half], j, i[:half]] = True
    return lesion


def oblique(image: sitk.Image, degrees: float, spacing: tuple[float, float, float]) -> sitk.Image:
    """``image`` resampled (nearest neighbour) onto a grid rotated by ``degrees`` about the left-right axis, with
    voxel size ``spacing`` (i, j, k = anterior-posterior, slice, left-right, mm), same centre."""
    angle = np.radians(degrees)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    direction = rotation @ np.array(image.GetDirection()).reshape(3, 3)
    size = np.array(image.GetSize())
    centre = np.array(image.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2).tolist()))
    new_size = np.ceil(size * np.array(image.GetSpacing()) * 1.3 / np.array(spacing)).astype(int)
    origin = centre - direction @ (np.array(spacing) * (new_size - 1) / 2)
    return sitk.Resample(image, new_size.tolist(), sitk.Transform(), sitk.sitkNearestNeighbor, origin.tolist(),
                         spacing, direction.ravel().tolist(), 0, image.GetPixelID())


def on_oblique(reference: sitk.Image, *masks: np.ndarray, degrees: float = 20.0,
               spacing: tuple[float, float, float] = (0.6, 2.0, 0.9)) -> tuple[sitk.Image, list[np.ndarray]]:
    """The masks (on ``reference``'s grid) resampled onto the oblique grid, and that grid."""
    images = []
    for mask in masks:
        image = sitk.GetImageFromArray(mask.astype(np.uint8))
        image.CopyInformation(reference)
        images.append(oblique(image, degrees, spacing))
    return images[0], [sitk.GetArrayFromImage(image) > 0 for image in images]


def sct_formulas(lesion: np.ndarray, cord: np.ndarray, spacing_kji: tuple[float, ...]) -> dict[str, float]:
    """SCT's length, width, area (as in its equivalent diameter) and damage ratio of one lesion, computed here.

    SCT: length = sum over the lesion's axial slices of pz / cos(angle_3d); width = max over slices of the
    anterior-posterior extent (voxels, end to end) x py x cos(angle_sagittal); area = max of voxels x px x py x
    cos(angle_3d); damage ratio = max of lesion area / cord area. The angles here come from one straight line
    fitted to the cord centroids (mm) of the lesion's slices and 10 mm around them.
    """
    slices = np.flatnonzero(lesion.any(axis=(LR, AP)))
    near = [j for j in range(slices[0] - 10, slices[-1] + 11) if 0 <= j < cord.shape[SLICE] and cord[:, j].any()]
    along = np.array(near) * spacing_kji[SLICE]
    slope = {}
    for axis in (LR, AP):
        centre = [np.nonzero(cord[:, j, :])[0 if axis == LR else 1].mean() * spacing_kji[axis] for j in near]
        slope[axis] = np.polyfit(along, centre, 1)[0]
    cos_3d = 1 / np.sqrt(1 + slope[LR] ** 2 + slope[AP] ** 2)
    cos_sagittal = 1 / np.sqrt(1 + slope[AP] ** 2)
    widths, areas, ratios = [], [], []
    for j in slices:
        ap = np.nonzero(lesion[:, j, :])[1]
        widths.append((ap.max() - ap.min() + 1) * spacing_kji[AP] * cos_sagittal)
        areas.append(lesion[:, j, :].sum() * spacing_kji[AP] * spacing_kji[LR] * cos_3d)
        ratios.append((lesion[:, j, :] & cord[:, j, :]).sum() / cord[:, j, :].sum())
    return {"length": slices.size * spacing_kji[SLICE] / cos_3d, "width": max(widths), "area": max(areas),
            "ratio": max(ratios)}


def _only(analysis):
    (lesion,) = analysis.lesions
    return lesion


def test_local_slope_is_exact_on_a_line_and_zero_on_a_single_point() -> None:
    along = np.array([0.0, 1.5, 3.0, 6.0, 7.5, 9.0, 30.0])  # gaps, and a point alone in its window
    np.testing.assert_allclose(local_slope(along, 0.25 * along + 4.0, 20.0)[:-1], 0.25)
    assert local_slope(along, 0.25 * along, 2.0)[-1] == 0.0


def test_prism_along_the_real_cord_has_its_known_length_area_and_width(cord) -> None:
    reference, cord_mask = cord
    lesion = prism(cord_mask, range(10, 40))  # 30 slices of 1 mm
    measured = _only(analyze_lesions(lesion, reference, cord=cord_mask))
    sct = sct_formulas(lesion, cord_mask, reference.GetSpacing()[::-1])
    # The real cord runs within a few degrees of the slice normal: 30 mm, 15 mm2 and 3 mm to within 1 %.
    assert measured.si_extent_mm == 30.0
    assert measured.length_mm == pytest.approx(30.0, rel=0.01) and measured.length_mm >= 30.0
    assert measured.max_axial_area_mm2 == pytest.approx(15.0, rel=0.01)
    assert measured.max_ap_width_mm == pytest.approx(3.0, rel=0.01)
    for name, value in (("length", measured.length_mm), ("area", measured.max_axial_area_mm2),
                        ("width", measured.max_ap_width_mm)):
        assert value == pytest.approx(sct[name], rel=0.01), name
    # Without a cord: length = superior-inferior extent, areas and widths uncorrected, no damage ratio.
    plain = _only(analyze_lesions(lesion, reference))
    assert (plain.length_mm, plain.max_axial_area_mm2, plain.max_ap_width_mm) == (30.0, 15.0, 3.0)
    assert plain.max_damage_ratio is None


def test_oblique_anisotropic_grid_agrees_with_sct_and_with_the_painted_shape(cord) -> None:
    reference, cord_mask = cord
    grid, (oblique_cord, lesion) = on_oblique(reference, cord_mask, prism(cord_mask, range(10, 40)))
    frame = slice_frame(grid)
    assert (frame.axis, frame.ap_axis, frame.lr_axis) == (SLICE, AP, LR)  # slices across the rotated S axis
    measured = _only(analyze_lesions(lesion, grid, cord=oblique_cord))
    spacing = grid.GetSpacing()[::-1]
    sct = sct_formulas(lesion, oblique_cord, spacing)
    assert measured.length_mm == pytest.approx(sct["length"], rel=0.05)  # the tolerance
    assert measured.max_axial_area_mm2 == pytest.approx(sct["area"], rel=0.05)
    assert measured.max_ap_width_mm == pytest.approx(sct["width"], rel=0.05)
    # The painted prism is 30 mm long; on slices tilted by 20 degrees its 3 mm thick end faces add up to
    # 3 x tan(20) mm, and the slice grid up to one slice (2 mm / cos 20). The slice-axis extent falls short.
    tilt = np.radians(20)
    assert 30.0 - spacing[SLICE] <= measured.length_mm <= 30.0 + 3 * np.tan(tilt) + spacing[SLICE] / np.cos(tilt)
    assert measured.si_extent_mm < 30.0 * np.cos(tilt) + 3 * np.sin(tilt) + spacing[SLICE]
    assert measured.max_ap_width_mm == pytest.approx(3.0, abs=spacing[AP])  # within one voxel
    assert measured.max_axial_area_mm2 == pytest.approx(15.0, rel=0.15)  # nearest-neighbour edges


@pytest.mark.parametrize(("slices", "spanned"), [
    (range(14, 39), 3),  # C4, C3, C2
    (range(1, 20), 3),   # C5, C4, C3
    (range(30, 41), 2),  # C3, C2
    (range(42, 49), 1),  # C2
])
def test_levels_spanned_and_the_extensive_flag(cord, labels, shared_data: Path, slices: range,
                                               spanned: int) -> None:
    reference, cord_mask = cord
    lesion = np.zeros(cord_mask.shape, dtype=bool)
    lesion[:, slices.start:slices.stop, :] = cord_mask[:, slices.start:slices.stop, :]
    source = load_level_source(shared_data / T2 / "t2_seg-manual_labeled.nii.gz")
    measured = _only(analyze_lesions(lesion, reference, levels=source, cord=cord_mask, max_distance_mm=0.0))
    assert measured.levels_spanned == spanned == len(set(np.unique(labels[lesion])) - {0})
    assert measured.longitudinally_extensive == (spanned >= 3)


def test_half_the_cord_gives_a_damage_ratio_of_one_half(cord) -> None:
    reference, cord_mask = cord
    lesion = half_cord(cord_mask, range(20, 28))
    measured = _only(analyze_lesions(lesion, reference, cord=cord_mask))
    per_slice = [(n // 2) / n for n in cord_mask[:, 20:28, :].sum(axis=(0, 2))]
    assert measured.max_damage_ratio == pytest.approx(max(per_slice), abs=1e-12)
    assert measured.max_damage_ratio == pytest.approx(0.5, abs=0.05)
    assert measured.max_damage_ratio == pytest.approx(
        sct_formulas(lesion, cord_mask, reference.GetSpacing()[::-1])["ratio"], abs=1e-12)
    # Oblique, anisotropic: the same lesion cut by tilted slices; SCT's formula on the same masks, exactly.
    grid, (oblique_cord, oblique_lesion) = on_oblique(reference, cord_mask, lesion)
    tilted = _only(analyze_lesions(oblique_lesion, grid, cord=oblique_cord))
    sct = sct_formulas(oblique_lesion, oblique_cord, grid.GetSpacing()[::-1])
    assert tilted.max_damage_ratio == pytest.approx(sct["ratio"], abs=1e-12)
    assert tilted.max_damage_ratio == pytest.approx(0.5, abs=0.05)


def _crafted(cord_mask: np.ndarray) -> np.ndarray:
    """A lesion over three levels (C4..C2) and half the cord on C2 slices, apart."""
    lesion = np.zeros(cord_mask.shape, dtype=bool)
    lesion[:, 14:39, :] = cord_mask[:, 14:39, :]
    return lesion | half_cord(cord_mask, range(44, 50))


def test_lesion_load_per_level_by_hand(cord, labels, shared_data: Path) -> None:
    reference, cord_mask = cord
    lesion = _crafted(cord_mask)
    source = load_level_source(shared_data / T2 / "t2_seg-manual_labeled.nii.gz")
    analysis = analyze_lesions(lesion, reference, levels=source, cord=cord_mask, max_distance_mm=0.0)
    rows = {row["level"]: row for row in level_table(analysis, source)}
    assert list(rows) == ["C2", "C3", "C4", "C5", "unassigned"]
    for name, code in (("C2", 2), ("C3", 3), ("C4", 4), ("C5", 5), ("unassigned", 0)):
        at_level = cord_mask & (labels == code)
        assert rows[name]["cord_volume_mm3"] == at_level.sum() * 1.0
        assert rows[name]["lesion_load_pct"] == pytest.approx(100 * (lesion & at_level).sum() / at_level.sum())
    assert rows["C3"]["lesion_load_pct"] == 100.0 and rows["C5"]["lesion_load_pct"] == 0.0
    # Without a level source the whole cord is one row: the whole-cord lesion load.
    whole = {row["level"]: row for row in level_table(analyze_lesions(lesion, reference, cord=cord_mask), None)}
    assert whole["unassigned"]["lesion_load_pct"] == pytest.approx(100 * lesion.sum() / cord_mask.sum())


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_command_line_writes_the_new_columns(cord, labels, shared_data: Path, tmp_path: Path) -> None:
    reference, cord_mask = cord
    lesion = _crafted(cord_mask)
    mask_path = save(lesion.astype(np.uint8), reference, tmp_path / "lesion.nii.gz")
    cord_path = shared_data / T2 / "t2_seg-manual.nii.gz"
    levels_path = shared_data / T2 / "t2_seg-manual_labeled.nii.gz"
    assert cli_main(["stats", "--lesion", str(mask_path), "--cord", str(cord_path), "--levels", str(levels_path),
                     "--max-distance", "0", "-o", str(tmp_path / "out")]) == 0
    expected = analyze_lesions(lesion, reference, cord=cord_mask, levels=load_level_source(levels_path),
                               max_distance_mm=0.0)
    rows = _csv(tmp_path / "out" / "lesions.csv")
    assert [row["levels_spanned"] for row in rows] == ["3", "1"]
    assert [row["longitudinally_extensive"] for row in rows] == ["1", "0"]
    for row, lesion_found in zip(rows, expected.lesions):
        for column, value in (("length_mm", lesion_found.length_mm), ("max_ap_width_mm", lesion_found.max_ap_width_mm),
                              ("max_axial_area_mm2", lesion_found.max_axial_area_mm2),
                              ("max_axial_damage_ratio", lesion_found.max_damage_ratio)):
            assert float(row[column]) == pytest.approx(value), column
    assert float(rows[1]["max_axial_damage_ratio"]) == pytest.approx(0.5, abs=0.05)
    levels = {row["level"]: row for row in _csv(tmp_path / "out" / "levels.csv")}
    at_c4 = cord_mask & (labels == 4)
    assert float(levels["C4"]["lesion_load_pct"]) == pytest.approx(100 * (lesion & at_c4).sum() / at_c4.sum())
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["per_level"]["C4"]["lesion_load_pct"] == pytest.approx(float(levels["C4"]["lesion_load_pct"]))
    assert summary["cord_volume_mm3"] == cord_mask.sum() * 1.0
    assert summary["lesion_load_pct"] == pytest.approx(100 * lesion.sum() / cord_mask.sum())
    assert summary["length_along"] == "cord centreline"

    # Without cord or levels: length is the superior-inferior extent; the cord and level columns stay empty.
    assert cli_main(["stats", "--lesion", str(mask_path), "-o", str(tmp_path / "plain")]) == 0
    plain = _csv(tmp_path / "plain" / "lesions.csv")
    assert [row["length_mm"] for row in plain] == [row["si_extent_mm"] for row in plain] == ["25.0", "6.0"]
    assert {row[c] for row in plain for c in ("max_axial_damage_ratio", "levels_spanned")} == {""}
    assert {row["lesion_load_pct"] for row in _csv(tmp_path / "plain" / "levels.csv")} == {""}


def _table_rows(table) -> list[dict[str, str]]:
    """The review table's rows as text, by column name."""
    names = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    return [{name: table.GetCellText(r, c) for c, name in enumerate(names)} for r in range(table.GetNumberOfRows())]


def _row_at(rows: list[dict[str, str]], centroid_ras: tuple[float, ...]) -> dict[str, str]:
    """The row of the lesion at ``centroid_ras`` (the node's grid numbers lesions in another order than the
    file's, so rows are matched by position)."""
    distance = [np.linalg.norm([float(row[f"centroid_{a}_mm"]) for a in "ras"] - np.array(centroid_ras))
                for row in rows]
    assert min(distance) < 1e-3
    return rows[int(np.argmin(distance))]


def test_panel_review_table_shows_length_levels_flag_and_damage_ratio(mrml_scene, cord, t2_path: Path,
                                                                      shared_data: Path) -> None:
    """Headless, through the panel's logic as the Review button calls it: the cord segment (imported without
    the lesion voxels) plus the lesion gives back the real cord, so the numbers are the command line's."""
    reference, cord_mask = cord
    lesion = _crafted(cord_mask)
    images = []
    for array in (lesion.astype(np.uint8), cord_mask.astype(np.uint8), lesion.astype(np.float32) * 0.9):
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(reference)
        images.append(image)
    volume = read_volume_node(mrml_scene, t2_path, "t2")
    levels_path = shared_data / T2 / "t2_seg-manual_labeled.nii.gz"
    p = SimpleNamespace(inputVolume=volume, softMap=show_soft_map(mrml_scene, images[2], "t2 soft"),
                        segmentation=create_lesion_segmentation(mrml_scene, images[0], volume, cord=images[1]),
                        levelsNode=read_volume_node(mrml_scene, levels_path, "levels", "vtkMRMLLabelMapVolumeNode"))
    table = PanelLogic(mrml_scene).review_table(p)
    names = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    assert names[5:9] == ["length_mm", "levels_spanned", "extensive", "max_damage_ratio"]
    expected = analyze_lesions(lesion, reference, cord=cord_mask, levels=load_level_source(levels_path))
    shown = _table_rows(table)
    assert len(shown) == len(expected.lesions) == 2
    for lesion_found in expected.lesions:
        row = _row_at(shown, lesion_found.centroid_ras)
        assert float(row["length_mm"]) == pytest.approx(lesion_found.length_mm, rel=1e-5)
        assert float(row["max_damage_ratio"]) == pytest.approx(lesion_found.max_damage_ratio, rel=1e-5)
        assert int(row["levels_spanned"]) == lesion_found.levels_spanned
        assert row["extensive"] == ("3+ levels" if lesion_found.levels_spanned >= 3 else "")
    assert sorted(row["levels_spanned"] for row in shown) == ["1", "3"]

    # No cord segment and no levels: length (superior-inferior) only.
    p.segmentation = create_lesion_segmentation(mrml_scene, images[0], volume)
    p.levelsNode = None
    plain = PanelLogic(mrml_scene).review_table(p)
    names = [plain.GetColumnName(c) for c in range(plain.GetNumberOfColumns())]
    assert "length_mm" in names and not {"levels_spanned", "extensive", "max_damage_ratio"} & set(names)
    assert sorted(float(row["length_mm"]) for row in _table_rows(plain)) == [6.0, 25.0]
