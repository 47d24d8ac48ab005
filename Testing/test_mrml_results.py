"""MRML result helpers (soft map, lesion segmentation, live threshold, edit detection, review, statistics, export)
under the Qt-free slicer-core wheel, on real MRI and on phantoms with exact ground truth."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from SpinalLesionSegLib.analysis.lesions import analyze_lesions, label_components
from SpinalLesionSegLib.analysis.level_sources import load_level_source, read_markups_discs
from SpinalLesionSegLib.analysis.levels import LevelSource, level_name
from SpinalLesionSegLib.analysis.report import run_stats
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.geometry import ijk_to_ras_matrix
from SpinalLesionSegLib.image_io import read_image, write_image
from SpinalLesionSegLib.mrml.nodes import (
    image_from_volume_node,
    load_segmentation,
    node_ijk_to_ras,
    read_volume_node,
    volume_node_from_image,
)
from SpinalLesionSegLib.mrml.results import (
    CORD_SEGMENT_NAME,
    FALLBACK_COLOR_TABLE_ID,
    LESION_SEGMENT_NAME,
    LESION_TERMINOLOGY,
    SOFT_MAP_COLOR_TABLE_ID,
    add_thresholded_segment,
    create_lesion_segmentation,
    lesion_segment_id,
    node_array,
    rethreshold_lesion_segment,
    segment_mask,
    segment_was_edited,
    show_soft_map,
    write_segment_mask,
)
from SpinalLesionSegLib.mrml.review import (
    analyze_segment,
    largest_lesion_ras,
    lesion_centroid_ras,
    lesion_review_table,
    reject_lesion,
)
from SpinalLesionSegLib.mrml.statistics import (
    export_statistics,
    level_source_from_markups,
    markups_to_disc_points,
    statistics_nodes,
)
from SpinalLesionSegLib.phantom import make_phantom


@pytest.fixture()
def scene(mrml_scene: slicer.vtkMRMLScene) -> slicer.vtkMRMLScene:
    return mrml_scene


def _add_inferno(scene: slicer.vtkMRMLScene) -> None:
    """Add an Inferno file colour table with the ID Slicer gives it (slicer-core ships no colour files)."""
    table = slicer.vtkMRMLColorTableNode()
    table.SetTypeToFile()
    table.SetSingletonTag(slicer.vtkMRMLColorLogic.GetFileColorNodeSingletonTag("Inferno.txt"))
    table.SetNumberOfColors(256)
    scene.AddNode(table)
    assert table.GetID() == SOFT_MAP_COLOR_TABLE_ID


def _ras_to_node_kji(node, ras: np.ndarray) -> tuple[np.ndarray, ...]:
    ijk = (np.linalg.inv(node_ijk_to_ras(node)) @ np.c_[ras, np.ones(len(ras))].T)[:3].T
    rounded = np.round(ijk).astype(int)
    assert np.allclose(ijk, rounded, atol=1e-3)
    return tuple(rounded[:, ::-1].T)


def _file_voxels_ras(image: sitk.Image, kji: np.ndarray) -> np.ndarray:
    """RAS (mm) of file voxels by SimpleITK's own index-to-physical mapping (LPS), independent of our matrices."""
    lps = np.array([image.TransformIndexToPhysicalPoint([int(v) for v in p[::-1]]) for p in kji])
    return lps * [-1, -1, 1]


def _phantom_soft(lesion: sitk.Image) -> sitk.Image:
    """A plausible probability map: high inside the lesions, partial values around them (0..1)."""
    mask = sitk.Cast(lesion, sitk.sitkFloat32)
    soft = mask * 0.55 + sitk.SmoothingRecursiveGaussian(mask, 1.0) * 0.6
    return sitk.Clamp(soft, sitk.sitkFloat32, 0.0, 1.0)


@pytest.fixture()
def phantom_scene(scene):
    phantom = make_phantom(11, orientation="RAS", lesion_count=4, fov_mm=(40.0, 48.0, 96.0),
                           spacing=(0.5, 0.5, 1.0))
    soft = _phantom_soft(phantom.lesion)
    volume = volume_node_from_image(scene, phantom.image, "phantom")
    soft_node = show_soft_map(scene, soft, "phantom soft")
    segmentation = create_lesion_segmentation(scene, soft >= 0.5, volume, cord=phantom.cord)
    return phantom, soft, volume, soft_node, segmentation


# ---------------------------------------------------------------------------------------------------------------
# Soft map and segmentation on a real, left-handed file


