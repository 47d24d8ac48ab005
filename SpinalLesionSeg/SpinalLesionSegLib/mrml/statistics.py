"""Statistics in Slicer: per-lesion and per-level table nodes, the volume-per-level bar chart, disc points from a
markups node, and the export of the command line's report (scene and nodes passed in).

All numbers come from the analysis core (:func:`..analysis.lesions.analyze_lesions` through
:func:`.review.analyze_segment`, rows from :mod:`..analysis.report`), so the tables, the chart and the exported
lesions.csv / levels.csv / summary.json agree with ``spinal-lesion-seg stats`` to the last digit.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer

from ..analysis.lesions import LesionAnalysis
from ..analysis.level_sources import discs_from_labelled_points, load_level_source
from ..analysis.levels import LevelSource
from ..analysis.report import LESION_COLUMNS, LEVEL_COLUMNS, StatsOutputs, lesion_rows, level_table, write_report
from ..defaults import LEVEL_MAX_DISTANCE_MM
from ..image_io import array_to_image, write_image
from .nodes import image_from_volume_node, save_segmentation
from .review import analyze_segment, grid_image
from .tables import fill_table


@dataclass(frozen=True)
class StatisticsNodes:
    """The nodes made by :func:`statistics_nodes`: tables (per lesion, per level), the chart and its series."""

    lesions: slicer.vtkMRMLTableNode
    levels: slicer.vtkMRMLTableNode
    chart: slicer.vtkMRMLPlotChartNode
    series: slicer.vtkMRMLPlotSeriesNode
    chart_table: slicer.vtkMRMLTableNode


def owned_node(scene: slicer.vtkMRMLScene, owner: slicer.vtkMRMLNode | None, role: str, node_class: str,
                name: str) -> slicer.vtkMRMLNode:
    """The node ``owner`` references under ``role`` (reused, so recomputing does not pile up nodes), or a new one
    that it then references; a new node every time without an owner."""
    role = f"SpinalLesionSeg.{role}"
    node = owner.GetNodeReference(role) if owner is not None else None
    if node is None or not node.IsA(node_class):
        node = scene.AddNewNodeByClass(node_class, name)
        if owner is not None:
            owner.SetNodeReferenceID(role, node.GetID())
    return node


def statistics_nodes(scene: slicer.vtkMRMLScene, analysis: LesionAnalysis, source: LevelSource | None,
                     name: str, with_cord: bool = False, owner: slicer.vtkMRMLNode | None = None) -> StatisticsNodes:
    """Table nodes with the rows of lesions.csv and levels.csv (levels in anatomical order, then unassigned) and
    a bar chart of lesion volume (mm3) per level; with an ``owner`` (the segmentation), the nodes it references
    from an earlier call are refreshed instead of new ones added.

    The chart reads its own small table (``level_order`` 1..n as X, ``level`` as bar labels, ``volume_mm3`` as Y):
    a scatter-bar series needs a numeric X column, and levels.csv has none.
    """
    lesions = owned_node(scene, owner, "LesionStatistics", "vtkMRMLTableNode", f"{name} lesion statistics")
    fill_table(lesions, LESION_COLUMNS, lesion_rows(analysis, with_cord))
    level_rows = level_table(analysis, source)
    levels = owned_node(scene, owner, "LevelStatistics", "vtkMRMLTableNode", f"{name} level statistics")
    fill_table(levels, LEVEL_COLUMNS, level_rows)
    chart_table = owned_node(scene, owner, "VolumePerLevelTable", "vtkMRMLTableNode", f"{name} volume per level")
    fill_table(chart_table, ("level_order", "level", "volume_mm3"),
                [{"level_order": n, "level": row["level"], "volume_mm3": row["volume_mm3"]}
                 for n, row in enumerate(level_rows, start=1)])
    series = owned_node(scene, owner, "VolumePerLevelSeries", "vtkMRMLPlotSeriesNode", f"{name} lesion volume")
    series.SetAndObserveTableNodeID(chart_table.GetID())
    series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatterBar)
    series.SetXColumnName("level_order")
    series.SetYColumnName("volume_mm3")
    series.SetLabelColumnName("level")
    series.SetColor(0.9, 0.15, 0.15)
    chart = owned_node(scene, owner, "VolumePerLevelChart", "vtkMRMLPlotChartNode", f"{name} volume per level")
    chart.RemoveAllPlotSeriesNodeIDs()
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetTitle("Lesion volume per vertebral level")
    chart.SetXAxisTitle("Vertebral level (superior to inferior, then unassigned)")
    chart.SetYAxisTitle("Lesion volume (mm3)")
    chart.SetLegendVisibility(False)
    return StatisticsNodes(lesions, levels, chart, series, chart_table)


def markups_to_disc_points(markups: slicer.vtkMRMLMarkupsFiducialNode) -> dict[int, np.ndarray]:
    """Disc positions (SCT disc number -> RAS mm) from a point list whose labels name discs (``C2-C3``,
    ``C2/C3``, or SCT codes ``3``), as :class:`.levels.LevelSource` holds them. Same rules as ``.mrk.json``
    files; node-local RAS (parent transforms are not applied, like the volumes)."""
    points = []
    for index in range(markups.GetNumberOfControlPoints()):
        defined = markups.GetNthControlPointPositionStatus(index) != markups.PositionUndefined
        points.append((markups.GetNthControlPointLabel(index),
                       np.array(markups.GetNthControlPointPosition(index), dtype=float) if defined else None))
    return discs_from_labelled_points(points, Path(markups.GetName()))


def level_source_from_markups(markups: slicer.vtkMRMLMarkupsFiducialNode) -> LevelSource:
    """A ``markups`` level source from a point list node (its name stands in for a file path in reports)."""
    return LevelSource("markups", Path(markups.GetName()), discs=markups_to_disc_points(markups))


def level_source_from_node(node: slicer.vtkMRMLNode | None, work_file: Path) -> LevelSource | None:
    """The vertebral levels a node gives: a markups point list naming discs, or a label map (SCT labelled cord,
    TotalSpineSeg or disc points, detected as the command line does, from ``work_file`` written for it); None
    without a node."""
    if node is None:
        return None
    if node.IsA("vtkMRMLMarkupsFiducialNode"):
        return level_source_from_markups(node)
    return load_level_source(write_image(image_from_volume_node(node), work_file))


def export_statistics(out_dir: str | os.PathLike[str], segmentation: slicer.vtkMRMLSegmentationNode,
                      segment_id: str, reference_volume: slicer.vtkMRMLVolumeNode, *,
                      soft_node: slicer.vtkMRMLScalarVolumeNode | None = None, levels: LevelSource | None = None,
                      cord_segment_id: str | None = None, max_distance_mm: float = LEVEL_MAX_DISTANCE_MM,
                      save_seg_nrrd: bool = False, save_nifti: bool = False) -> StatsOutputs:
    """Write the command line's report (lesions.csv, levels.csv, summary.json, lesion label image) for the
    current segment, and optionally the segmentation as ``<name>.seg.nrrd`` and the segment as a NIfTI 0/1 mask
    ``<name>.nii.gz`` on the reference grid.

    The summary's ``inputs`` name the nodes (there are no files to hash).
    """
    out = Path(out_dir)
    analysis = analyze_segment(segmentation, segment_id, reference_volume, soft_node=soft_node, levels=levels,
                               cord_segment_id=cord_segment_id, max_distance_mm=max_distance_mm)
    stem = re.sub(r"[^\w.-]+", "_", segmentation.GetName()).strip("_") or "segmentation"
    reference = grid_image(reference_volume)
    inputs = {"lesion": {"node": segmentation.GetName(), "segment": segment_id},
              "reference": {"node": reference_volume.GetName()}}
    if soft_node is not None:
        inputs["soft"] = {"node": soft_node.GetName()}
    if cord_segment_id:
        inputs["cord"] = {"node": segmentation.GetName(), "segment": cord_segment_id}
    outputs = write_report(analysis, reference, out, stem, source=levels, with_cord=cord_segment_id is not None,
                           inputs=inputs, max_distance_mm=max_distance_mm)
    extra = []
    if save_seg_nrrd:
        extra.append(save_segmentation(segmentation, out / f"{stem}.seg.nrrd"))
    if save_nifti:
        mask = (analysis.labels != 0).astype(np.uint8)
        extra.append(write_image(sitk.Cast(array_to_image(mask, reference), sitk.sitkUInt8), out / f"{stem}.nii.gz"))
    return dataclasses.replace(outputs, extra_files=tuple(extra))
