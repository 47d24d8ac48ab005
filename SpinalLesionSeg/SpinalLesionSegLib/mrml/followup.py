"""The change since a previous scan and the clinical report, from the scene's nodes (scene and nodes passed in).

**Compare with previous scan.** The previous volume and its segmentation are the baseline; the current input
volume and its lesion segment (as corrected in the Segment Editor) the follow-up. They are compared by
:func:`..analysis.longitudinal.compare_scans`, the ``compare`` command's own function: the follow-up is registered
to the baseline (rigid; around the cord when the previous segmentation has a ``Spinal cord`` segment, checked with
the current one when it has one too), and every lesion gets its class with the command's defaults. The results:

* a table node with one row per change event, the columns of ``lesion_changes.csv``;
* a segmentation node on the current scan's grid with one segment per class, coloured by :data:`CHANGE_COLORS`:
  the current scan's lesions of each new, enlarged, stable, shrunk, merged and split event, and, for
  **disappeared**, the previous scan's lesions mapped onto the current grid through the registration (nearest
  neighbour): where they were, in today's anatomy. A lesion in two events (merged into one lesion and split from
  another) is in both segments;
* with an output folder, the command's files (summary.json, lesion_changes.csv, followup_to_baseline.tfm,
  registration.png; :func:`..analysis.longitudinal.write_comparison`) in its ``compare`` subfolder.

Changes per vertebral level are not counted here: ``compare`` counts them on the baseline's levels, and the panel's
levels belong to the current scan (``spinal-lesion-seg compare --levels`` does it from files).

**Create report.** The ``report`` command's files (:func:`..reporting.writer.make_report`: report.html, report.pdf,
their pictures, report.json) in the folder's ``report`` subfolder, from the corrected lesion segment, the soft
map, the levels node and the ``Spinal cord`` segment when present, and with a previous scan the change section
(:func:`..reporting.change.compare_for_report`, as ``report --baseline-image --baseline-lesion``). The nodes are
written first to ``report/inputs`` (``<role>_<node name>.nii.gz``; a point list as ``.mrk.json``), the files the
report is made from, so report.json's paths and sha256 name files that exist.

Both run in the calling thread (registration takes seconds, a report a few more); the panel shows a wait cursor.
Only inference needs the worker process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk
import slicer

from ..analysis.longitudinal import (CHANGE_COLUMNS, CLASSES, ComparisonOutputs, LongitudinalResult, change_rows,
                                     compare_scans, write_comparison)
from ..analysis.registration import to_baseline
from ..analysis.report import soft_values
from ..errors import InputError
from ..image_io import array_to_image, write_image
from ..outputs import writable_folder
from ..reporting.change import CHANGE_CLASSES
from ..validation import validate_image
from .nodes import image_from_volume_node, write_with_storage
from .results import (add_empty_segment, check_same_grid, cord_mask, lesion_segment_id, segment_mask,
                      write_segment_mask)
from .review_steps import Parameters
from .statistics import owned_node
from .tables import fill_table

if TYPE_CHECKING:
    from ..reporting.writer import ReportOutputs

#: Segment colours (RGB 0..1) of the change classes: the Okabe-Ito palette, told apart with any colour vision.
#: Warm for worse (new vermillion, enlarged orange), cool for better (shrunk sky blue, disappeared blue), stable
#: bluish green, merged reddish purple, split yellow. Segments are named and ordered as the report lists the
#: classes (:data:`..reporting.change.CHANGE_CLASSES`).
CHANGE_COLORS = {
    "new": (0.835, 0.369, 0.0), "enlarged": (0.902, 0.624, 0.0), "stable": (0.0, 0.620, 0.451),
    "shrunk": (0.337, 0.706, 0.914), "disappeared": (0.0, 0.447, 0.698), "merged": (0.800, 0.475, 0.655),
    "split": (0.941, 0.894, 0.259),
}
#: Subfolders of the chosen output folder: the comparison's files, the report's, and the report's inputs.
COMPARE_FOLDER, REPORT_FOLDER, INPUTS_FOLDER = "compare", "report", "inputs"
#: The report's input files, by role (``<role>_<node name>`` in :data:`INPUTS_FOLDER`).
INPUT_ROLES = ("image", "lesion", "soft", "cord", "levels", "baseline_image", "baseline_lesion")
#: Node references (on the current segmentation) to the comparison's nodes, reused when comparing again.
TABLE_ROLE, SEGMENTATION_ROLE = "ChangeTable", "ChangeSegmentation"


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare_with_previous` made: the comparison, its table and segmentation nodes, and the files
    written (None without an output folder)."""

    result: LongitudinalResult
    table: slicer.vtkMRMLTableNode
    segmentation: slicer.vtkMRMLSegmentationNode
    outputs: ComparisonOutputs | None

    def counts_text(self) -> str:
        """``new 1, disappeared 0, ...``: the events per class, as ``compare`` prints them."""
        counts = self.result.counts()
        return ", ".join(f"{name} {counts[name]}" for name in CLASSES)