def test_soft_map_node_geometry_and_display_on_real_t2(scene, t2_path: Path) -> None:
    _add_inferno(scene)
    image = read_image(t2_path)
    values = sitk.GetArrayFromImage(image).astype(np.float32)
    soft = sitk.GetImageFromArray(values / values.max())
    soft.CopyInformation(image)
    node = show_soft_map(scene, soft, "t2 soft")
    theirs = read_volume_node(scene, t2_path)  # Slicer's own reader: the input volume the user loaded
    np.testing.assert_allclose(node_ijk_to_ras(node), node_ijk_to_ras(theirs), atol=1e-5)
    # Voxels at the same RAS position hold the same value (SimpleITK's index-to-point, not raw arrays).
    kji = np.argwhere(values > 0)[:: 997]
    assert len(kji) > 20
    node_values = node_array(node)[_ras_to_node_kji(node, _file_voxels_ras(image, kji))]
    np.testing.assert_array_equal(node_values, values[tuple(kji.T)] / values.max())
    assert node.GetImageData().GetScalarType() == 10  # VTK_FLOAT
    display = node.GetDisplayNode()
    assert display.GetColorNodeID() == SOFT_MAP_COLOR_TABLE_ID
    assert not display.GetAutoWindowLevel()
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == (0.0, 1.0)


def test_soft_map_falls_back_to_iron_without_colour_files(scene, t2_path: Path) -> None:
    node = show_soft_map(scene, sitk.Cast(read_image(t2_path) * 0, sitk.sitkFloat32), "soft")
    assert node.GetDisplayNode().GetColorNodeID() == FALLBACK_COLOR_TABLE_ID
    with pytest.raises(InputError, match="colour table"):
        show_soft_map(slicer.vtkMRMLScene(), read_image(t2_path), "soft")


def test_lesion_segmentation_on_real_t2_matches_file_voxels_in_ras(scene, t2_path: Path) -> None:
    image = read_image(t2_path)
    volume = read_volume_node(scene, t2_path)
    mask = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    mask[20:24, 30:33, 25:29] = 1
    mask[40, 10, 5] = 1
    cord = np.zeros_like(mask)
    cord[15:30, 25:40, 20:35] = 1
    binary, cord_image = sitk.GetImageFromArray(mask), sitk.GetImageFromArray(cord)
    binary.CopyInformation(image)
    cord_image.CopyInformation(image)
    segmentation = create_lesion_segmentation(scene, binary, volume, cord=cord_image)
    assert segmentation.GetName() == "t2 lesions"
    lesion_id = lesion_segment_id(segmentation)
    segment = segmentation.GetSegmentation().GetSegment(lesion_id)
    assert segment.GetName() == LESION_SEGMENT_NAME
    assert segment.GetTerminology() == LESION_TERMINOLOGY
    assert LESION_TERMINOLOGY.split("~")[2] == "SCT^23583003^Inflammation"  # an entry Slicer 5.10 has
    assert segment.GetColor()[0] > 0.8 and segment.GetColor()[1] < 0.3
    got = segment_mask(segmentation, lesion_id, volume)
    assert got.sum() == mask.sum() == 49
    on = np.argwhere(mask)
    assert got[_ras_to_node_kji(volume, _file_voxels_ras(image, on))].all()
    cord_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName(CORD_SEGMENT_NAME)
    cord_got = segment_mask(segmentation, cord_id, volume)
    assert cord_got.sum() == np.count_nonzero(cord & (mask == 0))
    assert not (cord_got & got).any()
    assert not segment_was_edited(segmentation, lesion_id)
    # The reference geometry is the input volume's grid.
    geometry = segmentation.GetSegmentation().GetConversionParameter("Reference image geometry")
    assert geometry
    np.testing.assert_allclose(np.array(geometry.split(";")[:16], float).reshape(4, 4),
                               node_ijk_to_ras(volume), atol=1e-5)


def test_empty_mask_still_has_a_lesion_segment(scene, t2_path: Path) -> None:
    image = read_image(t2_path)
    volume = read_volume_node(scene, t2_path)
    segmentation = create_lesion_segmentation(scene, image * 0, volume)
    lesion_id = lesion_segment_id(segmentation)
    assert not segment_mask(segmentation, lesion_id, volume).any()
    assert largest_lesion_ras(segmentation, lesion_id, volume) is None
    with pytest.raises(InputError, match="MS lesion"):
        lesion_segment_id(scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "other"))


# ---------------------------------------------------------------------------------------------------------------
# Live threshold and edit detection


