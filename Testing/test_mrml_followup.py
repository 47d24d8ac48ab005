"""The panel's "Compare with previous scan" and "Create report" (``mrml/followup.py``), headless on slicer-core.

The scans are those of ``test_compare.py``: the real T2w with its real cord, lesions painted inside the cord, a
follow-up with one planted change of each class, moved by a known rigid transform (3 deg, 2 mm) on the same grid
or on another grid. They enter the scene as the panel gets them: volumes through Slicer's own reader, lesion and
cord segments as a finished prediction builds them, the soft map as the panel shows it. Expected ids, voxels and
volumes are computed here (scipy labelling, Slicer's reader, the planted motion), never taken from the code under
test. The report's PDF is read back with poppler's pdftotext.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from compare_cases import EVENTS, T2, build_case
from pdf_tools import pdf_text, section
from scipy import ndimage
from SpinalLesionSegLib.analysis.longitudinal import CLASSES
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.image_io import sha256_file
from SpinalLesionSegLib.mrml.followup import (
    CHANGE_COLORS,
    COMPARE_FOLDER,
    INPUTS_FOLDER,
    REPORT_FOLDER,
    compare_with_previous,
    create_report,
    previous_lesion_segment,
)
from SpinalLesionSegLib.mrml.nodes import (
    read_volume_node,
    segment_ids,
    segmentation_node_from_labelmap,
)
from SpinalLesionSegLib.mrml.results import (
    create_lesion_segmentation,
    lesion_segment_id,
    node_array,
    segment_mask,
    show_soft_map,
    write_segment_mask,
)
from SpinalLesionSegLib.reporting.change import CHANGE_CLASSES

STRUCTURE = ndimage.generate_binary_structure(3, 2)  # 18-connectivity, as stats numbers lesions


@pytest.fixture(scope="module")
def cases(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("followup")
    return {grid: build_case(folder / grid, shared_data, grid) for grid in ("same", "other")}


def _scene_case(scene, case: dict, folder: Path) -> SimpleNamespace:
    """The panel's state after predicting the follow-up (the current scan), with the previous scan loaded."""
    paths = case["paths"]
    current = read_volume_node(scene, paths["followup"], "follow_T2w")
    lesion = sitk.ReadImage(str(paths["followup_lesion"]))
    segmentation = create_lesion_segmentation(scene, lesion, current, sitk.ReadImage(str(paths["followup_cord"])))
    soft = show_soft_map(scene, sitk.Cast(lesion, sitk.sitkFloat32), "follow_T2w lesion probability")
    previous = read_volume_node(scene, paths["baseline"], "base_T2w")
    previous_segmentation = create_lesion_segmentation(scene, sitk.ReadImage(str(paths["baseline_lesion"])),
                                                       previous, sitk.ReadImage(str(paths["baseline_cord"])))
    p = SimpleNamespace(inputVolume=current, segmentation=segmentation, softMap=soft, levelsNode=None)
    return SimpleNamespace(p=p, previous=previous, previous_segmentation=previous_segmentation,
                           expected=_expected(scene, case, current, folder))


def _on_node_grid(scene, array: np.ndarray, reference: sitk.Image, path: Path, like) -> np.ndarray:
    """``array`` (on ``reference``'s file grid) as Slicer's reader puts it on the grid of node ``like``."""
    image = sitk.GetImageFromArray(array.astype(np.int16))
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path))
    node = read_volume_node(scene, path, path.name.split(".")[0], "vtkMRMLLabelMapVolumeNode")
    assert node.GetImageData().GetDimensions() == like.GetImageData().GetDimensions()
    return np.array(node_array(node))