def compare_with_previous(scene: slicer.vtkMRMLScene, p: Parameters,
                          previous_volume: slicer.vtkMRMLScalarVolumeNode | None,
                          previous_segmentation: slicer.vtkMRMLSegmentationNode | None,
                          out_dir: str | Path | None = None) -> Comparison:
    """Compare the current scan (``p.inputVolume``, the lesion segment of ``p.segmentation``, ``p.softMap``) with
    a previous one; add (or refresh) the change table and the change segmentation; with ``out_dir``, write the
    ``compare`` command's files into its ``compare`` subfolder (checked writable first). InputError (one line)
    for a missing or unusable node and for an implausible registration."""
    folder = writable_folder(Path(out_dir) / COMPARE_FOLDER) if out_dir else None
    image, lesion, soft, cord = current_scan(p)
    before, before_lesion, before_cord = previous_scan(previous_volume, previous_segmentation, p.inputVolume)
    volume = p.inputVolume
    result = compare_scans(before, before_lesion, image, lesion, followup_soft=soft, baseline_cord=before_cord,
                           followup_cord=cord, followup_source=volume.GetName())
    name = f"{volume.GetName()} since {previous_volume.GetName()}"
    table = owned_node(scene, p.segmentation, TABLE_ROLE, "vtkMRMLTableNode", name)
    table.SetName(f"{name}: lesion changes")
    fill_table(table, CHANGE_COLUMNS, change_rows(result))
    segmentation = owned_node(scene, p.segmentation, SEGMENTATION_ROLE, "vtkMRMLSegmentationNode", name)
    segmentation.SetName(f"{name}: changes")
    fill_change_segmentation(segmentation, class_masks(result, before, image), volume)
    outputs = None
    if folder is not None:
        outputs = write_comparison(result, folder, inputs=_node_inputs(p, previous_volume, previous_segmentation))
    return Comparison(result, table, segmentation, outputs)