def test_rethreshold_equals_soft_threshold_exactly_and_keeps_the_segment(phantom_scene) -> None:
    _, soft, volume, soft_node, segmentation = phantom_scene
    lesion_id = lesion_segment_id(segmentation)
    segment = segmentation.GetSegmentation().GetSegment(lesion_id)
    before = (segment.GetName(), segment.GetColor(), segment.GetTerminology())
    soft_kji = node_array(soft_node)
    for threshold in (0.5, 0.2, 0.8, 0.05, 1.0, 0.6):
        count = rethreshold_lesion_segment(segmentation, lesion_id, soft_node, threshold, volume)
        expected = soft_kji >= threshold
        assert count == expected.sum()
        assert (count > 0) == (threshold < 1.0)
        assert np.array_equal(segment_mask(segmentation, lesion_id, volume), expected)
        assert not segment_was_edited(segmentation, lesion_id)
    same = segmentation.GetSegmentation().GetSegment(lesion_id)
    assert (same.GetName(), same.GetColor(), same.GetTerminology()) == before
    # The cord segment is left alone by the lesion update.
    cord_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName(CORD_SEGMENT_NAME)
    assert segment_mask(segmentation, cord_id, volume).sum() > 0
    with pytest.raises(InputError, match="threshold"):
        rethreshold_lesion_segment(segmentation, lesion_id, soft_node, 1.5, volume)


def test_rethreshold_refuses_a_soft_map_on_another_grid(scene, phantom_scene, t2_path: Path) -> None:
    _, _, volume, _, segmentation = phantom_scene
    other = show_soft_map(scene, sitk.Cast(read_image(t2_path) * 0, sitk.sitkFloat32), "other soft")
    with pytest.raises(InputError, match="grid"):
        rethreshold_lesion_segment(segmentation, lesion_segment_id(segmentation), other, 0.5, volume)


def test_edit_detection(phantom_scene) -> None:
    _, _, volume, soft_node, segmentation = phantom_scene
    lesion_id = lesion_segment_id(segmentation)
    assert not segment_was_edited(segmentation, lesion_id)
    mask = segment_mask(segmentation, lesion_id, volume)
    edited = mask.copy()
    k, j, i = np.argwhere(~mask)[0]
    edited[k, j, i] = True  # the user paints one voxel
    write_segment_mask(segmentation, lesion_id, edited, volume)
    assert segment_was_edited(segmentation, lesion_id)
    # Writing a new threshold into a new segment leaves the edited one (and its edit state) alone.
    new_id = add_thresholded_segment(segmentation, soft_node, 0.4, volume)
    new = segmentation.GetSegmentation().GetSegment(new_id)
    assert new.GetName() == "MS lesion (threshold 0.40)"
    assert new.GetTerminology() == LESION_TERMINOLOGY
    assert np.array_equal(segment_mask(segmentation, new_id, volume), node_array(soft_node) >= 0.4)
    assert np.array_equal(segment_mask(segmentation, lesion_id, volume), edited)
    assert segment_was_edited(segmentation, lesion_id) and not segment_was_edited(segmentation, new_id)
    # Re-thresholding the lesion segment (after the user agreed) makes it automatic again.
    rethreshold_lesion_segment(segmentation, lesion_id, soft_node, 0.5, volume)
    assert not segment_was_edited(segmentation, lesion_id)


# ---------------------------------------------------------------------------------------------------------------
# Review


