"""The panel's automatic options, headless under slicer-core with the real worker and the real command:

* "Crop to cord: automatic" (``roiAuto``): the job asks the worker to find the cord; with a project-made cord model
  (:func:`fake_models.cord_model_files`: the demo network, its one label renamed ``sc``) the cord it found is the
  result's "Spinal cord" segment and the lesion result equals a run with that cord as the ROI; without the cord
  model the panel gets the worker's one-line error;
* "Find levels (TotalSpineSeg)": ``spinal-lesion-seg levels`` (one line and exit code 2 without the tool or its
  weights; the cached files named with ``--json``) and the panel loading what it names: REAL-format TotalSpineSeg
  outputs made from the shared real labels (test_totalspineseg's helpers), cached for the file the panel writes,
  give the levels node and the per-level statistics of ``stats --levels auto``.

The lesion model is the demo network under a lesion label (a folder), so these tests do not depend on whether the
bundled demo model has a cord output of its own.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import test_totalspineseg
from fake_models import cord_model_files, lesion_model_files, write_tree
from SpinalLesionSegLib.anatomy import totalspineseg_tool as tss_tool
from SpinalLesionSegLib.cli import main as cli_main
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.image_io import read_image
from SpinalLesionSegLib.mrml.nodes import read_volume_node, segmentation_node_from_labelmap, volume_node_from_image
from SpinalLesionSegLib.mrml.panel import PanelLogic
from SpinalLesionSegLib.mrml.results import (CORD_SEGMENT_NAME, create_lesion_segmentation, lesion_segment_id,
                                             node_array, segment_mask)
from SpinalLesionSegLib.models import registry
from SpinalLesionSegLib.models.manifests import CORD_MODEL
from SpinalLesionSegLib.phantom import make_phantom
from test_panel import _parameters, _run
from test_totalspineseg import HAVE_TSS, _publish

MISSING_TOOL = "/nonexistent/totalspineseg"
#: test_totalspineseg's fixtures: the shared real T2w and its labels, and the real-format TotalSpineSeg output.
real, case = test_totalspineseg.real, test_totalspineseg.case


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(lesion model folder, cord model folder): the demo network's lesion region alone and its cord region alone."""
    root = tmp_path_factory.mktemp("models")
    return write_tree(root / "lesion", lesion_model_files()), write_tree(root / "cord", cord_model_files())


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(3, contrast="T2w", spacing=(1.0, 1.0, 1.0))


@pytest.fixture(autouse=True)
def empty_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No installed models (the registry's cord model included); the worker inherits the environment."""
    monkeypatch.setenv(registry.HOME_ENV, str(tmp_path / "home"))


def _array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image) != 0


# --- Crop to cord: automatic ----------------------------------------------------------------------------------

def test_crop_to_cord_automatic_gives_the_cord_segment_and_equals_that_cord_as_roi(mrml_scene, phantom,
                                                                                     models) -> None:
    lesion_model, cord_model = models
    volume = volume_node_from_image(mrml_scene, phantom.image, "phantom_T2w")
    box = mrml_scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "my box")
    logic = PanelLogic(mrml_scene)
    p = _parameters(volume, model=str(lesion_model), folds="0", roiAuto=True, cordModel=str(cord_model),
                    roiNode=box)
    job = logic.build_job(p)
    assert job.roi_auto and job.cord_model == str(cord_model) and job.roi_mask is None and job.roi_box is None
    try:
        result = _run(logic, p)
        logic.load_results(p, result)
        outputs = result.results[0]["outputs"]
        sidecar = json.loads(Path(outputs["sidecar"]).read_text())
        assert sidecar["settings"]["roi_auto"] is True and sidecar["cord_stage"]["source"] == "cord model"
        assert sidecar["outside_cord"]["cord"] == "cord_model"
        summary = logic.result_summary(result)
        assert f"Cropped to the cord found by the cord model {sidecar['cord_stage']['model']}" in summary
        assert "the ROI 'my box' was not used" in summary
        cord, lesions = _array(read_image(outputs["sc_seg"])), _array(read_image(outputs["lesion_seg"]))
        assert cord.any()
        cord_id = p.segmentation.GetSegmentation().GetSegmentIdBySegmentName(CORD_SEGMENT_NAME)
        np.testing.assert_array_equal(segment_mask(p.segmentation, cord_id, volume), cord & ~lesions)
        auto_mask = segment_mask(p.segmentation, lesion_segment_id(p.segmentation), volume)
        auto_soft = node_array(p.softMap).copy()
        assert auto_mask.any(), "the lesion model finds lesions inside the automatic crop"

        given_cord = segmentation_node_from_labelmap(mrml_scene, read_image(outputs["sc_seg"]), {1: "cord"},
                                                     "found cord", reference_volume=volume)
        given = _parameters(volume, model=str(lesion_model), folds="0", roiNode=given_cord)
        given_result = _run(logic, given)
        logic.load_results(given, given_result)
    finally:
        logic.stop_worker()
    given_sidecar = json.loads(Path(given_result.results[0]["outputs"]["sidecar"]).read_text())
    for key in ("ras_min_mm", "ras_max_mm"):
        assert given_sidecar["roi"][key] == sidecar["roi"][key]
    np.testing.assert_array_equal(segment_mask(given.segmentation, lesion_segment_id(given.segmentation), volume),
                                  auto_mask)
    np.testing.assert_array_equal(node_array(given.softMap), auto_soft)


