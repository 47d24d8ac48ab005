"""The Slicer panel's logic (mrml/panel.py), headless under slicer-core, with the real worker process and demo model:
run, live threshold, reject/accept with undo, levels in the review table, statistics, export, the ROI rule shared
with the command line, and review state that survives a scene save and reload (.mrb)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import slicer
from conftest import MODULE_DIR
from SpinalLesionSegLib import defaults
from SpinalLesionSegLib.cli import main as cli_main
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.geometry import ijk_to_ras_matrix, voxel_to_ras
from SpinalLesionSegLib.inference.protocol import Result
from SpinalLesionSegLib.inference.roi import box_from_mask
from SpinalLesionSegLib.mrml.nodes import (
    image_from_volume_node,
    read_volume_node,
    segmentation_node_from_labelmap,
    volume_node_from_image,
)
from SpinalLesionSegLib.mrml.panel import PanelLogic
from SpinalLesionSegLib.mrml.results import lesion_segment_id, node_array, segment_mask
from SpinalLesionSegLib.mrml.review_state import TABLE_REFERENCE_ROLE, read_review_state
from SpinalLesionSegLib.phantom import make_phantom

DEMO = MODULE_DIR / "Resources" / "Models" / "demo"


def _parameters(volume, **changes) -> SimpleNamespace:
    """The panel's parameters with the module's defaults, as its parameter node holds them."""
    values = dict(inputVolume=volume, contrast=defaults.CONTRAST, model=defaults.MODEL, device="cpu", folds="",
                  tta=False, roiNode=None, roiMarginMm=defaults.ROI_MARGIN_MM, pythonPath="",
                  threshold=defaults.THRESHOLD, candidateThreshold=defaults.CANDIDATE_THRESHOLD, softMap=None,
                  segmentation=None, levelsNode=None)
    return SimpleNamespace(**{**values, **changes})


def _run(logic: PanelLogic, p: SimpleNamespace) -> Result:
    """Submit, then poll until the result (a worker error fails the test with its message)."""
    logic.run(p)
    return logic.wait(300)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(3, contrast="T2w", spacing=(1.0, 1.0, 1.0))


@pytest.fixture()
def ran(mrml_scene, phantom):
    """A panel that has run the demo model on a phantom with known lesions and loaded the results."""
    logic = PanelLogic(mrml_scene)
    volume = volume_node_from_image(mrml_scene, phantom.image, "phantom_T2w")
    p = _parameters(volume)
    try:
        result = _run(logic, p)
        position = logic.load_results(p, result)
        yield logic, p, position
    finally:
        logic.stop_worker()


def _lesion_mask(p) -> np.ndarray:
    return segment_mask(p.segmentation, lesion_segment_id(p.segmentation), p.inputVolume)


def test_run_threshold_reject_accept_and_undo(ran) -> None:
    logic, p, position = ran
    assert p.segmentation.GetName() == "phantom_T2w lesions" and position is not None
    assert not logic.busy and logic.applied_threshold(p) == defaults.THRESHOLD

    logic.apply_threshold(p, 0.3)
    np.testing.assert_array_equal(_lesion_mask(p), node_array(p.softMap) >= 0.3)
    assert logic.undo(p)
    np.testing.assert_array_equal(_lesion_mask(p), node_array(p.softMap) >= defaults.THRESHOLD)

    table = logic.review_table(p)
    count = table.GetNumberOfRows()
    assert count >= 2, "the demo model should find the phantom's lesions"
    before = _lesion_mask(p)
    logic.reject_lesion(p, 1)
    assert logic.review_table(p).GetNumberOfRows() == count - 1
    assert len(read_review_state(p.segmentation).rejected) == 1
    logic.accept_lesion(p, 1)
    refreshed = logic.review_table(p)
    assert refreshed.GetID() == table.GetID(), "the table is refreshed in place, not duplicated"
    flags = {int(refreshed.GetCellText(row, 0)): refreshed.GetCellText(row, refreshed.GetColumnIndex("flag"))
             for row in range(refreshed.GetNumberOfRows())}
    assert flags[1] == "accepted" and list(flags.values()).count("accepted") == 1

    assert logic.undo(p)  # the acceptance
    assert not read_review_state(p.segmentation).accepted
    assert logic.undo(p)  # the rejection: the lesion and the state come back
    np.testing.assert_array_equal(_lesion_mask(p), before)
    assert not read_review_state(p.segmentation).rejected
    assert logic.review_table(p).GetNumberOfRows() == count
    assert not logic.undo(p) and not logic.can_undo(p)


def test_review_table_row_i_is_the_lesion_shown_in_row_i_and_cannot_be_edited(ran) -> None:
    """With column titles as headers, Slicer's table view shows table row i as view row i
    (qMRMLTableModel.cxx:651 at v5.10.0); without them view row 0 is the header and every action is off by one.
    Rows run from the least probable lesion up; each row's id is the lesion the actions act on."""
    logic, p, _ = ran
    table = logic.review_table(p)
    assert table.GetUseColumnTitleAsColumnHeader() and table.GetLocked()
    means = [float(table.GetCellText(row, table.GetColumnIndex("mean_probability")))
             for row in range(table.GetNumberOfRows())]
    assert means == sorted(means), "the doubtful lesions come first"
    for row in range(table.GetNumberOfRows()):
        lesion = int(table.GetCellText(row, 0))
        np.testing.assert_allclose(logic.lesion_position(p, lesion), logic.position_in_table(table, row),
                                   atol=1e-3)  # the table holds text