def test_review_table_reject_and_jump(scene, phantom_scene) -> None:
    phantom, soft, volume, soft_node, segmentation = phantom_scene
    lesion_id = lesion_segment_id(segmentation)
    levels = LevelSource("cord-labels", Path("levels"), regions=phantom.levels)
    mask = segment_mask(segmentation, lesion_id, volume)
    reference = image_from_volume_node(volume)
    analysis = analyze_lesions(mask, reference, soft=node_array(soft_node).astype(np.float64), levels=levels)
    assert len(analysis.lesions) == 4
    table = lesion_review_table(scene, segmentation, lesion_id, soft_node, volume, levels=levels,
                                low_probability=0.75)
    content = table.GetTable()
    assert content.GetNumberOfRows() == 4
    names = [content.GetColumnName(c) for c in range(content.GetNumberOfColumns())]
    assert names == ["id", "volume_mm3", "mean_probability", "level", "flag", "length_mm", "levels_spanned",
                     "extensive", "max_damage_ratio", "centroid_r_mm", "centroid_a_mm", "centroid_s_mm"]
    rows = {content.GetValueByName(row, "id").ToInt(): row for row in range(content.GetNumberOfRows())}
    assert sorted(rows) == [lesion.id for lesion in analysis.lesions]
    means = [content.GetValueByName(row, "mean_probability").ToDouble() for row in range(content.GetNumberOfRows())]
    assert means == sorted(means), "the least probable lesions come first"
    for lesion in analysis.lesions:
        row = rows[lesion.id]
        assert content.GetValueByName(row, "volume_mm3").ToDouble() == pytest.approx(lesion.volume_mm3)
        mean = node_array(soft_node)[analysis.labels == lesion.id].mean()
        assert content.GetValueByName(row, "mean_probability").ToDouble() == pytest.approx(mean, rel=1e-6)
        assert content.GetValueByName(row, "level").ToString() == level_name(lesion.primary_level)
        assert content.GetValueByName(row, "flag").ToString() == ("check" if mean < 0.75 else "")
        assert content.GetValueByName(row, "centroid_s_mm").ToDouble() == pytest.approx(lesion.centroid_ras[2])
        assert lesion_centroid_ras(segmentation, lesion_id, lesion.id, volume) == pytest.approx(lesion.centroid_ras)
    largest = max(analysis.lesions, key=lambda lesion: lesion.voxel_count)
    assert largest_lesion_ras(segmentation, lesion_id, volume) == pytest.approx(largest.centroid_ras)

    labels, _ = label_components(mask, 18)
    removed = reject_lesion(segmentation, lesion_id, 2, volume)
    assert removed == np.count_nonzero(labels == 2)
    assert np.array_equal(segment_mask(segmentation, lesion_id, volume), mask & (labels != 2))
    assert segment_was_edited(segmentation, lesion_id)
    refreshed = lesion_review_table(scene, segmentation, lesion_id, soft_node, volume, table=table)
    assert refreshed is table and table.GetTable().GetNumberOfRows() == 3
    with pytest.raises(InputError, match="no lesion 9"):
        reject_lesion(segmentation, lesion_id, 9, volume)


# ---------------------------------------------------------------------------------------------------------------
# Statistics, markups and export


def test_statistics_tables_and_chart(scene, phantom_scene) -> None:
    phantom, _, volume, soft_node, segmentation = phantom_scene
    levels = LevelSource("cord-labels", Path("levels"), regions=phantom.levels)
    lesion_id = lesion_segment_id(segmentation)
    analysis = analyze_segment(segmentation, lesion_id, volume, soft_node=soft_node, levels=levels)
    nodes = statistics_nodes(scene, analysis, levels, "phantom")
    assert nodes.lesions.GetTable().GetNumberOfRows() == len(analysis.lesions) == 4
    level_table = nodes.levels.GetTable()
    rows = {level_table.GetValueByName(r, "level").ToString(): r for r in range(level_table.GetNumberOfRows())}
    order = list(rows)
    assert order[-1] == "unassigned"
    codes = [code for code in range(1, 31) if level_name(code) in order[:-1]]
    assert order[:-1] == [level_name(code) for code in sorted(codes)]  # anatomical order
    per_level = analysis.level_voxels() * analysis.voxel_volume_mm3
    for code, volume_mm3 in enumerate(per_level):
        name = level_name(code)
        if volume_mm3:
            assert level_table.GetValueByName(rows[name], "volume_mm3").ToDouble() == pytest.approx(volume_mm3)
    assert sum(level_table.GetValueByName(r, "volume_mm3").ToDouble() for r in rows.values()) == pytest.approx(
        sum(lesion.volume_mm3 for lesion in analysis.lesions))
    assert nodes.chart.GetPlotSeriesNodeID() == nodes.series.GetID()
    assert nodes.series.GetPlotType() == slicer.vtkMRMLPlotSeriesNode.PlotTypeScatterBar
    assert nodes.series.GetTableNodeID() == nodes.chart_table.GetID()
    chart = nodes.chart_table.GetTable()
    assert [chart.GetValueByName(r, "level").ToString() for r in range(chart.GetNumberOfRows())] == order
    assert [chart.GetValueByName(r, "volume_mm3").ToDouble() for r in range(chart.GetNumberOfRows())] == [
        level_table.GetValueByName(r, "volume_mm3").ToDouble() for r in rows.values()]


def _disc_markups(scene, discs: dict[int, tuple[float, float, float]], style: str):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "discs")
    for code, ras in discs.items():
        upper, lower = level_name(code - 1), level_name(code)
        label = {"dash": f"{upper}-{lower}", "slash": f"{upper}/{lower}", "code": str(code)}[style]
        node.AddControlPoint(ras, label)
    return node