def test_crop_to_cord_automatic_without_the_cord_model_is_the_workers_one_line(mrml_scene, phantom,
                                                                               models) -> None:
    volume = volume_node_from_image(mrml_scene, phantom.image, "phantom_T2w")
    logic = PanelLogic(mrml_scene)
    try:
        with pytest.raises(InputError) as error:
            _run(logic, _parameters(volume, model=str(models[0]), folds="0", roiAuto=True))
    finally:
        logic.stop_worker()
    message = str(error.value)
    assert "\n" not in message and f"the cord model '{CORD_MODEL}' is not installed" in message
    assert f"spinal-lesion-seg models install {CORD_MODEL}" in message


# --- the levels command -----------------------------------------------------------------------------------------

def test_levels_command_without_the_tool_is_one_line(real: dict, tmp_path: Path, capsys) -> None:
    code = cli_main(["levels", "--image", str(real["image"]), "-o", str(tmp_path), "--totalspineseg", MISSING_TOOL])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.strip().splitlines() == [
        f"spinal-lesion-seg: error: {MISSING_TOOL}: does not exist: give the totalspineseg command or the Python "
        f"that has it (--totalspineseg or {tss_tool.TOOL_ENV})"]


@pytest.mark.skipif(not HAVE_TSS, reason="totalspineseg is not installed (pip install totalspineseg)")
def test_levels_command_without_the_weights_is_one_line(real: dict, tmp_path: Path, capsys,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tss_tool.TOOL_ENV, raising=False)
    monkeypatch.setenv(tss_tool.DATA_ENV, str(tmp_path))
    code = cli_main(["levels", "--image", str(real["image"]), "-o", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert "TotalSpineSeg's weights" in lines[0] and "spinal-lesion-seg models install totalspineseg" in lines[0]


def test_levels_command_names_the_cached_files(case: dict, real: dict, tmp_path: Path, capsys) -> None:
    found = _publish(case, real, tmp_path)
    assert cli_main(["levels", "--image", str(real["image"]), "-o", str(tmp_path), "--json",
                     "--totalspineseg", MISSING_TOOL]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record == {"levels": str(found.levels), "discs": str(found.discs), "cord": str(found.cord),
                      "manifest": str(found.manifest), "version": "real-format fixture", "reused": True}
    assert cli_main(["levels", "--image", str(real["image"]), "-o", str(tmp_path), "--totalspineseg",
                     MISSING_TOOL]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "TotalSpineSeg real-format fixture (cached outputs reused)", f"levels: {found.levels}",
        f"discs: {found.discs}", f"cord: {found.cord}", f"manifest: {found.manifest}"]


# --- the panel's Find levels ------------------------------------------------------------------------------------

def _finish(command, timeout_s: float = 120.0) -> tuple[int, list[str]]:
    """Poll a background command as the panel's timer does, until it ends."""
    lines, deadline = [], time.monotonic() + timeout_s
    while True:
        new, code = command.poll()
        lines += new
        if code is not None:
            return code, lines
        assert time.monotonic() < deadline, lines
        time.sleep(0.05)


def _level_volumes(nodes) -> dict[str, float]:
    table = nodes.levels
    column = {name: table.GetColumnIndex(name) for name in ("level", "volume_mm3")}
    rows = ((table.GetCellText(r, column["level"]), float(table.GetCellText(r, column["volume_mm3"])))
            for r in range(table.GetNumberOfRows()))
    return {level: volume for level, volume in rows if volume}


def test_find_levels_loads_the_cached_outputs_and_statistics_use_them(mrml_scene, case: dict, real: dict) -> None:
    """The panel writes the volume, the command finds the cache made for that file (no tool needed), the panel
    loads the levels map and the discs: the map without a cord segment, the discs along the cord with one; the
    per-level volumes are those of ``stats --levels auto`` on the same files (test_totalspineseg)."""
    volume = read_volume_node(mrml_scene, real["image"], "t2")
    logic = PanelLogic(mrml_scene)
    p = _parameters(volume)
    image = logic.levels_input(p)
    assert image.name == "t2.nii.gz"
    _publish(case, real, image.parent, image)

    code, lines = _finish(logic.start_levels(p, tool=MISSING_TOOL))
    said = logic.load_levels(p, code, lines)
    assert said == "Levels: TotalSpineSeg real-format fixture (cached), its vertebrae (no cord segment yet): " \
                   "'t2 TotalSpineSeg levels'."
    assert p.levelsNode.IsA("vtkMRMLLabelMapVolumeNode") and logic.level_source(p).kind == "totalspineseg"

    p.segmentation = create_lesion_segmentation(mrml_scene, read_image(case["lesion"]), volume,
                                                read_image(real["cord_path"]))
    code, lines = _finish(logic.start_levels(p, tool=MISSING_TOOL))
    assert "its discs along the cord: 't2 TotalSpineSeg discs'" in logic.load_levels(p, code, lines)
    assert p.levelsNode.IsA("vtkMRMLMarkupsFiducialNode") and p.levelsNode.GetNumberOfControlPoints() == 3
    assert [p.levelsNode.GetNthControlPointLabel(n) for n in range(3)] == ["C2-C3", "C3-C4", "C4-C5"]
    for n, number in enumerate(sorted(case["centres"])):  # the file's LPS read as RAS
        np.testing.assert_allclose(p.levelsNode.GetNthControlPointPositionVector(n), case["centres"][number],
                                   atol=1e-3)
    assert _level_volumes(logic.compute_statistics(p)) == {"C2": 459.0, "C3": 453.0, "C4": 99.0}


def test_find_levels_without_the_tool_says_so_in_one_line(mrml_scene, phantom) -> None:
    logic = PanelLogic(mrml_scene)
    p = _parameters(volume_node_from_image(mrml_scene, phantom.image, "phantom_T2w"))
    code, lines = _finish(logic.start_levels(p, tool=MISSING_TOOL))
    assert code == 2
    with pytest.raises(InputError) as error:
        logic.load_levels(p, code, lines)
    assert str(error.value) == f"{MISSING_TOOL}: does not exist: give the totalspineseg command or the Python " \
                               f"that has it (--totalspineseg or {tss_tool.TOOL_ENV})"
    assert p.levelsNode is None


@pytest.mark.skipif(not HAVE_TSS, reason="totalspineseg is not installed (pip install totalspineseg)")
def test_find_levels_without_the_weights_says_what_to_install(mrml_scene, phantom, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tss_tool.TOOL_ENV, raising=False)
    monkeypatch.setenv(tss_tool.DATA_ENV, str(tmp_path))
    logic = PanelLogic(mrml_scene)
    p = _parameters(volume_node_from_image(mrml_scene, phantom.image, "phantom_T2w"))
    code, lines = _finish(logic.start_levels(p))
    with pytest.raises(InputError, match="TotalSpineSeg's weights .* are not installed: spinal-lesion-seg models "
                                         "install totalspineseg --from"):
        logic.load_levels(p, code, lines)
