"""The panel's everyday workflow as one check, for Slicer's self-test and for pytest alike.

Volume -> demo model in the background worker -> soft map and lesion segmentation -> live threshold -> review
(reject, undo) -> statistics per level -> export. The module's self-test (``SpinalLesionSegTest``) runs it inside
Slicer; ``Testing/test_panel.py`` runs the very same function headless under ``slicer-core`` on every test run, so
the self-test's steps are never untested code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import defaults
from .nodes import volume_node_from_image


class WorkflowCheckFailed(AssertionError):
    """A step of the workflow did not give what it should; the message names the step."""


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise WorkflowCheckFailed(message)


def run_workflow_check(logic: Any, p: Any, image: Any, levels: Any, export_dir: Path, *,
                       step: Callable[[str], object] = lambda message: None,
                       on_idle: Callable[[], object] | None = None) -> None:
    """Run the workflow on ``image`` (a SimpleITK phantom with lesions) and its ``levels`` label map with the
    panel's ``logic`` (a :class:`.panel.PanelLogic`) and parameters ``p``; ``step`` is told each stage (Slicer's
    ``delayDisplay``), ``on_idle`` runs while the worker works (``slicer.app.processEvents``)."""
    scene = logic.scene
    step("Running the demo model on a phantom in the background worker")
    p.inputVolume = volume_node_from_image(scene, image, "phantom_T2w")
    _expect("phantom_T2w" in logic.check_volume(p.inputVolume), "check_volume does not describe the volume")
    p.model, p.device = defaults.MODEL, "cpu"
    logic.run(p)
    logic.load_results(p, logic.wait(300, **({"on_idle": on_idle} if on_idle else {})))
    _expect(p.segmentation.GetName() == "phantom_T2w lesions", "the segmentation is not named after the input")

    step("Live threshold, review and undo")
    logic.apply_threshold(p, 0.3)
    _expect(not logic.lesion_segment_edited(p), "a re-threshold counts as a user edit")
    count = logic.review_table(p).GetNumberOfRows()
    _expect(count > 0, "the demo model found none of the phantom's lesions")
    logic.reject_lesion(p, 1)
    _expect(logic.review_table(p).GetNumberOfRows() == count - 1, "rejecting a lesion did not remove it")
    _expect(logic.undo(p) and logic.review_table(p).GetNumberOfRows() == count, "undo did not bring it back")

    step("Statistics per level and export")
    p.levelsNode = volume_node_from_image(scene, levels, "phantom levels", "vtkMRMLLabelMapVolumeNode")
    _expect(logic.compute_statistics(p).lesions.GetNumberOfRows() == count, "statistics miss lesions")
    names = {path.name for path in logic.export(p, export_dir)}
    _expect({"lesions.csv", "levels.csv", "summary.json"} <= names, f"the export wrote only {sorted(names)}")
    logic.stop_worker()