@pytest.mark.parametrize("style", ["dash", "slash", "code"])
def test_markups_to_disc_points(scene, style: str) -> None:
    phantom = make_phantom(5, orientation="LPS", lesion_count=2)
    node = _disc_markups(scene, phantom.disc_points_ras, style)
    discs = markups_to_disc_points(node)
    assert sorted(discs) == sorted(phantom.disc_points_ras)
    for code, ras in phantom.disc_points_ras.items():
        np.testing.assert_allclose(discs[code], ras, atol=1e-9)
    assert level_source_from_markups(node).covered_levels()


def test_markups_json_written_by_slicer_gives_the_same_discs(scene, tmp_path: Path) -> None:
    phantom = make_phantom(5, orientation="LPS", lesion_count=2)
    node = _disc_markups(scene, phantom.disc_points_ras, "dash")
    storage = slicer.vtkMRMLMarkupsJsonStorageNode()
    scene.AddNode(storage)
    path = tmp_path / "discs.mrk.json"
    storage.SetFileName(str(path))
    assert storage.WriteData(node)
    from_file = read_markups_discs(path)
    from_node = markups_to_disc_points(node)
    assert sorted(from_file) == sorted(from_node)
    for code in from_node:
        np.testing.assert_allclose(from_file[code], from_node[code], atol=1e-6)


def test_markups_with_a_non_disc_label_is_an_input_error(scene) -> None:
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "my points")
    node.AddControlPoint((0.0, 0.0, 10.0), "C2-C3")
    node.AddControlPoint((0.0, 0.0, -10.0), "tip of the nose")
    with pytest.raises(InputError, match="my points.*tip of the nose"):
        markups_to_disc_points(node)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_export_round_trip_matches_the_command_line(scene, phantom_scene, tmp_path: Path) -> None:
    phantom, soft, volume, soft_node, segmentation = phantom_scene
    lesion_id = lesion_segment_id(segmentation)
    files = tmp_path / "files"
    lesion_path = write_image(sitk.Cast(soft >= 0.5, sitk.sitkUInt8), files / "lesion.nii.gz")
    soft_path = write_image(soft, files / "soft.nii.gz")
    levels_path = write_image(phantom.levels, files / "levels.nii.gz")
    cli = run_stats(lesion_path, tmp_path / "cli", soft_path=soft_path, levels_path=levels_path)

    out = export_statistics(tmp_path / "slicer", segmentation, lesion_id, volume, soft_node=soft_node,
                            levels=load_level_source(levels_path), save_seg_nrrd=True, save_nifti=True)
    # Same rows and columns; centroids differ by < 1e-5 mm (the NIfTI stores the origin as float32).
    for ours_csv, cli_csv in ((out.lesions_csv, cli.lesions_csv), (out.levels_csv, cli.levels_csv)):
        ours_rows, cli_rows = _read_csv(ours_csv), _read_csv(cli_csv)
        assert len(ours_rows) == len(cli_rows) > 1
        for ours_row, cli_row in zip(ours_rows, cli_rows):
            assert ours_row.keys() == cli_row.keys()
            for key, value in cli_row.items():
                if key.startswith("centroid"):
                    assert float(ours_row[key]) == pytest.approx(float(value), abs=1e-5)
                else:
                    assert ours_row[key] == value
    ours, theirs = json.loads(out.summary_json.read_text()), json.loads(cli.summary_json.read_text())
    assert ours["inputs"]["lesion"]["node"] == segmentation.GetName()
    for key in ("lesion_count", "total_volume_mm3", "total_soft_volume_mm3", "per_level", "unassigned_volume_mm3"):
        assert ours[key] == theirs[key]
    assert _read_csv(out.levels_csv)[-1]["level"] == "unassigned"

    # The corrected segmentation read back with Slicer's storage node, and the NIfTI mask, hold the same voxels.
    seg_path = tmp_path / "slicer" / "phantom_lesions.seg.nrrd"
    loaded = load_segmentation(scene, seg_path)
    loaded_id = loaded.GetSegmentation().GetSegmentIdBySegmentName(LESION_SEGMENT_NAME)
    expected = segment_mask(segmentation, lesion_id, volume)
    assert np.array_equal(segment_mask(loaded, loaded_id, volume), expected)
    assert loaded.GetSegmentation().GetSegment(loaded_id).GetTerminology() == LESION_TERMINOLOGY
    nifti = read_image(tmp_path / "slicer" / "phantom_lesions.nii.gz")
    np.testing.assert_allclose(ijk_to_ras_matrix(nifti), node_ijk_to_ras(volume), atol=1e-5)
    assert np.array_equal(sitk.GetArrayViewFromImage(nifti) != 0, expected)