def _expected(scene, case: dict, current, folder: Path) -> dict:
    """Per class: the voxels on the current node's grid and the lesion ids (as stats numbers them on that grid)."""
    paths = case["paths"]
    follow_file = sitk.ReadImage(str(paths["followup_lesion"]))
    labels, _ = ndimage.label(sitk.GetArrayFromImage(follow_file) > 0, STRUCTURE)
    labels = _on_node_grid(scene, labels, follow_file, folder / "expected_labels.nii.gz", current)
    numbered, _ = ndimage.label(labels > 0, STRUCTURE)  # the numbering on the node's grid
    follow_id = {name: int(np.unique(numbered[labels == case["ids"][("followup", name)]])[0])
                 for (scan, name) in case["ids"] if scan == "followup"}
    voxels = {change: np.isin(labels, [case["ids"][("followup", n)] for n in after])
              for change, (_, after) in EVENTS.items()}
    base = sitk.ReadImage(str(paths["baseline_lesion"]))  # the planted disappeared lesion, moved as the anatomy
    gone = sitk.GetImageFromArray(case["baseline"]["disappeared"].astype(np.uint8))
    gone.CopyInformation(base)
    moved = sitk.Resample(gone, follow_file, case["motion"], sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    voxels["disappeared"] = _on_node_grid(scene, sitk.GetArrayFromImage(moved), follow_file,
                                          folder / "expected_gone.nii.gz", current) > 0
    return {"voxels": voxels, "followup_ids": {change: sorted(follow_id[n] for n in after)
                                               for change, (_, after) in EVENTS.items()}}


def _table_rows(table) -> list[dict[str, str]]:
    content = table.GetTable()
    columns = [content.GetColumn(c) for c in range(content.GetNumberOfColumns())]
    return [{column.GetName(): str(column.GetValue(row)) for column in columns}
            for row in range(content.GetNumberOfRows())]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.mark.parametrize("grid", ["same", "other"])
def test_the_comparison_finds_the_planted_changes_as_a_table_and_coloured_segments(
        mrml_scene, cases: dict, grid: str, tmp_path: Path) -> None:
    case = cases[grid]
    state = _scene_case(mrml_scene, case, tmp_path)
    p = state.p
    comparison = compare_with_previous(mrml_scene, p, state.previous, state.previous_segmentation, tmp_path)
    assert comparison.counts_text() == ", ".join(f"{name} 1" for name in CLASSES)
    rows = _table_rows(comparison.table)
    assert [row["class"] for row in rows] == list(CLASSES), "one row per event, in the order of lesion_changes.csv"
    assert comparison.table.GetColumnUnitLabel("followup_volume_mm3") == "mm3"
    for row in rows:
        before, after = EVENTS[row["class"]]
        expected = sum(case["volumes"][("baseline", n)] for n in before)
        assert float(row["baseline_volume_mm3"]) == pytest.approx(expected, rel=0.01), row
        expected = sum(case["volumes"][("followup", n)] for n in after)
        assert float(row["followup_volume_mm3"] or "nan") == pytest.approx(expected, rel=0.01) or not after, row
        assert row["followup_ids"] == ";".join(map(str, state.expected["followup_ids"][row["class"]])), row
        assert len(row["baseline_ids"].split(";")) == len(before) if before else row["baseline_ids"] == ""
    # One segment per class, on the current grid, named and coloured as documented.
    segmentation = comparison.segmentation
    content = segmentation.GetSegmentation()
    assert [content.GetSegment(i).GetName() for i in segment_ids(segmentation)] == list(CHANGE_CLASSES.values())
    for change, label in CHANGE_CLASSES.items():
        segment_id = content.GetSegmentIdBySegmentName(label)
        assert content.GetSegment(segment_id).GetColor() == pytest.approx(CHANGE_COLORS[change])
        found = segment_mask(segmentation, segment_id, p.inputVolume)
        expected = state.expected["voxels"][change]
        if change == "disappeared":  # mapped through the recovered motion, compared with the planted one
            assert found.any() and _dice(found, expected) > 0.6, _dice(found, expected)
        else:
            assert np.array_equal(found, expected), change
    assert len(set(CHANGE_COLORS.values())) == len(CLASSES)
    # The compare command's files, naming the nodes.
    out = tmp_path / COMPARE_FOLDER
    summary = json.loads((out / "summary.json").read_text())
    assert {name: summary[name] for name in CLASSES} == {name: 1 for name in CLASSES}
    assert summary["inputs"]["followup_lesion"] == {"node": p.segmentation.GetName(),
                                                    "segment": lesion_segment_id(p.segmentation)}
    assert summary["registration"]["checks"]["cord_dice"]["value"] > 0.85, "registered around the cords"
    assert len((out / "lesion_changes.csv").read_text().splitlines()) == 1 + len(CLASSES)
    assert (out / "registration.png").read_bytes()[:4] == b"\x89PNG" and (out / "followup_to_baseline.tfm").is_file()
    if grid == "same":  # comparing again refreshes the same nodes, without a folder writes nothing
        nodes = mrml_scene.GetNumberOfNodes()
        again = compare_with_previous(mrml_scene, p, state.previous, state.previous_segmentation)
        assert (again.table.GetID(), again.segmentation.GetID()) == (comparison.table.GetID(),
                                                                     segmentation.GetID())
        assert mrml_scene.GetNumberOfNodes() == nodes and again.outputs is None
        assert len(segment_ids(segmentation)) == len(CLASSES)


def _totals(text: str) -> tuple[int, str]:
    load = section(text, "Lesion load", "Lesions per vertebral level")
    count = int(re.search(r"^\s*(\d+)\s", load, re.M).group(1))
    return count, load


def test_the_report_follows_the_corrected_segment(mrml_scene, cases: dict, shared_data: Path,
                                                   tmp_path: Path) -> None:
    case = cases["same"]
    state = _scene_case(mrml_scene, case, tmp_path)
    p = state.p
    p.levelsNode = read_volume_node(mrml_scene, shared_data / T2 / "t2_seg-manual_labeled.nii.gz", "levels",
                                    "vtkMRMLLabelMapVolumeNode")
    outputs = create_report(p, tmp_path, state.previous, state.previous_segmentation, patient_id="P-7")
    assert outputs.pdf == tmp_path / REPORT_FOLDER / "report.pdf" and outputs.html.is_file()
    text = pdf_text(outputs.pdf)
    volumes = {name: v for (scan, name), v in case["volumes"].items() if scan == "followup"}
    count, load = _totals(text)
    assert count == len(volumes) and f"{sum(volumes.values()):.1f} mm³" in load
    change = section(text, "Change since the baseline scan", "How the numbers were computed")
    assert "base_T2w" in change, "the previous scan is named"
    manifest = json.loads(outputs.manifest.read_text())
    assert set(manifest["inputs"]) == {"image", "lesion", "soft", "levels", "cord"}
    for entry in manifest["inputs"].values():  # the files it was made from exist, as hashed
        assert sha256_file(entry["path"]) == entry["sha256"]
    assert {name: manifest["longitudinal"][name] for name in CLASSES} == {name: 1 for name in CLASSES}
    assert "Patient ID: P-7" in text

    # Erase the new lesion in the Segment Editor's stead; the report follows the edit, and a point list of
    # discs replaces the label map as levels.
    segment_id = lesion_segment_id(p.segmentation)
    mask = segment_mask(p.segmentation, segment_id, p.inputVolume) & ~state.expected["voxels"]["new"]
    write_segment_mask(p.segmentation, segment_id, mask, p.inputVolume)
    p.levelsNode = mrml_scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "discs")
    for label, superior in (("C2-C3", 20.0), ("C3-C4", 5.0), ("C4-C5", -10.0)):
        p.levelsNode.AddControlPoint(0.0, 0.0, superior, label)
    outputs = create_report(p, tmp_path)
    count, load = _totals(pdf_text(outputs.pdf))
    assert count == len(volumes) - 1
    assert f"{sum(volumes.values()) - volumes['new']:.1f} mm³" in load
    inputs = sorted(path.name for path in (tmp_path / REPORT_FOLDER / INPUTS_FOLDER).iterdir())
    assert inputs == ["cord_follow_T2w_lesions.nii.gz", "image_follow_T2w.nii.gz",
                      "lesion_follow_T2w_lesions.nii.gz", "levels_discs.mrk.json",
                      "soft_follow_T2w_lesion_probability.nii.gz"], "the baseline files of the first report are gone"
    manifest = json.loads(outputs.manifest.read_text())
    assert manifest["longitudinal"] is None and manifest["lesion_count"] == len(volumes) - 1
    assert "markups from levels_discs.mrk.json" in pdf_text(outputs.pdf)