def test_threshold_preview_commits_nothing_until_release(ran) -> None:
    logic, p, _ = ran
    before = _lesion_mask(p)
    for value in (0.2, 0.25, 0.3):  # a drag
        logic.preview_threshold(p, value)
    display = p.softMap.GetDisplayNode()
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(0.3)
    np.testing.assert_array_equal(_lesion_mask(p), before)
    assert not logic.can_undo(p)
    logic.apply_threshold(p, 0.3)  # the release: one undo step
    assert not display.GetApplyThreshold()
    assert logic.applied_threshold(p) == pytest.approx(0.3), "kept on the node: a restored slider value is no change"
    logic.preview_threshold(p, 0.35)
    logic.preview_threshold(p, 0.3)  # a drag back to where it started: the slider will emit no valueChanged
    assert not display.GetApplyThreshold(), "the preview ends at the committed value"
    assert logic.undo(p) and not logic.can_undo(p)
    np.testing.assert_array_equal(_lesion_mask(p), before)


def test_the_default_input_is_not_a_label_map(mrml_scene, phantom) -> None:
    """GetFirstNodeByClass matches subclasses: a label map loaded first must not become the input."""
    volume_node_from_image(mrml_scene, phantom.levels, "levels", "vtkMRMLLabelMapVolumeNode")
    assert PanelLogic.default_input(mrml_scene) is None
    scan = volume_node_from_image(mrml_scene, phantom.image, "scan")
    assert PanelLogic.default_input(mrml_scene) is scan


def test_candidates_from_the_soft_map_can_be_added_and_undone(ran) -> None:
    """A lesion the mask leaves out (here: rejected) is offered as a candidate from the soft map; one click adds
    it back, with the soft map's extent at the candidate threshold; undo takes it out again."""
    logic, p, _ = ran
    with_it = _lesion_mask(p)
    logic.reject_lesion(p, 1)
    before = _lesion_mask(p)
    k, j, i = np.nonzero(with_it & ~before)  # the rejected lesion's voxels, in RAS mm
    image = image_from_volume_node(p.inputVolume)
    rejected = voxel_to_ras(ijk_to_ras_matrix(image), np.column_stack([i, j, k]).astype(float))
    table = logic.candidate_table(p)
    count = table.GetNumberOfRows()
    assert table.GetUseColumnTitleAsColumnHeader() and table.GetLocked() and count >= 1
    peaks = [float(table.GetCellText(row, table.GetColumnIndex("peak_probability")))
             for row in range(table.GetNumberOfRows())]
    assert peaks == sorted(peaks, reverse=True) and min(peaks) >= defaults.CANDIDATE_THRESHOLD
    distances = [np.linalg.norm(rejected - np.asarray(logic.position_in_table(table, row)), axis=1).min()
                 for row in range(table.GetNumberOfRows())]
    assert min(distances) <= np.linalg.norm(image.GetSpacing()), \
        "the rejected lesion is among the candidates: one lies within a voxel of it"
    first = int(table.GetCellText(0, 0))
    logic.add_candidate(p, first)
    added = _lesion_mask(p)
    assert added.sum() > before.sum() and np.all(added[before])
    assert read_review_state(p.segmentation).added[0]["peak_probability"] == pytest.approx(peaks[0], abs=1e-4)
    assert logic.candidate_table(p).GetNumberOfRows() == count - 1  # the table node is refreshed in place
    assert logic.undo(p)
    np.testing.assert_array_equal(_lesion_mask(p), before)
    assert not read_review_state(p.segmentation).added
    p.candidateThreshold = 0.99
    assert logic.candidate_table(p).GetNumberOfRows() < count or min(peaks) >= 0.99


