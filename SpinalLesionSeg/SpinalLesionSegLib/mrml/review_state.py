"""Which lesions the reader accepted or rejected, stored on the segmentation node so that it lasts.

The state is a JSON attribute of the segmentation node (:data:`REVIEW_ATTRIBUTE`): node attributes are written
into the scene file, so the review survives a scene save and reload (``.mrml`` or ``.mrb``) and travels with the
segmentation. Lesion IDs are renumbered whenever the segment changes, so a lesion is identified by its centroid
(RAS, rounded to :data:`KEY_PRECISION_MM`): accepting lesion 3, then rejecting lesion 1, keeps the right lesion
accepted. The review table (a table node referenced from the segmentation, :data:`TABLE_REFERENCE_ROLE`) is a view
rebuilt from the segment and this state.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import slicer

REVIEW_ATTRIBUTE = "SpinalLesionSeg.Review"
TABLE_REFERENCE_ROLE = "SpinalLesionSeg.ReviewTable"
#: Centroids are compared at 0.1 mm: finer than any voxel, coarser than float noise between recomputations.
KEY_PRECISION_MM = 0.1

LesionKey = tuple[float, float, float]


def lesion_key(centroid_ras: Sequence[float]) -> LesionKey:
    """A lesion's identity across renumbering: its centroid in RAS mm, rounded to 0.1 mm."""
    return tuple(round(float(v) / KEY_PRECISION_MM) * KEY_PRECISION_MM for v in centroid_ras)  # type: ignore[return-value]


@dataclass
class ReviewState:
    """accepted: keys of lesions the reader confirmed; rejected: what was removed, added: candidates added from the
    soft map (centroid RAS mm, volume mm3; peak probability for added ones)."""

    accepted: set[LesionKey] = field(default_factory=set)
    rejected: list[dict[str, object]] = field(default_factory=list)
    added: list[dict[str, object]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"accepted": sorted(list(key) for key in self.accepted), "rejected": self.rejected,
                           "added": self.added})

    @classmethod
    def from_json(cls, text: str | None) -> ReviewState:
        """The state from its attribute text; an absent or unreadable attribute is an empty review."""
        try:
            data = json.loads(text) if text else {}
            accepted = {lesion_key(key) for key in data.get("accepted", [])}
            rejected = [dict(entry) for entry in data.get("rejected", [])]
            added = [dict(entry) for entry in data.get("added", [])]
        except (ValueError, TypeError, AttributeError):
            return cls()
        return cls(accepted, rejected, added)


def read_review_state(segmentation: slicer.vtkMRMLSegmentationNode) -> ReviewState:
    return ReviewState.from_json(segmentation.GetAttribute(REVIEW_ATTRIBUTE))


def write_review_state(segmentation: slicer.vtkMRMLSegmentationNode, state: ReviewState) -> None:
    segmentation.SetAttribute(REVIEW_ATTRIBUTE, state.to_json())


def clear_review_state(segmentation: slicer.vtkMRMLSegmentationNode) -> None:
    """A fresh result: nothing reviewed yet."""
    write_review_state(segmentation, ReviewState())


def row_key(table: slicer.vtkMRMLTableNode, row: int) -> LesionKey:
    """The key of the lesion in ``row`` of a review table (from its centroid columns)."""
    return lesion_key([float(table.GetCellText(row, table.GetColumnIndex(f"centroid_{axis}_mm"))) for axis in "ras"])


def mark_accepted(table: slicer.vtkMRMLTableNode, state: ReviewState) -> None:
    """Set ``flag`` to "accepted" on the rows of accepted lesions (other flags, such as "check", stay)."""
    flag = table.GetColumnIndex("flag")
    for row in range(table.GetNumberOfRows()):
        if row_key(table, row) in state.accepted:
            table.SetCellText(row, flag, "accepted")