def _one_line(error: pytest.ExceptionInfo, *words: str) -> None:
    message = str(error.value)
    assert "\n" not in message and all(word in message for word in words), message


def test_missing_or_wrong_nodes_are_one_line_errors(mrml_scene, cases: dict, tmp_path: Path) -> None:
    state = _scene_case(mrml_scene, cases["same"], tmp_path)
    p = state.p
    with pytest.raises(InputError) as error:
        compare_with_previous(mrml_scene, p, state.previous, None)
    _one_line(error, "base_T2w", "segmentation")
    with pytest.raises(InputError) as error:
        compare_with_previous(mrml_scene, p, None, state.previous_segmentation)
    _one_line(error, "no previous scan")
    with pytest.raises(InputError) as error:
        compare_with_previous(mrml_scene, p, p.inputVolume, p.segmentation)
    _one_line(error, "follow_T2w", "current input volume")
    with pytest.raises(InputError) as error:
        create_report(p, None)
    _one_line(error, "output folder")
    with pytest.raises(InputError) as error:
        create_report(p, tmp_path, state.previous)
    _one_line(error, "base_T2w", "segmentation")
    # A segmentation without the lesion segment, as the current one or as a previous one of two segments.
    labels = sitk.Cast(sitk.ReadImage(str(cases["same"]["paths"]["baseline_lesion"])), sitk.sitkUInt8)
    two = segmentation_node_from_labelmap(mrml_scene, labels + 1,
                                          {1: "background", 2: "lesions"}, "two segments")
    with pytest.raises(InputError) as error:
        compare_with_previous(mrml_scene, SimpleNamespace(**{**vars(p), "segmentation": two}), state.previous,
                              state.previous_segmentation)
    _one_line(error, "two segments", "MS lesion")
    with pytest.raises(InputError) as error:
        compare_with_previous(mrml_scene, p, state.previous, two)
    _one_line(error, "two segments", "MS lesion")
    with pytest.raises(InputError) as error:
        compare_with_previous(mrml_scene, SimpleNamespace(**{**vars(p), "segmentation": None}), state.previous,
                              state.previous_segmentation)
    _one_line(error, "follow_T2w", "no lesion segmentation")
    # A mask loaded from a file has one segment named after it: that one is the previous lesions.
    one = segmentation_node_from_labelmap(mrml_scene, labels, {1: "base_lesion"}, "from a file")
    assert previous_lesion_segment(one) == segment_ids(one)[0]
    assert not list(tmp_path.glob(f"{COMPARE_FOLDER}/*")), "nothing written on an error"