def test_levels_statistics_and_export(ran, mrml_scene, phantom, tmp_path: Path) -> None:
    logic, p, _ = ran
    table = logic.review_table(p)
    assert {table.GetCellText(row, table.GetColumnIndex("level")) for row in range(table.GetNumberOfRows())} == {""}
    p.levelsNode = volume_node_from_image(mrml_scene, phantom.levels, "phantom levels", "vtkMRMLLabelMapVolumeNode")
    table = logic.review_table(p)
    levels = [table.GetCellText(row, table.GetColumnIndex("level")) for row in range(table.GetNumberOfRows())]
    assert all(levels) and all(level[0] in "CTLS" for level in levels), levels

    nodes = logic.compute_statistics(p)
    assert nodes.lesions.GetNumberOfRows() == table.GetNumberOfRows()
    tables = mrml_scene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    again = logic.compute_statistics(p)
    assert again.lesions.GetID() == nodes.lesions.GetID() and again.chart.GetID() == nodes.chart.GetID()
    assert mrml_scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables, "statistics nodes are reused"
    assert again.chart.GetNumberOfPlotSeriesNodes() == 1

    (tmp_path / "notes.txt").write_text("the user's own file")
    written = logic.export(p, tmp_path)
    names = {path.name for path in written}
    assert {"lesions.csv", "levels.csv", "summary.json"} <= names and any(n.endswith(".seg.nrrd") for n in names)
    assert "notes.txt" not in names and all(path.is_file() for path in written)
    with pytest.raises(InputError, match="cannot write here"):
        logic.export(p, tmp_path / "notes.txt" / "export")  # checked before anything is computed


def test_review_state_survives_a_scene_save_and_reload(ran, mrml_scene, tmp_path: Path) -> None:
    logic, p, _ = ran
    logic.review_table(p)
    logic.reject_lesion(p, 2)
    logic.accept_lesion(p, 1)
    state = read_review_state(p.segmentation)
    app = mrml_scene.app_logic
    (tmp_path / "bundle").mkdir()
    assert app.SaveSceneToSlicerDataBundleDirectory(str(tmp_path / "bundle"), None)
    assert app.Zip(str(tmp_path / "review.mrb"), str(tmp_path / "bundle"))

    scene = slicer.vtkMRMLScene()
    reopened = slicer.vtkSlicerApplicationLogic()
    reopened.SetMRMLScene(scene)
    (tmp_path / "open").mkdir()
    assert reopened.OpenSlicerDataBundle(str(tmp_path / "review.mrb"), str(tmp_path / "open"))
    segmentation = scene.GetFirstNodeByName(p.segmentation.GetName())
    assert read_review_state(segmentation) == state and state.accepted and state.rejected
    assert segmentation.GetNodeReference(TABLE_REFERENCE_ROLE) is not None
    loaded = _parameters(scene.GetFirstNodeByName(p.inputVolume.GetName()), segmentation=segmentation,
                         softMap=scene.GetFirstNodeByName(p.softMap.GetName()))
    table = PanelLogic(scene).review_table(loaded)
    flags = [table.GetCellText(row, table.GetColumnIndex("flag")) for row in range(table.GetNumberOfRows())]
    assert flags.count("accepted") == 1
    np.testing.assert_array_equal(_lesion_mask(loaded), _lesion_mask(p))


