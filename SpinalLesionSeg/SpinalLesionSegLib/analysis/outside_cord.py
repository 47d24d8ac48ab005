"""Lesions outside the cord: the one rule, shared by ``predict`` (sidecar, ``--drop-outside-cord``), ``stats``
(lesions.csv, summary.json) and the Slicer panel (review table, the "Drop lesions outside the cord" option).

MS lesions of the spinal cord lie in the cord. Models still predict blobs in the CSF, the vertebrae or the soft
tissue around it (the top complaint with the published models), and such a blob inflates the lesion count and
volume. The rule, in words: a lesion (a connected component of the mask, :data:`..defaults.CONNECTIVITY`) is
**outside the cord** when none of its voxels lies within ``margin_mm`` of a cord voxel, i.e. when it does not touch
the cord dilated by ``margin_mm`` (:data:`..defaults.OUTSIDE_CORD_MARGIN_MM`, 3 mm; why: see there). Distances are
Euclidean, in mm, between voxel centres, from a distance transform with the grid's own spacing, so a margin means
the same on 0.5 x 0.5 x 3 mm voxels as on 1 mm ones (a voxel dilation would be six times wider across slices).

An empty cord is no cord: nothing is judged (a model that found no cord would otherwise flag, or drop, everything).
Outside lesions are flagged by default and dropped only on request; dropping also zeroes their region of the soft
map (:func:`drop_outside_cord`), so that the mask stays exactly ``soft >= threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..defaults import CONNECTIVITY, OUTSIDE_CORD_MARGIN_MM, THRESHOLD_RANGE
from .lesions import LesionAnalysis, label_components

#: The rule as the sidecar and summary.json state it.
RULE = ("a lesion (connected component) is outside the cord when none of its voxels lies within margin_mm of a cord "
        "voxel (Euclidean distance in mm between voxel centres)")
#: Soft-map values at or above this are part of a dropped lesion's region (zeroed with it): the lowest threshold
#: the panel's slider offers, so no threshold brings a dropped lesion back, as a lesion or as a candidate.
DROP_REGION_PROBABILITY = THRESHOLD_RANGE[0]


@dataclass(frozen=True)
class OutsideLesion:
    """A lesion outside the cord: its number in the mask (the statistics' numbering), size, its distance to the
    cord (mm, from its nearest voxel to the nearest cord voxel) and its centroid (voxel indices k, j, i)."""

    id: int
    voxel_count: int
    volume_mm3: float
    distance_mm: float
    centroid_kji: tuple[float, float, float]


@dataclass(frozen=True)
class OutsideCord:
    """The rule applied to one mask: every lesion's distance to the cord (``distances_mm[n]`` for lesion n, index 0
    unused), the margin, the lesions outside, and the lesion labels (``[k, j, i]``, 0 = background)."""

    distances_mm: np.ndarray
    margin_mm: float
    lesions: list[OutsideLesion]
    labels: np.ndarray

    @property
    def ids(self) -> list[int]:
        return [lesion.id for lesion in self.lesions]

    @property
    def volume_mm3(self) -> float:
        return float(sum(lesion.volume_mm3 for lesion in self.lesions))

    def is_outside(self, lesion_id: int) -> bool:
        return lesion_id in self.ids

    def records(self) -> list[dict[str, float | int]]:
        """The outside lesions as JSON records (sidecar and summary.json): id, volume (mm3), distance (mm)."""
        return [{"id": o.id, "volume_mm3": o.volume_mm3, "distance_to_cord_mm": round(o.distance_mm, 3)}
                for o in self.lesions]


def outside_cord_lesions(mask: np.ndarray, cord: np.ndarray | None, spacing_kji: tuple[float, ...],
                         margin_mm: float = OUTSIDE_CORD_MARGIN_MM, *, connectivity: int = CONNECTIVITY,
                         labels: tuple[np.ndarray, int] | None = None) -> OutsideCord | None:
    """The lesions of ``mask`` (boolean ``[k, j, i]``) that do not touch ``cord`` (boolean, same grid) dilated by
    ``margin_mm`` (mm; voxel size ``spacing_kji`` in mm, in array order); None when there is no cord (None or
    empty). ``labels`` = (label image, count) reuses components already numbered (a :class:`.lesions
    .LesionAnalysis`'s), so the ids are those of lesions.csv; else ``mask`` is labelled with ``connectivity``."""
    if cord is None or not np.any(cord):
        return None
    cord = np.asarray(cord, dtype=bool)  # ~ on a uint8 mask would not be its complement
    if margin_mm < 0 or not np.isfinite(margin_mm):
        raise ValueError(f"the outside-cord margin must be a number >= 0 (mm), got {margin_mm}")
    lesion_labels, count = labels if labels is not None else label_components(np.asarray(mask, bool), connectivity)
    distances = lesion_cord_distances(lesion_labels, count, cord, spacing_kji)
    voxel_volume = float(np.prod(spacing_kji))
    flat = lesion_labels.reshape(-1)
    index = np.flatnonzero(flat)
    ids = flat[index].astype(np.int64)
    counts = np.bincount(ids, minlength=count + 1)
    kji = np.stack(np.unravel_index(index, lesion_labels.shape), axis=1).astype(np.float64)
    sums = np.stack([np.bincount(ids, weights=kji[:, axis], minlength=count + 1) for axis in range(3)], axis=1)
    outside = [OutsideLesion(id=n, voxel_count=int(counts[n]), volume_mm3=float(counts[n] * voxel_volume),
                             distance_mm=float(distances[n]),
                             centroid_kji=tuple(float(v) for v in sums[n] / counts[n]))  # type: ignore[arg-type]
               for n in range(1, count + 1) if distances[n] > margin_mm + 1e-9]
    return OutsideCord(distances_mm=distances, margin_mm=float(margin_mm), lesions=outside, labels=lesion_labels)


def with_outside_cord(analysis: LesionAnalysis, cord: np.ndarray | None, spacing_kji: tuple[float, ...],
                      margin_mm: float = OUTSIDE_CORD_MARGIN_MM) -> LesionAnalysis:
    """``analysis`` with its lesions judged by the rule (``outside_cord``; None without a cord), numbered as its
    lesions: what lesions.csv, summary.json and the review table show. ``cord``: the cord alone (not the cord plus
    the lesions, which every lesion would touch)."""
    found = outside_cord_lesions(analysis.labels != 0, cord, spacing_kji, margin_mm,
                                 labels=(analysis.labels, len(analysis.lesions)))
    return replace(analysis, outside_cord=found)


def lesion_cord_distances(labels: np.ndarray, count: int, cord: np.ndarray, spacing_kji: tuple[float, ...]
                          ) -> np.ndarray:
    """Each lesion's distance to the cord (mm): the smallest distance from one of its voxels to a cord voxel, 0 when
    they share a voxel. Index n = lesion n (index 0 is NaN). The distance transform runs on the bounding box of the
    cord and the lesions together, which holds every lesion voxel and every cord voxel, so it is exact there and
    costs a crop rather than the whole scan."""
    from scipy import ndimage

    distances = np.full(count + 1, np.nan)
    if count == 0:
        return distances
    box = _bounding_box(cord | (labels != 0))
    field = ndimage.distance_transform_edt(~cord[box], sampling=spacing_kji)
    crop = labels[box]
    inside = crop != 0
    per_lesion = np.full(count + 1, np.inf)
    np.minimum.at(per_lesion, crop[inside].astype(np.int64), field[inside])
    distances[1:] = per_lesion[1:]
    return distances


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """The smallest box (slices) holding every True voxel of a non-empty mask."""
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def drop_outside_cord(mask: np.ndarray, soft: np.ndarray, found: OutsideCord, cord: np.ndarray,
                      spacing_kji: tuple[float, ...], *, connectivity: int = CONNECTIVITY
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``mask`` without the outside lesions, and ``soft`` (probabilities, same grid) zeroed over their region:
    each dropped lesion plus the connected part of the soft map at or above :data:`DROP_REGION_PROBABILITY` around
    it that lies outside the dilated cord and in no kept lesion. So a mask that was ``soft >= threshold`` still is
    (for any threshold at or above that probability), and no lower threshold or candidate brings the lesion back.
    Returns new arrays; the inputs are not changed. Only the box around the soft map's voxels at or above that
    probability is searched (the region lies in it), which keeps a 512 x 512 x 200 scan to seconds."""
    dropped = np.isin(found.labels, found.ids)
    new_soft = np.array(soft, copy=True)
    if not dropped.any():
        return np.asarray(mask, bool), new_soft
    box = _bounding_box((soft >= DROP_REGION_PROBABILITY) | dropped)
    kept = (found.labels[box] != 0) & ~dropped[box]
    near_cord = _within(np.asarray(cord, dtype=bool), box, spacing_kji, found.margin_mm)
    candidates = (soft[box] >= DROP_REGION_PROBABILITY) & ~near_cord & ~kept | dropped[box]
    halo, _ = label_components(candidates, connectivity)
    region = np.isin(halo, np.unique(halo[dropped[box]])) & (halo != 0)
    new_soft[box][region] = 0
    return np.asarray(mask, bool) & ~dropped, new_soft


def _within(cord: np.ndarray, box: tuple[slice, ...], spacing_kji: tuple[float, ...], margin_mm: float
            ) -> np.ndarray:
    """The voxels of ``box`` within ``margin_mm`` of the cord (the dilated cord: the rule's distance, in mm). Only
    cord voxels within the margin of the box can be that near, so the distance transform runs on the box grown by
    the margin, not on the whole scan."""
    from scipy import ndimage

    grow = [int(np.ceil(margin_mm / step)) + 1 for step in spacing_kji]
    wide = tuple(slice(max(b.start - g, 0), min(b.stop + g, n)) for b, g, n in zip(box, grow, cord.shape))
    if not cord[wide].any():
        return np.zeros([b.stop - b.start for b in box], bool)
    near = ndimage.distance_transform_edt(~cord[wide], sampling=spacing_kji) <= margin_mm + 1e-9
    return near[tuple(slice(b.start - w.start, b.stop - w.start) for b, w in zip(box, wide))]
