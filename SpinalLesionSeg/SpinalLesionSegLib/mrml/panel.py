"""The Slicer panel's logic, headless: everything the Spinal Lesion Seg panel does, with the scene passed in.

The module file (``SpinalLesionSeg.py``) only binds widgets to a parameter node and calls this class; the same
calls run in the Slicer Python console, in the module's self-test and under the ``slicer-core`` wheel in pytest.
Only ``slicer.vtkMRML*`` classes are used here: slice-view jumps, layouts and the Segment Editor belong to the
widget, which gets positions (RAS mm) and nodes back from these methods.

``p``, the panel's parameters, is the module's parameter node (``SpinalLesionSegParameterNode``) or any object with
the same attributes: ``inputVolume``, ``contrast``, ``model``, ``device``, ``folds`` (text such as "0 1"), ``tta``,
``fast`` (the first fold only when ``folds`` is empty, :mod:`.folds`), ``roiNode`` (markups ROI or a cord
segmentation), ``roiMarginMm``, ``pythonPath`` (an interpreter with torch, empty for the default), ``threshold``,
``softMap``, ``segmentation``, ``levelsNode``, ``precision`` (the network's arithmetic, :mod:`..inference.precision`;
"auto" when absent) and ``dropOutsideCord`` (drop the lesions outside the dilated cord instead of flagging them,
:mod:`..analysis.outside_cord`; false when absent).
``roiAuto`` ("Crop to cord: automatic") has the worker find the cord first (:mod:`..inference.cord_stage`: the
model's own cord, else the cord model ``cordModel``, absent or empty for the registry's default; only scripts set
it); the ROI node is then not used (the panel disables its selector; the summary says so) and the cord found is the
result's "Spinal cord" segment. Levels by TotalSpineSeg: :meth:`PanelLogic.start_levels`, then ``load_levels``.

Inference never runs in this process: :meth:`PanelLogic.run` writes the input to a temporary NIfTI file and submits
a :class:`~..inference.protocol.Job` to a persistent worker process (:class:`~..inference.worker_client.WorkerClient`),
whose messages the GUI collects with :meth:`PanelLogic.poll` from a timer.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from .. import defaults, safe_json
from ..analysis.levels import LevelSource
from ..contrasts import contrast_from_description, guess_contrast, resolve_contrast
from ..describe import describe_image, format_description
from ..errors import InputError
from ..image_io import read_image, write_image
from ..inference.protocol import Error, Job, Message, Result, RoiBox
from ..inference.roi import box_from_bounds
from ..inference.worker_client import BackgroundCommand, WorkerClient
from ..outputs import writable_folder
from ..plausibility import contrast_conflict
from ..validation import validate_image
from .folds import job_folds, job_roi_tiles
from .nodes import (image_from_volume_node, labelmap_from_segmentation, read_point_list, read_volume_node,
                    scalar_volumes)
from .results import CORD_SEGMENT_NAME, create_lesion_segmentation, lesion_segment_id, show_soft_map
from .review import analyze_segment, largest_lesion_ras
from .review_state import clear_review_state
from .review_steps import THRESHOLD_ATTRIBUTE, Parameters, ReviewSteps
from .sequence_inputs import SequenceChoice
from .statistics import StatisticsNodes, export_statistics, level_source_from_node, statistics_nodes


class PanelLogic(ReviewSteps):
    """The panel's orchestration. ``scene``: the MRML scene; ``default_python``: the worker's interpreter when
    ``p.pythonPath`` is empty (Slicer's ``PythonSlicer``; this interpreter by default); ``external_env``: the
    environment for another interpreter (in Slicer, ``slicer.util.startupEnvironment()``: without Slicer's
    PYTHONHOME and PYTHONPATH, which would make a lab's Python load Slicer's packages); ``client``: the worker
    client class (``WorkerClient``, reader threads; in Slicer :class:`.qt_worker.QtWorkerClient`, Qt signals)."""

    def __init__(self, scene: slicer.vtkMRMLScene, default_python: str | None = None,
                 external_env: dict[str, str] | None = None, client: type = WorkerClient) -> None:
        self.scene = scene
        self.default_python = default_python or sys.executable
        self.external_env = external_env
        self.client_class = client
        self.client: Any = None
        self.work_dir: Path | None = None
        self._job_volume: slicer.vtkMRMLScalarVolumeNode | None = None
        self._job_cord: str | None = None  # the submitted job's cord mask file (its ROI), shown as the cord segment
        self._levels_volume: slicer.vtkMRMLScalarVolumeNode | None = None  # the volume TotalSpineSeg ran on
        self.job_warnings: list[str] = []  # what the panel noticed about the submitted job (the worker adds more)
        self._undo: list[tuple[str, np.ndarray, tuple[int, ...], str]] = []
        #: The volume of each sequence when the model has several (:mod:`.sequence_inputs`; set by the panel).
        self.sequence_choice: SequenceChoice | None = None

    def work_path(self, name: str) -> Path:
        """A file in this session's temporary folder (made on first use)."""
        self.work_dir = self.work_dir or Path(tempfile.mkdtemp(prefix="SpinalLesionSeg-"))
        return self.work_dir / name

    # --- input -----------------------------------------------------------------------------------------------

    def check_volume(self, volume: slicer.vtkMRMLScalarVolumeNode | None) -> str:
        """Validate a volume exactly as the command line validates a file; return a description of its grid.
        Raises InputError (one line naming the volume) when it cannot be segmented."""
        image = _checked_image(volume)
        description = format_description(volume.GetName(), describe_image(image))
        logging.info(description)
        return description

    @staticmethod
    def default_input(scene: slicer.vtkMRMLScene) -> slicer.vtkMRMLScalarVolumeNode | None:
        """The first scalar volume of the scene that is not a label map (:func:`.nodes.scalar_volumes`)."""
        return next(iter(scalar_volumes(scene)), None)

    @staticmethod
    def guess_contrast(volume: slicer.vtkMRMLScalarVolumeNode, series_description: str = "") -> str | None:
        """Contrast from the volume name (a BIDS suffix) or else the DICOM series description, if either names one."""
        return guess_contrast(volume.GetName() + ".nii.gz") or contrast_from_description(series_description)

    # --- run -------------------------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return bool(self.client and self.client.busy)

    def build_job(self, p: Parameters, series_description: str = "") -> Job:
        """Write the input volume (its own grid, as Slicer holds it) and any cord ROI to temporary NIfTI files and
        describe the job. The ROI follows the one rule of :mod:`..inference.roi`."""
        inputs, channels = self._inputs(p)
        contrast = p.contrast
        if contrast == defaults.CONTRAST:  # the temporary file has no BIDS name: guess from the volume here
            contrast = self.guess_contrast(p.inputVolume, series_description) or defaults.CONTRAST
        self.job_warnings = _contrast_warnings(contrast, p.inputVolume.GetName(), series_description)
        roi_auto = bool(getattr(p, "roiAuto", False))
        if roi_auto and p.roiNode is not None:
            self.job_warnings.append(f"the ROI {p.roiNode.GetName()!r} was not used: 'Crop to cord: automatic' "
                                     "finds the cord itself")
        roi_mask, roi_box = (None, None) if roi_auto else self._roi(p)
        return Job(inputs=inputs, channels=channels, output_dir=str(self.work_path("output")), model=p.model,
                   device=p.device, folds=job_folds(p.folds, bool(getattr(p, "fast", False)), p.model),
                   tta=bool(p.tta), contrast=contrast,
                   threshold=float(p.threshold), roi_mask=roi_mask, roi_margin_mm=float(p.roiMarginMm),
                   roi_box=roi_box, drop_outside_cord=bool(getattr(p, "dropOutsideCord", False)),
                   roi_auto=roi_auto, cord_model=(getattr(p, "cordModel", "") or None) if roi_auto else None,
                   precision=getattr(p, "precision", defaults.PANEL_PRECISION),
                   roi_tiles=job_roi_tiles(bool(getattr(p, "fast", False))))

    def _inputs(self, p: Parameters) -> tuple[list[str], list[str] | None]:
        """(the job's input files, their channel names or None): the input volume, or the volume chosen for each
        sequence of a multi-sequence model (:attr:`sequence_choice`), whose reference becomes the input volume."""
        choice = self.sequence_choice
        if choice is None or choice.sequences.model != p.model:
            return [str(write_image(_checked_image(p.inputVolume), self.work_path("input.nii.gz")))], None
        p.inputVolume = choice.reference_volume()
        return choice.write(lambda volume, name: write_image(_checked_image(volume), self.work_path(name)))

    def _roi(self, p: Parameters) -> tuple[str | None, RoiBox | None]:
        """A cord segmentation goes to the worker as a mask file (the worker adds the margin or the model's crop
        pads); a markups ROI becomes its bounds grown by the margin."""
        node = p.roiNode
        if node is None:
            return None, None
        if node.IsA("vtkMRMLSegmentationNode"):
            mask = labelmap_from_segmentation(node, p.inputVolume)
            return str(write_image(mask, self.work_path("roi_mask.nii.gz"))), None
        box = box_from_bounds(_bounds_in_volume_frame(node, p.inputVolume), float(p.roiMarginMm), node.GetName())
        return None, RoiBox(box.ras_min, box.ras_max)

    def worker_python(self, p: Parameters | None) -> str:
        """The interpreter for the worker and install commands: the panel's setting, else the default."""
        return (p.pythonPath.strip() if p is not None else "") or self.default_python

    def _env(self, python: str) -> dict[str, str] | None:
        """The environment of a process run by ``python``: ours for our own interpreter, else the external one."""
        return None if python == self.default_python else self.external_env

    def run(self, p: Parameters, series_description: str = "") -> str:
        """Submit a job to the persistent worker (started on first use); return the job id."""
        job = self.build_job(p, series_description)
        self._job_volume = p.inputVolume  # the results belong to this volume, whatever is selected when they arrive
        self._job_cord = job.roi_mask
        python = self.worker_python(p)
        if self.client is None or self.client.python != python:
            self.stop_worker()
            self.client = self.client_class(python, self._env(python))
        return self.client.submit(job)

    def poll(self) -> list[Message]:
        """What the worker said since the last call; never waits."""
        return self.client.poll() if self.client else []

    def wait(self, timeout_s: float, on_idle: Callable[[], object] = lambda: time.sleep(0.05)) -> Result:
        """Block until the submitted job's result, calling ``on_idle`` between polls (Slicer's self-test passes
        ``processEvents``): for scripts and tests, never for the GUI. Raises InputError with the worker's error
        message, TimeoutError after ``timeout_s`` seconds."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in self.poll():
                if isinstance(message, Error):
                    raise InputError(None, message.message)
                if isinstance(message, Result):
                    return message
            on_idle()
        raise TimeoutError(f"the worker gave no result within {timeout_s:g} s")

    def cancel(self) -> None:
        if self.client:
            self.client.cancel()

    def stop_worker(self) -> None:
        if self.client:
            self.client.stop()
            self.client = None

    def result_summary(self, result: Result) -> str:
        """"Done in 12.3 s on cuda.": the job's total time (s) including model loading, and the device; then every
        warning about the job (a contrast the model was not trained on, a contrast hint the series description
        contradicts...), which the panel must not hide."""
        timings = result.results[0]["timings_s"]
        seconds = sum(v for k, v in timings.items() if k != "model_load_s") + result.model_load_s
        warnings = [*self.job_warnings, *result.results[0].get("warnings", [])]
        done = f"Done in {seconds:.1f} s on {result.device.get('name', '?')}{_precision_note(result)}."
        return done + _cord_stage_note(result) + "".join(f" Warning: {warning}" for warning in warnings)

    def load_results(self, p: Parameters, result: Result) -> tuple[float, float, float] | None:
        """Build the soft-map volume and the lesion segmentation from the worker's outputs (a fresh review);
        return where the views should jump (the largest lesion's centroid, RAS mm), or None without lesions.

        Its "Spinal cord" segment is the cord segmentation the job was cropped to, else the model's cord: the cord
        the worker judged lesions outside the cord by (:func:`..inference.case.outside_cord_record`), so the review
        table flags the lesions the sidecar lists; with "Crop to cord: automatic" the cord it found."""
        outputs = result.results[0]["outputs"]
        p.inputVolume = self._job_volume or p.inputVolume
        name = p.inputVolume.GetName()
        p.softMap = show_soft_map(self.scene, read_image(outputs["lesion_soft"]), f"{name} lesion probability")
        cord_file = self._job_cord or outputs.get("sc_seg")
        cord = read_image(cord_file) if cord_file else None
        p.segmentation = create_lesion_segmentation(self.scene, read_image(outputs["lesion_seg"]), p.inputVolume,
                                                    cord)
        clear_review_state(p.segmentation)
        p.segmentation.SetAttribute(THRESHOLD_ATTRIBUTE, repr(float(p.threshold)))
        self._undo.clear()
        return largest_lesion_ras(p.segmentation, lesion_segment_id(p.segmentation), p.inputVolume)

    # --- models -----------------------------------------------------------------------------------------------

    @staticmethod
    def model_names(*, installed: bool) -> list[str]:
        """Installed models (``installed=True``), or the published models that can be downloaded."""
        from ..models.registry import list_models

        return [s.name for s in list_models() if (s.installed if installed else s.kind == "published")]

    def start_install(self, p: Parameters | None, name: str, sources: Sequence[str] = ()) -> BackgroundCommand:
        """``spinal-lesion-seg models install NAME [--from SOURCE ...]`` in the background (downloads take
        minutes; checksums are verified), with the worker's interpreter."""
        args = ["models", "install", name, *[arg for source in sources for arg in ("--from", source)]]
        python = self.worker_python(p)
        return BackgroundCommand(python, args, self._env(python))

    # --- levels by TotalSpineSeg -----------------------------------------------------------------------------

    def levels_input(self, p: Parameters) -> Path:
        """The input volume (its own grid) as the NIfTI file TotalSpineSeg reads, named after the volume, in this
        session's folder; the same voxels give the same bytes, so a cached run for them is found again."""
        image = _checked_image(p.inputVolume)
        folder = self.work_path("totalspineseg")
        folder.mkdir(exist_ok=True)
        stem = re.sub(r"[^\w-]+", "_", p.inputVolume.GetName()).strip("_") or "input"
        return write_image(image, folder / f"{stem}.nii.gz")

    def start_levels(self, p: Parameters, tool: str | None = None) -> BackgroundCommand:
        """``spinal-lesion-seg levels --image IMG -o FOLDER --json`` in the background with the worker's
        interpreter (TotalSpineSeg found as the command line finds it, or ``tool``; on the panel's device when it
        names cuda or cpu, else cuda when available); :meth:`load_levels` takes its exit code and output."""
        image = self.levels_input(p)
        self._levels_volume = p.inputVolume
        device = p.device if p.device in ("cuda", "cpu") else defaults.DEVICE
        args = ["levels", "--image", str(image), "-o", str(image.parent), "--device", device, "--json",
                *(["--totalspineseg", tool] if tool else [])]
        python = self.worker_python(p)
        return BackgroundCommand(python, args, self._env(python))

    def load_levels(self, p: Parameters, code: int, lines: Sequence[str]) -> str:
        """Load the levels map (label map volume) and its disc points (point list, when it has two discs) that a
        finished :meth:`start_levels` command names, and make one the levels node as ``stats --levels auto``
        does: the discs when the cord is known (the result's "Spinal cord" segment: levels along the cord), else
        the map's vertebrae. Returns what the panel says; InputError with the command's one-line error."""
        if code != 0:
            raise InputError(None, _command_error(code, lines))
        found = _levels_record(lines)
        name = (self._levels_volume or p.inputVolume).GetName()
        levels = read_volume_node(self.scene, found["levels"], f"{name} TotalSpineSeg levels",
                                  "vtkMRMLLabelMapVolumeNode")
        levels.CreateDefaultDisplayNodes()
        discs = read_point_list(self.scene, found["discs"], f"{name} TotalSpineSeg discs") if found["discs"] else None
        along_cord = discs is not None and p.segmentation is not None and self._cord_segment_id(p) is not None
        p.levelsNode = discs if along_cord else levels
        how = "its discs along the cord" if along_cord else f"its vertebrae{' (no cord segment yet)' * bool(discs)}"
        return (f"Levels: TotalSpineSeg {found['version']} ({'cached' if found['reused'] else 'run now'}), "
                f"{how}: '{p.levelsNode.GetName()}'.")

    # --- statistics and export -------------------------------------------------------------------------------

    def level_source(self, p: Parameters) -> LevelSource | None:
        """The Levels selector's vertebral levels (:func:`.statistics.level_source_from_node`); None: totals only."""
        return level_source_from_node(p.levelsNode, self.work_path("levels.nii.gz"))

    def _cord_segment_id(self, p: Parameters) -> str | None:
        return p.segmentation.GetSegmentation().GetSegmentIdBySegmentName(CORD_SEGMENT_NAME) or None

    def compute_statistics(self, p: Parameters) -> StatisticsNodes:
        """Lesion and per-level tables and the volume-per-level chart, from the current (corrected) segment."""
        source = self.level_source(p)
        analysis = analyze_segment(p.segmentation, lesion_segment_id(p.segmentation), p.inputVolume,
                                   soft_node=p.softMap, levels=source, cord_segment_id=self._cord_segment_id(p))
        return statistics_nodes(self.scene, analysis, source, p.inputVolume.GetName(),
                                with_cord=self._cord_segment_id(p) is not None, owner=p.segmentation)

    def export(self, p: Parameters, folder: Path) -> list[Path]:
        """Write lesions.csv, levels.csv, summary.json (as the command line) and the corrected segmentation
        (.seg.nrrd and NIfTI) into ``folder`` (checked writable first); return the files written."""
        return export_statistics(writable_folder(folder), p.segmentation, lesion_segment_id(p.segmentation),
                                 p.inputVolume, soft_node=p.softMap, levels=self.level_source(p),
                                 cord_segment_id=self._cord_segment_id(p), save_seg_nrrd=True, save_nifti=True).files


def _bounds_in_volume_frame(roi: slicer.vtkMRMLNode, volume: slicer.vtkMRMLScalarVolumeNode) -> list[float]:
    """The ROI's RAS bounds (mm) in the volume's own frame: its world bounds mapped through the inverse of the
    volume's parent transform (the volume's voxels, and so the job's input file, are in that frame)."""
    bounds = [0.0] * 6
    roi.GetRASBounds(bounds)  # world coordinates: the ROI's own parent transforms applied
    if volume.GetParentTransformNode() is None:
        return bounds
    world_to_volume = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(None, volume.GetParentTransformNode(), world_to_volume)
    corners = np.array([world_to_volume.TransformPoint(corner) for corner in itertools.product(
        bounds[0:2], bounds[2:4], bounds[4:6])])
    return [value for axis in range(3) for value in (corners[:, axis].min(), corners[:, axis].max())]


def _cord_stage_note(result: Result) -> str:
    """How "Crop to cord: automatic" found the cord, from the sidecar's ``cord_stage`` record ("" without one)."""
    sidecar = result.results[0]["outputs"].get("sidecar")
    stage = safe_json.load_file(sidecar).get("cord_stage") if sidecar else None
    if not isinstance(stage, dict):
        return ""
    found = f"the cord model {stage.get('model')}" if stage.get("source") == "cord model" else stage.get("source")
    return f" Cropped to the cord found by {found} (the 'Spinal cord' segment)."


def _precision_note(result: Result) -> str:
    """" in bf16 (auto: ...)" from the sidecar's ``precision`` record, then ", on 3 tiles centred on the ROI (...)"
    from its ``tiles`` record ("" for fp32, the exact tiles, or without them): the user sees when values may
    differ slightly from a whole-image run."""
    sidecar = result.results[0]["outputs"].get("sidecar")
    record = safe_json.load_file(sidecar) if sidecar else {}
    used, tiles = record.get("precision"), record.get("tiles")
    note = f" in {used['used']} ({used['reason']})" if isinstance(used, dict) and used.get("used") != "fp32" else ""
    if isinstance(tiles, dict) and tiles.get("used") == "centred":
        note += (f", on {tiles.get('tiles')} tiles centred on the ROI instead of the whole image's "
                 f"{tiles.get('whole_image_tiles')} (faster; values differ slightly from a whole-image run)")
    return note


def _command_error(code: int, lines: Sequence[str]) -> str:
    """A failed command's one-line error (``spinal-lesion-seg: error: ...`` without the prefix), else its last
    line, else its exit code."""
    prefix = f"{defaults.PROG}: error: "
    said = [line.removeprefix(prefix) for line in lines if line.startswith(prefix)] or [
        line for line in lines if line.strip()]
    return said[-1] if said else f"the levels command stopped (exit code {code})"


def _levels_record(lines: Sequence[str]) -> dict[str, Any]:
    """The JSON line ``levels --json`` prints (the files, the version, whether the cache was reused)."""
    for line in reversed(lines):
        if line.startswith("{"):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("levels"):
                return record
    raise InputError(None, "the levels command named no levels map (see the log)")


def _contrast_warnings(contrast: str, volume_name: str, series_description: str) -> list[str]:
    """A warning when the contrast the job uses (a name, or auto) differs from what the volume's name (a BIDS
    suffix) or its DICOM series description says (:func:`..plausibility.contrast_conflict`)."""
    used = resolve_contrast(contrast, volume_name)[0]
    evidence = {"the volume name": guess_contrast(volume_name + ".nii.gz"),
                "the DICOM series description": contrast_from_description(series_description)}
    conflict = contrast_conflict(used, {source: named for source, named in evidence.items() if named})
    return [conflict] if conflict else []


def _checked_image(volume: slicer.vtkMRMLScalarVolumeNode | None) -> sitk.Image:
    """The volume as an image, checked as the command line checks a file (InputError naming the volume)."""
    if volume is None:
        raise InputError(None, "no input volume selected")
    image = image_from_volume_node(volume)
    validate_image(image, volume.GetName())
    return image
