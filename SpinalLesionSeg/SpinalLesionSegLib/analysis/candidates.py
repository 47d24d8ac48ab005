"""Candidate lesions: what the soft map suggests that the mask leaves out.

The binary mask keeps voxels whose probability reaches the threshold (0.5 by default); lesions the model was unsure
of stay below it and are lost unless someone looks at the soft map. A candidate is a connected blob of the soft
map at or above a lower threshold (:data:`..defaults.CANDIDATE_THRESHOLD`) that touches no voxel of the mask:
the reader sees its peak and mean probability and can add it to the segment in one step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..defaults import CANDIDATE_THRESHOLD, CONNECTIVITY
from ..geometry import ijk_to_ras_matrix, voxel_to_ras, voxel_volume_mm3
from .lesions import label_components


@dataclass(frozen=True)
class Candidate:
    """One candidate: its number (1.., in voxel order), size (mm3), peak and mean probability, centroid (RAS mm)."""

    id: int
    voxel_count: int
    volume_mm3: float
    peak_probability: float
    mean_probability: float
    centroid_ras: tuple[float, float, float]


@dataclass(frozen=True)
class Candidates:
    """The candidates and their voxels: ``labels`` is a ``[k, j, i]`` array, candidate ``n`` where it equals n."""

    items: list[Candidate]
    labels: np.ndarray

    def mask(self, candidate_id: int) -> np.ndarray:
        return self.labels == candidate_id


def find_candidates(soft: np.ndarray, mask: np.ndarray, reference: sitk.Image, *,
                    threshold: float = CANDIDATE_THRESHOLD, connectivity: int = CONNECTIVITY) -> Candidates:
    """Blobs of ``soft >= threshold`` (probabilities, ``[k, j, i]`` on ``reference``'s grid) that share no voxel
    with ``mask``; blobs that do are the fuzzy rims of lesions already in the mask, not new lesions."""
    labels, count = label_components(soft >= threshold, connectivity)
    touching = np.unique(labels[mask & (labels > 0)])
    labels[np.isin(labels, touching)] = 0
    kept = np.unique(labels[labels > 0])
    renumbered = np.zeros(count + 1, labels.dtype)
    renumbered[kept] = np.arange(1, kept.size + 1)
    labels = renumbered[labels]
    return Candidates(_measure(soft, labels, kept.size, reference), labels)


def _measure(soft: np.ndarray, labels: np.ndarray, count: int, reference: sitk.Image) -> list[Candidate]:
    """Each candidate's size, probabilities and centroid, gathering only candidate voxels (sorted by label once)."""
    flat = np.flatnonzero(labels)
    ids = labels.ravel()[flat]
    order = np.argsort(ids, kind="stable")
    flat, ids = flat[order], ids[order]
    starts = np.searchsorted(ids, np.arange(1, count + 2))
    kji = np.column_stack(np.unravel_index(flat, labels.shape))
    values = soft.ravel()[flat]
    matrix, voxel_mm3 = ijk_to_ras_matrix(reference), voxel_volume_mm3(reference)
    items = []
    for number in range(1, count + 1):
        part = slice(starts[number - 1], starts[number])
        centroid = voxel_to_ras(matrix, kji[part, ::-1].mean(axis=0))[0]
        size = part.stop - part.start
        items.append(Candidate(number, int(size), size * voxel_mm3, float(values[part].max()),
                               float(values[part].mean()), tuple(float(v) for v in centroid)))  # type: ignore[arg-type]
    return items