def current_scan(p: Parameters) -> tuple[sitk.Image, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The current input volume as an image (checked as the command line checks a file), and its lesion segment,
    soft map (0..1) and cord (:func:`.results.cord_mask`: None without a cord segment) as ``[k, j, i]`` arrays on
    its grid."""
    volume, segmentation = p.inputVolume, p.segmentation
    if volume is None:
        raise InputError(None, "no input volume selected")
    if segmentation is None:
        raise InputError(volume.GetName(), "has no lesion segmentation: run the model or choose one first")
    image = _checked_image(volume)
    lesion = segment_mask(segmentation, lesion_segment_id(segmentation), volume)
    soft = None
    if p.softMap is not None:
        check_same_grid(p.softMap, volume)
        soft = soft_values(image_from_volume_node(p.softMap), p.softMap.GetName())
    return image, lesion, soft, cord_mask(segmentation, lesion, volume)


def previous_scan(volume: slicer.vtkMRMLScalarVolumeNode | None, segmentation: slicer.vtkMRMLSegmentationNode | None,
                  current: slicer.vtkMRMLScalarVolumeNode | None) -> tuple[sitk.Image, np.ndarray, np.ndarray | None]:
    """The previous scan as an image, with its lesion segment and cord (None without a cord segment) on its grid.
    The lesion segment is the one named ``MS lesion``, else the only segment (a mask loaded from a file)."""
    if volume is None:
        raise InputError(None, "no previous scan selected: choose the earlier volume")
    if segmentation is None:
        raise InputError(volume.GetName(), "has no segmentation selected: choose the previous scan's lesions")
    if volume is current:
        raise InputError(volume.GetName(), "is the current input volume: choose the earlier scan")
    image = _checked_image(volume)
    lesion = segment_mask(segmentation, previous_lesion_segment(segmentation), volume)
    return image, lesion, cord_mask(segmentation, lesion, volume)


def previous_lesion_segment(segmentation: slicer.vtkMRMLSegmentationNode) -> str:
    """The ``MS lesion`` segment's ID, else the ID of the only segment; InputError otherwise."""
    content = segmentation.GetSegmentation()
    try:
        return lesion_segment_id(segmentation)
    except InputError:
        if content.GetNumberOfSegments() == 1:
            return content.GetNthSegmentID(0)
        raise InputError(segmentation.GetName(), f"has {content.GetNumberOfSegments()} segments and none named "
                                                 "'MS lesion': name the lesion segment 'MS lesion'") from None


def class_masks(result: LongitudinalResult, baseline_image: sitk.Image,
                followup_image: sitk.Image) -> dict[str, np.ndarray]:
    """Each change class's voxels as a boolean ``[k, j, i]`` array on the follow-up (current) grid: the follow-up
    lesions of its events; for disappeared, the baseline lesions mapped onto the follow-up grid."""
    masks = {change: np.zeros(result.followup.labels.shape, dtype=bool) for change in CLASSES}
    gone = np.zeros(result.baseline.labels.shape, dtype=bool)
    for event in result.changes:
        if event.followup_ids:
            masks[event.change] |= np.isin(result.followup.labels, event.followup_ids)
        else:
            gone |= np.isin(result.baseline.labels, event.baseline_ids)
    # The registration's resampling, the other way: baseline voxels onto the follow-up grid (follow-up points ->
    # baseline points is the inverse of the transform, which maps baseline points to follow-up points).
    masks["disappeared"] = to_baseline(gone.astype(np.uint8), baseline_image, followup_image,
                                       result.registration.transform.GetInverse()) > 0
    return masks


def fill_change_segmentation(segmentation: slicer.vtkMRMLSegmentationNode, masks: dict[str, np.ndarray],
                             volume: slicer.vtkMRMLScalarVolumeNode) -> None:
    """Replace the segments by one per class (named as the report names it, coloured by :data:`CHANGE_COLORS`)
    holding ``masks[class]`` on ``volume``'s grid, which becomes the reference geometry."""
    segmentation.GetSegmentation().RemoveAllSegments()
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    for change, label in CHANGE_CLASSES.items():
        segment_id = add_empty_segment(segmentation, label, volume, CHANGE_COLORS[change])
        write_segment_mask(segmentation, segment_id, masks[change], volume)


def create_report(p: Parameters, out_dir: str | Path | None,
                  previous_volume: slicer.vtkMRMLScalarVolumeNode | None = None,
                  previous_segmentation: slicer.vtkMRMLSegmentationNode | None = None,
                  patient_id: str | None = None) -> ReportOutputs:
    """Write the ``report`` command's files into ``out_dir``'s ``report`` subfolder from the current nodes (the
    corrected lesion segment), with the change since the previous scan when ``previous_volume`` is given (its
    segmentation is then required); return what was written. InputError (one line) for a missing folder or node."""
    from ..reporting.change import compare_for_report
    from ..reporting.writer import make_report

    if not out_dir:
        raise InputError(None, "no output folder chosen for the report")
    folder = writable_folder(Path(out_dir) / REPORT_FOLDER)
    image, lesion, soft, cord = current_scan(p)
    baseline = (previous_scan(previous_volume, previous_segmentation, p.inputVolume)
                if previous_volume is not None or previous_segmentation is not None else None)
    inputs = writable_folder(folder / INPUTS_FOLDER)
    for role in INPUT_ROLES:  # this report's inputs only: none left from an earlier report
        for stale in inputs.glob(f"{role}_*"):
            stale.unlink()
    volume, segmentation = p.inputVolume, p.segmentation
    files = {"image": write_image(image, _input_path(inputs, "image", volume)),
             "lesion": write_image(_mask_image(lesion, image), _input_path(inputs, "lesion", segmentation))}
    if soft is not None:
        files["soft"] = write_image(array_to_image(soft.astype(np.float32), image),
                                    _input_path(inputs, "soft", p.softMap))
    if cord is not None:
        files["cord"] = write_image(_mask_image(cord, image), _input_path(inputs, "cord", segmentation))
    if p.levelsNode is not None:
        files["levels"] = _write_levels(p.levelsNode, inputs)
    longitudinal = None
    if baseline is not None:
        before, before_lesion, _ = baseline
        baseline_image = write_image(before, _input_path(inputs, "baseline_image", previous_volume))
        baseline_lesion = write_image(_mask_image(before_lesion, before),
                                      _input_path(inputs, "baseline_lesion", previous_segmentation))
        longitudinal = compare_for_report(baseline_image, baseline_lesion, files["image"], files["lesion"])
    return make_report(files["image"], files["lesion"], folder, soft_path=files.get("soft"),
                       levels_path=files.get("levels"), cord_path=files.get("cord"), patient_id=patient_id,
                       longitudinal=longitudinal)


def _checked_image(volume: slicer.vtkMRMLScalarVolumeNode) -> sitk.Image:
    image = image_from_volume_node(volume)
    validate_image(image, volume.GetName())
    return image


def _mask_image(mask: np.ndarray, reference: sitk.Image) -> sitk.Image:
    return sitk.Cast(array_to_image(mask.astype(np.uint8), reference), sitk.sitkUInt8)


def _input_path(folder: Path, role: str, node: slicer.vtkMRMLNode, suffix: str = ".nii.gz") -> Path:
    """``folder/<role>_<node name><suffix>``, the name reduced to letters, digits, ``.``, ``-`` and ``_``."""
    stem = re.sub(r"[^\w.-]+", "_", node.GetName()).strip("._") or "node"
    return folder / f"{role}_{stem}{suffix}"


def _write_levels(node: slicer.vtkMRMLNode, folder: Path) -> Path:
    """The levels node as the report reads levels: a label map as NIfTI, a point list naming discs as a Slicer
    ``.mrk.json`` written by Slicer's own markups storage node (node coordinates, as the panel reads them)."""
    if not node.IsA("vtkMRMLMarkupsFiducialNode"):
        return write_image(image_from_volume_node(node), _input_path(folder, "levels", node))
    storage = slicer.vtkMRMLMarkupsJsonStorageNode()  # slicer-core does not register it for AddNewNodeByClass
    node.GetScene().AddNode(storage)
    return write_with_storage(storage, node, _input_path(folder, "levels", node, ".mrk.json"), ".partial.mrk.json",
                              f"the point list {node.GetName()!r}")


def _node_inputs(p: Parameters, previous_volume: slicer.vtkMRMLScalarVolumeNode,
                 previous_segmentation: slicer.vtkMRMLSegmentationNode) -> dict[str, dict[str, str]]:
    """summary.json's ``inputs``: the nodes compared, by the ``compare`` command's roles."""
    inputs = {"baseline": {"node": previous_volume.GetName()},
              "baseline_lesion": {"node": previous_segmentation.GetName(),
                                  "segment": previous_lesion_segment(previous_segmentation)},
              "followup": {"node": p.inputVolume.GetName()},
              "followup_lesion": {"node": p.segmentation.GetName(), "segment": lesion_segment_id(p.segmentation)}}
    if p.softMap is not None:
        inputs["followup_soft"] = {"node": p.softMap.GetName()}
    return inputs
