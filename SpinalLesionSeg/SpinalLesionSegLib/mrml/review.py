"""Lesion review in Slicer: the lesion table, jumping to a lesion, rejecting one, and candidates from the soft map
that the segment leaves out (scene and nodes passed in).

Lesions are the connected components of the segment as :func:`..analysis.lesions.analyze_lesions` finds them
(18-connected, numbered in voxel order), measured by that same function, so a lesion's ID, volume and level here are
those of the exported statistics. IDs are only valid for the segment content they were computed from: rebuild the
table after every edit or rejection.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import slicer

from ..analysis.candidates import Candidates, find_candidates
from ..analysis.lesions import LesionAnalysis, analyze_lesions, label_components
from ..analysis.levels import LevelSource, level_name
from ..analysis.outside_cord import with_outside_cord
from ..defaults import (CANDIDATE_THRESHOLD, CONNECTIVITY, LEVEL_MAX_DISTANCE_MM, LOW_PROBABILITY,
                        OUTSIDE_CORD_MARGIN_MM)
from ..errors import InputError
from ..geometry import set_ijk_to_ras
from .nodes import node_ijk_to_ras
from .results import CORD_SEGMENT_NAME, check_same_grid, node_array, segment_mask, write_segment_mask
from .tables import fill_table

CANDIDATE_COLUMNS = ("id", "volume_mm3", "peak_probability", "mean_probability", "centroid_r_mm", "centroid_a_mm",
                     "centroid_s_mm")
REVIEW_COLUMNS = ("id", "volume_mm3", "mean_probability", "level", "flag", "length_mm", "centroid_r_mm",
                  "centroid_a_mm", "centroid_s_mm")
#: Review columns shown only with a level source (inserted after ``length_mm``).
LEVEL_REVIEW_COLUMNS = ("levels_spanned", "extensive")
#: Review columns shown only when the segmentation has a non-empty "Spinal cord" segment.
CORD_REVIEW_COLUMNS = ("max_damage_ratio",)
#: Flag of a lesion that does not touch the dilated cord (:mod:`..analysis.outside_cord`), followed by its
#: distance to the cord: "outside cord (6.0 mm)".
OUTSIDE_CORD_TEXT = "outside cord"
#: Text of the ``extensive`` column for a lesion touching three or more vertebral levels (a pointer to NMOSD).
EXTENSIVE_TEXT = "3+ levels"


def grid_image(reference_volume: slicer.vtkMRMLVolumeNode) -> sitk.Image:
    """An empty uint8 image with the volume node's grid: the geometry the analysis core needs, without copying
    the node's voxels."""
    image = sitk.Image(reference_volume.GetImageData().GetDimensions(), sitk.sitkUInt8)
    set_ijk_to_ras(image, node_ijk_to_ras(reference_volume))
    return image


def analyze_segment(segmentation: slicer.vtkMRMLSegmentationNode, segment_id: str,
                    reference_volume: slicer.vtkMRMLVolumeNode, *,
                    soft_node: slicer.vtkMRMLScalarVolumeNode | None = None, levels: LevelSource | None = None,
                    cord_segment_id: str | None = None, max_distance_mm: float = LEVEL_MAX_DISTANCE_MM,
                    outside_cord_margin_mm: float = OUTSIDE_CORD_MARGIN_MM) -> LesionAnalysis:
    """Run :func:`..analysis.lesions.analyze_lesions` on a segment (the user's current, corrected version) on the
    reference volume's grid, with the soft map (same grid) and the cord segment when given.

    The cord is the cord segment plus the lesion (:func:`.results.cord_mask`: segments here do not overlap, so the
    cord segment alone has holes where the lesions are, which would shrink cord areas and shift its centroids).
    With a non-empty cord segment the lesions are also judged by the outside-cord rule against the cord segment
    alone (:func:`..analysis.outside_cord.with_outside_cord`, margin in mm): the cord plus the lesion would let
    every lesion touch it.
    """
    mask, soft, cord = segment_arrays(segmentation, segment_id, reference_volume, soft_node, cord_segment_id)
    grid = grid_image(reference_volume)
    analysis = analyze_lesions(mask, grid, soft=soft, levels=levels, cord=None if cord is None else cord | mask,
                               max_distance_mm=max_distance_mm)
    return with_outside_cord(analysis, cord, grid.GetSpacing()[::-1], outside_cord_margin_mm)


