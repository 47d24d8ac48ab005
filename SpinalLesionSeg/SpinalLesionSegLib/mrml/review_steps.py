"""The review steps of the panel: live threshold, the lesion table, reject, accept, candidates from the soft map,
and undo. A mixin of :class:`.panel.PanelLogic` (which provides ``scene``, ``level_source`` and the undo list);
``p`` is the panel's parameters (see :mod:`.panel`).

Every step that changes the lesion segment or the review state saves one undo step first: the lesion segment
bit-packed (about 1/8 byte per voxel) and the review state, at most :data:`UNDO_DEPTH` steps per panel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import slicer

from ..analysis.candidates import Candidates
from . import review
from .results import (
    add_thresholded_segment,
    lesion_segment_id,
    rethreshold_lesion_segment,
    segment_mask,
    segment_was_edited,
    write_segment_mask,
)
from .review_state import (
    TABLE_REFERENCE_ROLE,
    ReviewState,
    lesion_key,
    mark_accepted,
    read_review_state,
    write_review_state,
)

#: Review steps that can be undone.
UNDO_DEPTH = 10
CANDIDATE_TABLE_ROLE = "SpinalLesionSeg.CandidateTable"
THRESHOLD_ATTRIBUTE = "SpinalLesionSeg.Threshold"
Parameters = Any  # the module's parameter node, or any object with its attributes (see .panel)


class ReviewSteps:
    """Threshold, review, candidates and undo on the panel's segmentation (a mixin of PanelLogic)."""

    scene: slicer.vtkMRMLScene
    _undo: list[tuple[str, np.ndarray, tuple[int, ...], str]]

    def lesion_segment_edited(self, p: Parameters) -> bool:
        return segment_was_edited(p.segmentation, lesion_segment_id(p.segmentation))

    @staticmethod
    def applied_threshold(p: Parameters) -> float | None:
        """The threshold the lesion segment was last made with, kept on the segmentation node (so a parameter node
        restored with a scene does not re-threshold, nor ask about edits, for nothing)."""
        value = p.segmentation.GetAttribute(THRESHOLD_ATTRIBUTE) if p.segmentation is not None else None
        return float(value) if value else None

    def preview_threshold(self, p: Parameters, threshold: float) -> None:
        """While the slider is dragged: show only the soft-map voxels >= ``threshold`` (display only, instant;
        nothing is committed and no undo step is used until :meth:`apply_threshold` at release). Back at the
        committed value the preview ends: the slider may emit nothing more when a drag returns to its start."""
        display = p.softMap.GetDisplayNode()
        display.SetThreshold(threshold, 1.0)
        display.SetApplyThreshold(int(threshold != self.applied_threshold(p)))

    def apply_threshold(self, p: Parameters, threshold: float, overwrite: bool = True) -> None:
        """Re-binarise from the soft map (no model run), ending any preview: in place (one undo step), or as a new
        segment beside edits."""
        p.softMap.GetDisplayNode().SetApplyThreshold(0)
        if overwrite:
            self._save_undo(p)
            rethreshold_lesion_segment(p.segmentation, lesion_segment_id(p.segmentation), p.softMap, threshold,
                                       p.inputVolume)
            p.segmentation.SetAttribute(THRESHOLD_ATTRIBUTE, repr(float(threshold)))
        else:
            add_thresholded_segment(p.segmentation, p.softMap, threshold, p.inputVolume)

    def review_table(self, p: Parameters) -> slicer.vtkMRMLTableNode:
        """The lesion table (id, volume, mean probability, vertebral level when a levels source is set, flag,
        centroid), refreshed in place and referenced from the segmentation; accepted lesions are flagged so."""
        existing = p.segmentation.GetNodeReference(TABLE_REFERENCE_ROLE)
        table = review.lesion_review_table(self.scene, p.segmentation, lesion_segment_id(p.segmentation), p.softMap,
                                           p.inputVolume, levels=self.level_source(p), table=existing)
        table.SetName(f"{p.inputVolume.GetName()} lesion review")
        table.SetUseColumnTitleAsColumnHeader(True)  # else the view's row 0 is the header: row i would be lesion i
        table.SetLocked(True)  # a view of the segment: edits go through reject/accept
        p.segmentation.SetNodeReferenceID(TABLE_REFERENCE_ROLE, table.GetID())
        mark_accepted(table, read_review_state(p.segmentation))
        return table

    def lesion_position(self, p: Parameters, lesion: int) -> tuple[float, float, float]:
        """Centroid (RAS mm) of lesion ``lesion`` (as numbered in the review table), where the views jump."""
        return review.lesion_centroid_ras(p.segmentation, lesion_segment_id(p.segmentation), lesion, p.inputVolume)

    def reject_lesion(self, p: Parameters, lesion: int) -> None:
        """Remove the lesion from the segment (undoable) and record it as rejected on the segmentation."""
        centroid = self.lesion_position(p, lesion)
        self._save_undo(p)
        voxels = review.reject_lesion(p.segmentation, lesion_segment_id(p.segmentation), lesion, p.inputVolume)
        state = read_review_state(p.segmentation)
        state.accepted.discard(lesion_key(centroid))
        state.rejected.append({"centroid_ras_mm": list(lesion_key(centroid)), "volume_mm3": _volume_mm3(p, voxels)})
        write_review_state(p.segmentation, state)

    def accept_lesion(self, p: Parameters, lesion: int) -> None:
        """Mark a lesion as reviewed (undoable): its flag becomes "accepted", kept with the scene."""
        self._save_undo(p)
        state = read_review_state(p.segmentation)
        state.accepted.add(lesion_key(self.lesion_position(p, lesion)))
        write_review_state(p.segmentation, state)

    @staticmethod
    def position_in_table(table: slicer.vtkMRMLTableNode, row: int) -> tuple[float, float, float]:
        """The centroid (RAS mm) in ``row`` of a review or candidate table: where the views jump on a click."""
        return tuple(float(table.GetCellText(row, table.GetColumnIndex(f"centroid_{axis}_mm")))
                     for axis in "ras")  # type: ignore[return-value]

    def candidate_table(self, p: Parameters) -> slicer.vtkMRMLTableNode:
        """Blobs of the soft map at or above ``p.candidateThreshold`` that the lesion segment leaves out (id, volume,
        peak and mean probability, centroid), refreshed in place and referenced from the segmentation."""
        table = p.segmentation.GetNodeReference(CANDIDATE_TABLE_ROLE)
        if table is None:
            table = self.scene.AddNewNodeByClass("vtkMRMLTableNode", f"{p.inputVolume.GetName()} lesion candidates")
            p.segmentation.SetNodeReferenceID(CANDIDATE_TABLE_ROLE, table.GetID())
        review.candidate_table(table, self._candidates(p))
        table.SetUseColumnTitleAsColumnHeader(True)
        table.SetLocked(True)
        return table

    def _candidates(self, p: Parameters) -> Candidates:
        return review.find_segment_candidates(p.segmentation, lesion_segment_id(p.segmentation), p.softMap,
                                              p.inputVolume, float(p.candidateThreshold))

    def add_candidate(self, p: Parameters, candidate: int) -> None:
        """Add a candidate (as numbered in the candidate table) to the lesion segment: one undo step, recorded on
        the segmentation with its peak probability."""
        candidates = self._candidates(p)
        self._save_undo(p)
        voxels = review.add_candidate(p.segmentation, lesion_segment_id(p.segmentation), candidates, candidate,
                               p.inputVolume)
        found = candidates.items[candidate - 1]
        state = read_review_state(p.segmentation)
        state.added.append({"centroid_ras_mm": list(lesion_key(found.centroid_ras)),
                            "volume_mm3": _volume_mm3(p, voxels),
                            "peak_probability": round(found.peak_probability, 4)})
        write_review_state(p.segmentation, state)

    def _save_undo(self, p: Parameters) -> None:
        mask = segment_mask(p.segmentation, lesion_segment_id(p.segmentation), p.inputVolume)
        snapshot = (p.segmentation.GetID(), np.packbits(mask), mask.shape, read_review_state(p.segmentation).to_json())
        self._undo = [*self._undo, snapshot][-UNDO_DEPTH:]

    def can_undo(self, p: Parameters) -> bool:
        return bool(self._undo) and self._undo[-1][0] == p.segmentation.GetID()

    def undo(self, p: Parameters) -> bool:
        """Bring back the lesion segment and the review state from before the last threshold, reject, accept or
        added candidate;
        False when there is nothing to undo for this segmentation."""
        if not self.can_undo(p):
            return False
        _, packed, shape, state = self._undo.pop()
        mask = np.unpackbits(packed, count=int(np.prod(shape))).reshape(shape).astype(bool)
        write_segment_mask(p.segmentation, lesion_segment_id(p.segmentation), mask, p.inputVolume)
        write_review_state(p.segmentation, ReviewState.from_json(state))
        return True


def _volume_mm3(p: Parameters, voxels: int) -> float:
    """The volume (mm3, to 0.001) of ``voxels`` voxels of the input volume."""
    return round(voxels * float(np.prod(p.inputVolume.GetSpacing())), 3)