def test_panel_and_command_line_use_the_same_roi(mrml_scene, t2_path: Path, tmp_path: Path) -> None:
    """A cord segmentation picked in the panel and --roi-mask on the command line give the same crop, with a
    crop-trained model's crop_metadata.json pads applied on both paths."""
    model = tmp_path / "cropped"
    shutil.copytree(DEMO, model)
    pads = {"pad_left": 3.0, "pad_right": 4.0, "pad_posterior": 5.0, "pad_anterior": 6.0, "pad_inferior": 7.0,
            "pad_superior": 8.0}
    (model / "crop_metadata.json").write_text(json.dumps(pads))
    cord_path = t2_path.with_name("t2_seg-manual.nii.gz")

    assert cli_main(["predict", str(t2_path), "-o", str(tmp_path / "cli"), "--model", str(model), "--device", "cpu",
                     "--folds", "0", "--roi-mask", str(cord_path)]) == 0
    cli_roi = json.loads((tmp_path / "cli" / "t2_lesion_seg.json").read_text())["roi"]

    volume = read_volume_node(mrml_scene, t2_path, "t2")
    cord_node = read_volume_node(mrml_scene, cord_path, "cord", "vtkMRMLLabelMapVolumeNode")
    cord = segmentation_node_from_labelmap(mrml_scene, image_from_volume_node(cord_node), {1: "Spinal cord"},
                                           "t2 cord", reference_volume=volume)
    logic = PanelLogic(mrml_scene)
    try:
        result = _run(logic, _parameters(volume, model=str(model), folds="0", roiNode=cord))
    finally:
        logic.stop_worker()
    panel_roi = json.loads(Path(result.results[0]["outputs"]["sidecar"]).read_text())["roi"]
    np.testing.assert_allclose(panel_roi["ras_min_mm"], cli_roi["ras_min_mm"], atol=1e-3)
    np.testing.assert_allclose(panel_roi["ras_max_mm"], cli_roi["ras_max_mm"], atol=1e-3)
    tight = box_from_mask(image_from_volume_node(cord_node), 0.0)
    np.testing.assert_allclose(np.subtract(tight.ras_min, panel_roi["ras_min_mm"]), [3.0, 5.0, 7.0], atol=1e-3)
    np.testing.assert_allclose(np.subtract(panel_roi["ras_max_mm"], tight.ras_max), [4.0, 6.0, 8.0], atol=1e-3)


def test_results_belong_to_the_volume_the_job_ran_on(mrml_scene, phantom) -> None:
    logic = PanelLogic(mrml_scene)
    volume = volume_node_from_image(mrml_scene, phantom.image, "phantom_T2w")
    other = volume_node_from_image(mrml_scene, phantom.image, "another scan")
    p = _parameters(volume, contrast="STIR")
    try:
        logic.run(p)
        p.inputVolume = other  # the user selects another volume while the job runs
        result = logic.wait(300)
        logic.load_results(p, result)
    finally:
        logic.stop_worker()
    assert p.inputVolume is volume and p.segmentation.GetName() == "phantom_T2w lesions"
    # Warnings are shown, not hidden: the contrast chosen contradicts the volume's name.
    assert logic.result_summary(result).startswith("Done in ") and \
        " Warning: the contrast used is STIR but the volume name says T2w" in logic.result_summary(result)