def segment_arrays(segmentation: slicer.vtkMRMLSegmentationNode, segment_id: str,
                   reference_volume: slicer.vtkMRMLVolumeNode, soft_node: slicer.vtkMRMLScalarVolumeNode | None,
                   cord_segment_id: str | None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``[k, j, i]`` arrays on the reference volume's grid: the segment (bool), the soft map (0..1, the same grid
    required) and the cord segment alone (bool; None when absent or empty)."""
    mask = segment_mask(segmentation, segment_id, reference_volume)
    soft = None
    if soft_node is not None:
        check_same_grid(soft_node, reference_volume)
        soft = np.clip(node_array(soft_node).astype(np.float64), 0.0, 1.0)
    cord = segment_mask(segmentation, cord_segment_id, reference_volume) if cord_segment_id else None
    return mask, soft, cord if cord is not None and cord.any() else None


def lesion_review_table(scene: slicer.vtkMRMLScene, segmentation: slicer.vtkMRMLSegmentationNode, segment_id: str,
                        soft_node: slicer.vtkMRMLScalarVolumeNode, reference_volume: slicer.vtkMRMLVolumeNode,
                        levels: LevelSource | None = None, low_probability: float = LOW_PROBABILITY,
                        table: slicer.vtkMRMLTableNode | None = None) -> slicer.vtkMRMLTableNode:
    """A table node with one row per lesion: id, volume (mm3), mean probability, primary level (empty without a
    level source), flag (``"check"`` when the mean probability is below ``low_probability``; ``"outside cord (D
    mm)"`` when it does not touch the cord segment dilated by the outside-cord margin, D its distance to the cord in
    mm), length (mm, along
    the cord centreline when the segmentation has a "Spinal cord" segment, else superior-inferior), and centroid
    (RAS mm). With a level source, also the levels the lesion touches and ``extensive`` (:data:`EXTENSIVE_TEXT`
    at three or more, which points to NMOSD rather than MS); with a non-empty cord segment, the maximum axial
    damage ratio (lesion area / cord area, 0..1). Rows run from the least to the most probable lesion, so the
    doubtful ones come first; the ``id`` column names the lesion (the statistics'
    numbering), whatever its row.

    Pass ``table`` to refresh an existing node in place (the panel keeps showing the same node).
    """
    cord_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName(CORD_SEGMENT_NAME) or None
    analysis = analyze_segment(segmentation, segment_id, reference_volume, soft_node=soft_node, levels=levels,
                               cord_segment_id=cord_id)
    rows = []
    outside = analysis.outside_cord
    for lesion in analysis.lesions:
        mean = lesion.soft_volume_mm3 / lesion.volume_mm3
        flags = (["check"] if mean < low_probability else []) + (
            [f"{OUTSIDE_CORD_TEXT} ({outside.distances_mm[lesion.id]:.1f} mm)"]
            if outside is not None and outside.is_outside(lesion.id) else [])
        rows.append(dict(zip(REVIEW_COLUMNS, (
            lesion.id, lesion.volume_mm3, mean, level_name(lesion.primary_level) if levels is not None else "",
            ", ".join(flags), lesion.length_mm, *lesion.centroid_ras))) | {
            "levels_spanned": lesion.levels_spanned,
            "extensive": EXTENSIVE_TEXT if lesion.longitudinally_extensive else "",
            "max_damage_ratio": lesion.max_damage_ratio})
    with_cord = analysis.cord_level_voxels is not None
    at = REVIEW_COLUMNS.index("length_mm") + 1
    columns = (REVIEW_COLUMNS[:at] + (LEVEL_REVIEW_COLUMNS if levels is not None else ())
               + (CORD_REVIEW_COLUMNS if with_cord else ()) + REVIEW_COLUMNS[at:])
    table = table or scene.AddNewNodeByClass("vtkMRMLTableNode", f"{segmentation.GetName()} review")
    fill_table(table, columns, sorted(rows, key=lambda row: (row["mean_probability"], row["id"])))
    return table


def find_segment_candidates(segmentation: slicer.vtkMRMLSegmentationNode, segment_id: str,
                            soft_node: slicer.vtkMRMLScalarVolumeNode, reference_volume: slicer.vtkMRMLVolumeNode,
                            threshold: float = CANDIDATE_THRESHOLD) -> Candidates:
    """Blobs of the soft map at or above ``threshold`` that the segment leaves out (:mod:`..analysis.candidates`)."""
    check_same_grid(soft_node, reference_volume)
    mask = segment_mask(segmentation, segment_id, reference_volume)
    soft = np.clip(node_array(soft_node).astype(np.float64), 0.0, 1.0)
    return find_candidates(soft, mask, grid_image(reference_volume), threshold=threshold)


def candidate_table(table: slicer.vtkMRMLTableNode, candidates: Candidates) -> slicer.vtkMRMLTableNode:
    """Fill ``table`` with one row per candidate: id, volume (mm3), peak and mean probability, centroid (RAS mm),
    the most probable first."""
    rows = [dict(zip(CANDIDATE_COLUMNS, (c.id, c.volume_mm3, c.peak_probability, c.mean_probability,
                                         *c.centroid_ras))) for c in candidates.items]
    fill_table(table, CANDIDATE_COLUMNS, sorted(rows, key=lambda row: (-row["peak_probability"], row["id"])))
    return table


def add_candidate(segmentation: slicer.vtkMRMLSegmentationNode, segment_id: str, candidates: Candidates,
                  candidate_id: int, reference_volume: slicer.vtkMRMLVolumeNode) -> int:
    """Add candidate ``candidate_id``'s voxels to the segment (a user edit, like a rejection); return the voxels
    added."""
    if not 1 <= candidate_id <= len(candidates.items):
        raise InputError(segmentation.GetName(), f"has no candidate {candidate_id} (it has {len(candidates.items)})")
    mask = segment_mask(segmentation, segment_id, reference_volume)
    blob = candidates.mask(candidate_id)
    write_segment_mask(segmentation, segment_id, mask | blob, reference_volume)
    return int(np.count_nonzero(blob & ~mask))


def lesion_centroid_ras(segmentation: slicer.vtkMRMLSegmentationNode, segment_id: str, lesion_id: int,
                        reference_volume: slicer.vtkMRMLVolumeNode) -> tuple[float, float, float]:
    """Centroid (RAS mm) of lesion ``lesion_id`` of the segment, to centre the slice views on it."""
    analysis = analyze_segment(segmentation, segment_id, reference_volume)
    if not 1 <= lesion_id <= len(analysis.lesions):
        raise InputError(segmentation.GetName(), f"has no lesion {lesion_id} (it has {len(analysis.lesions)})")
    return analysis.lesions[lesion_id - 1].centroid_ras


def largest_lesion_ras(segmentation: slicer.vtkMRMLSegmentationNode, segment_id: str,
                       reference_volume: slicer.vtkMRMLVolumeNode) -> tuple[float, float, float] | None:
    """Centroid (RAS mm) of the largest lesion (ties: the lowest ID), or None when the segment is empty: where
    the views jump after a result arrives."""
    lesions = analyze_segment(segmentation, segment_id, reference_volume).lesions
    if not lesions:
        return None
    return max(lesions, key=lambda lesion: (lesion.voxel_count, -lesion.id)).centroid_ras


def reject_lesion(segmentation: slicer.vtkMRMLSegmentationNode, segment_id: str, lesion_id: int,
                  reference_volume: slicer.vtkMRMLVolumeNode) -> int:
    """Remove lesion ``lesion_id`` (its whole connected component, as numbered by the review table) from the
    segment; return the voxels removed. Other lesions and segments are untouched. This is a user edit: the
    automatic fingerprint is not updated, so the live threshold will not silently bring the lesion back."""
    mask = segment_mask(segmentation, segment_id, reference_volume)
    labels, count = label_components(mask, CONNECTIVITY)
    if not 1 <= lesion_id <= count:
        raise InputError(segmentation.GetName(), f"has no lesion {lesion_id} (it has {count})")
    island = labels == lesion_id
    write_segment_mask(segmentation, segment_id, mask & ~island, reference_volume)
    return int(np.count_nonzero(island))