def test_a_transformed_markups_roi_is_taken_in_the_volume_frame(mrml_scene, phantom) -> None:
    """The job's input file holds the volume's voxels in the volume's own frame: a world-space ROI is mapped there."""
    import vtk

    volume = volume_node_from_image(mrml_scene, phantom.image, "phantom_T2w")
    shift = mrml_scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 20.0)  # the volume is shown 20 mm to the right of its own frame
    shift.SetMatrixTransformToParent(matrix)
    volume.SetAndObserveTransformNodeID(shift.GetID())
    roi = mrml_scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    roi.SetCenter(21.0, 2.0, 3.0)  # around the shifted volume: (1, 2, 3) in the volume's frame
    roi.SetSize(10.0, 20.0, 30.0)
    job = PanelLogic(mrml_scene).build_job(_parameters(volume, roiNode=roi, roiMarginMm=0.0))
    np.testing.assert_allclose(job.roi_box.ras_min_mm, [1 - 5, 2 - 10, 3 - 15], atol=1e-6)
    np.testing.assert_allclose(job.roi_box.ras_max_mm, [1 + 5, 2 + 10, 3 + 15], atol=1e-6)


def test_a_markups_roi_becomes_its_bounds_plus_the_margin(mrml_scene, phantom) -> None:
    volume = volume_node_from_image(mrml_scene, phantom.image, "phantom_T2w")
    roi = mrml_scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    roi.SetCenter(1.0, 2.0, 3.0)
    roi.SetSize(10.0, 20.0, 30.0)
    job = PanelLogic(mrml_scene).build_job(_parameters(volume, roiNode=roi, roiMarginMm=2.5))
    assert job.roi_mask is None
    np.testing.assert_allclose(job.roi_box.ras_min_mm, [1 - 5 - 2.5, 2 - 10 - 2.5, 3 - 15 - 2.5])
    np.testing.assert_allclose(job.roi_box.ras_max_mm, [1 + 5 + 2.5, 2 + 10 + 2.5, 3 + 15 + 2.5])
    assert Path(job.inputs[0]).is_file()


def test_the_fast_preset_runs_one_fold_on_tiles_centred_on_the_roi_and_says_so(mrml_scene, phantom) -> None:
    volume = volume_node_from_image(mrml_scene, phantom.image, "phantom_T2w")
    roi = mrml_scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    centre = phantom.image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in phantom.image.GetSize()])
    roi.SetCenter(-centre[0], -centre[1], centre[2])  # LPS (ITK) to RAS (Slicer)
    roi.SetSize(20.0, 20.0, 20.0)
    logic = PanelLogic(mrml_scene)
    p = _parameters(volume, roiNode=roi, fast=True, model="demo")
    job = logic.build_job(p)
    assert job.folds == [0] and job.roi_tiles == "centred"
    assert logic.build_job(_parameters(volume, roiNode=roi)).roi_tiles == "exact"  # the default: whole-image values
    try:
        result = _run(logic, p)
    finally:
        logic.stop_worker()
    assert "tiles centred on the ROI" in logic.result_summary(result)


def test_check_volume_describes_a_good_volume_and_refuses_nan_in_one_line(mrml_scene) -> None:
    import SimpleITK as sitk

    array = np.random.default_rng(0).normal(100, 10, (12, 20, 16)).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.5, 0.5, 3.0))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # RAS-aligned voxel axes
    logic = PanelLogic(mrml_scene)
    description = logic.check_volume(volume_node_from_image(mrml_scene, image, "phantom"))
    assert "RAS" in description and "16 x 20 x 12" in description
    array[3, 4, 5] = np.nan
    bad = sitk.GetImageFromArray(array)
    bad.CopyInformation(image)
    with pytest.raises(InputError) as caught:
        logic.check_volume(volume_node_from_image(mrml_scene, bad, "bad"))
    assert str(caught.value).startswith("bad: ") and "\n" not in str(caught.value)
    with pytest.raises(InputError, match="no input volume"):
        logic.check_volume(None)


def test_the_self_tests_workflow_runs_headless(mrml_scene, phantom, tmp_path: Path) -> None:
    """The module's self-test calls this same check inside Slicer; here it runs on every test run."""
    from SpinalLesionSegLib.mrml.workflow_check import run_workflow_check

    logic = PanelLogic(mrml_scene)
    try:
        run_workflow_check(logic, _parameters(None), phantom.image, phantom.levels, tmp_path)
    finally:
        logic.stop_worker()
