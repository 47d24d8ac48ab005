"""Lesions as connected components, with exact per-lesion and per-level volumes.

Everything is computed from voxel counts on the lesion mask's own grid: ``volume_mm3 = voxels x voxel volume``,
so per-level volumes plus ``unassigned`` add up to the total exactly, and an empty mask gives zeros. Only lesion
voxels are ever gathered (a few thousand out of millions), which keeps a 512x512x200 mask under a second. The
slice-based measures (length along the cord, axial area and width, damage ratio) are :mod:`.lesion_measures`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from ..defaults import CONNECTIVITY, LEVEL_MAX_DISTANCE_MM
from ..errors import InputError
from ..geometry import ijk_to_ras_matrix, voxel_to_ras, voxel_volume_mm3
from .lesion_measures import (
    EXTENSIVE_MIN_LEVELS,
    LesionMeasures,
    cord_centreline,
    lesion_and_cord_levels,
    measure_lesions,
    slice_frame,
)
from .levels import MAX_LEVEL, UNASSIGNED, LevelSource

if TYPE_CHECKING:
    from .outside_cord import OutsideCord

#: Connectivities accepted: 6 (faces), 18 (faces + edges), 26 (faces + edges + corners).
CONNECTIVITIES = (6, 18, 26)


def label_components(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """Connected components of a boolean ``[k, j, i]`` array: (labels 0..N, N).

    Components are numbered in the order their first voxel appears in the array (C order, k slowest).
    """
    if connectivity not in CONNECTIVITIES:
        raise InputError(None, f"connectivity must be one of {CONNECTIVITIES}, got {connectivity}")
    import cc3d  # about 3x faster than scipy.ndimage.label here (docs/performance.md)

    labels, count = cc3d.connected_components(np.ascontiguousarray(mask), connectivity=connectivity,
                                              return_N=True)
    return labels, int(count)


def primary_levels(level_voxels: np.ndarray) -> np.ndarray:
    """The primary level code of each row of per-level voxel counts (column c = level code c, column 0 =
    unassigned): the level holding most voxels; ties go to the superior level (the lower code), and unassigned
    loses every tie. The one rule for ``stats``, the report and ``compare``."""
    counts = np.atleast_2d(level_voxels)
    ranked = np.concatenate([counts[:, 1:], counts[:, :1]], axis=1)
    return (np.argmax(ranked, axis=1) + 1) % counts.shape[1]


def dilate_mm(mask: np.ndarray, spacing_kji: tuple[float, ...], radius_mm: float) -> np.ndarray:
    """Voxels within ``radius_mm`` (Euclidean, physical) of ``mask``; the mask itself when the radius is 0."""
    if radius_mm <= 0 or not np.any(mask):
        return mask
    from scipy import ndimage

    return ndimage.distance_transform_edt(~mask, sampling=spacing_kji) <= radius_mm


@dataclass(frozen=True)
class Lesion:
    """One lesion (connected component). Volumes in mm3, positions in RAS mm, lengths in mm, areas in mm2.

    ``level_voxels[c]`` is the number of the lesion's voxels at level code ``c`` (column 0 = unassigned), so the
    per-level volumes of a lesion sum to its volume exactly. ``length_mm`` runs along the cord centreline when a
    cord was given, else it is ``si_extent_mm``; ``max_damage_ratio`` is None without a cord (or when no slice of
    the lesion holds cord). Definitions: :class:`.lesion_measures.LesionMeasures`.
    """

    id: int
    voxel_count: int
    volume_mm3: float
    soft_volume_mm3: float | None
    centroid_ras: tuple[float, float, float]
    si_extent_mm: float
    level_voxels: np.ndarray
    level_soft_mm3: np.ndarray | None
    primary_level: int
    outside_cord_voxels: int | None
    length_mm: float
    max_axial_area_mm2: float
    max_ap_width_mm: float
    max_damage_ratio: float | None

    @property
    def levels_touched(self) -> list[int]:
        """Level codes holding at least one voxel, anatomical order, unassigned (0) last."""
        touched = [int(c) for c in np.flatnonzero(self.level_voxels) if c != UNASSIGNED]
        return touched + ([UNASSIGNED] if self.level_voxels[UNASSIGNED] else [])

    @property
    def levels_spanned(self) -> int:
        """Number of vertebral levels holding at least one of the lesion's voxels (``unassigned`` not counted)."""
        return int(np.count_nonzero(self.level_voxels[UNASSIGNED + 1:]))

    @property
    def longitudinally_extensive(self) -> bool:
        """True when the lesion touches :data:`.lesion_measures.EXTENSIVE_MIN_LEVELS` (3) levels or more."""
        return self.levels_spanned >= EXTENSIVE_MIN_LEVELS


@dataclass(frozen=True)
class LesionAnalysis:
    """All lesions of a mask, the lesion label image (``[k, j, i]``, 0 = background) and what was left out.

    With a cord mask, ``cord_level_voxels[c]`` is the cord's voxel count at level code ``c`` and
    ``cord_lesion_level_voxels[c]`` the lesion voxels inside the cord at that level: lesion load per level is their
    ratio (all cord in column 0 without a level source). Both are None without a cord. ``outside_cord``: the
    lesions that do not touch the dilated cord (:mod:`.outside_cord`), when the caller judged them (a cord known).
    """

    lesions: list[Lesion]
    labels: np.ndarray
    voxel_volume_mm3: float
    connectivity: int
    has_soft: bool
    removed_small_count: int
    removed_small_voxels: int
    removed_outside_cord_voxels: int
    has_levels: bool = False
    cord_level_voxels: np.ndarray | None = None
    cord_lesion_level_voxels: np.ndarray | None = None
    outside_cord: OutsideCord | None = None

    @property
    def total_voxels(self) -> int:
        return sum(lesion.voxel_count for lesion in self.lesions)

    def level_voxels(self) -> np.ndarray:
        """Voxel count per level code over all lesions (length ``MAX_LEVEL + 1``, index 0 = unassigned)."""
        total = np.zeros(MAX_LEVEL + 1, dtype=np.int64)
        for lesion in self.lesions:
            total += lesion.level_voxels
        return total


def analyze_lesions(mask: np.ndarray, reference: sitk.Image, *, soft: np.ndarray | None = None,
                    levels: LevelSource | None = None, max_distance_mm: float = LEVEL_MAX_DISTANCE_MM,
                    cord: np.ndarray | None = None, restrict_to_cord: bool = False, cord_dilation_mm: float = 0.0,
                    connectivity: int = CONNECTIVITY, min_size_mm3: float = 0.0) -> LesionAnalysis:
    """Find the lesions of ``mask`` (boolean ``[k, j, i]`` on ``reference``'s grid) and measure each one.

    ``soft`` (probabilities 0..1, same grid) adds soft volumes: the sum of probability x voxel volume over a
    lesion's voxels. ``cord`` (boolean, same grid) is used for the disc-point centreline, for the lesions' length
    along the cord, damage ratio and lesion load per level, to report each lesion's voxels outside the cord, and,
    with ``restrict_to_cord``, to drop voxels farther than ``cord_dilation_mm`` from it (counted in
    ``removed_outside_cord_voxels``). Components smaller than ``min_size_mm3`` are removed and counted in
    ``removed_small_*``. Nothing else is ever dropped.
    """
    spacing_kji = reference.GetSpacing()[::-1]
    voxel_volume = voxel_volume_mm3(reference)
    mask = np.asarray(mask, dtype=bool)
    removed_outside = 0
    if restrict_to_cord and cord is not None:
        allowed = dilate_mm(cord, spacing_kji, cord_dilation_mm)
        removed_outside = int(np.count_nonzero(mask & ~allowed))
        mask = mask & allowed

    labels, count = label_components(mask, connectivity)
    index = np.flatnonzero(mask)  # same voxels as labels != 0, and several times faster on a boolean array
    ids, index, count, small = _drop_small(labels, index, count, voxel_volume, min_size_mm3)
    codes, cord_levels = lesion_and_cord_levels(levels, reference, index, cord, max_distance_mm)
    in_cord = None if cord is None else cord.reshape(-1)[index]
    lesions, in_cord_levels = _measure(ids, index, codes, count, labels.shape, reference, voxel_volume,
                                       soft=None if soft is None else soft.reshape(-1)[index].astype(np.float64),
                                       cord=cord, in_cord=in_cord)
    return LesionAnalysis(lesions=lesions, labels=labels, voxel_volume_mm3=voxel_volume, connectivity=connectivity,
                          has_soft=soft is not None, removed_small_count=small[0], removed_small_voxels=small[1],
                          removed_outside_cord_voxels=removed_outside, has_levels=levels is not None,
                          cord_level_voxels=cord_levels, cord_lesion_level_voxels=in_cord_levels)


def _drop_small(labels: np.ndarray, index: np.ndarray, count: int, voxel_volume: float, min_size_mm3: float
                ) -> tuple[np.ndarray, np.ndarray, int, tuple[int, int]]:
    """Remove components under ``min_size_mm3`` from ``labels`` (in place) and renumber the rest 1..N in order.

    Returns the lesion id of each kept voxel, the kept voxels' flat indices, N, and (components, voxels) removed.
    """
    flat = labels.reshape(-1)
    ids = flat[index].astype(np.int64)
    counts = np.bincount(ids, minlength=count + 1)
    small = np.flatnonzero(counts[1:] * voxel_volume < min_size_mm3) + 1
    removed = (int(small.size), int(counts[small].sum()))
    if small.size:
        renumber = np.zeros(count + 1, dtype=np.int64)
        kept = np.setdiff1d(np.arange(1, count + 1), small)
        renumber[kept] = np.arange(1, kept.size + 1)
        ids = renumber[ids]
        keep = ids > 0
        flat[index[~keep]] = 0
        index, ids = index[keep], ids[keep]
        flat[index] = ids
        count = int(kept.size)
    return ids, index, count, removed


def _measure(ids: np.ndarray, index: np.ndarray, codes: np.ndarray, count: int, shape: tuple[int, ...],
             reference: sitk.Image, voxel_volume: float, *, soft: np.ndarray | None, cord: np.ndarray | None,
             in_cord: np.ndarray | None) -> tuple[list[Lesion], np.ndarray | None]:
    """Per-lesion sums by ``bincount`` over the lesion voxels only (``ids`` = lesion id of each voxel), and the
    lesion voxels inside the cord per level code (None without a cord)."""
    columns = MAX_LEVEL + 1
    in_cord_levels = None if in_cord is None else np.bincount(codes[in_cord], minlength=columns)
    if count == 0:
        return [], in_cord_levels
    counts = np.bincount(ids, minlength=count + 1)
    kji = np.stack(np.unravel_index(index, shape), axis=1)
    ras = voxel_to_ras(ijk_to_ras_matrix(reference), kji[:, ::-1])
    centroids = np.stack([np.bincount(ids, weights=ras[:, d], minlength=count + 1) for d in range(3)], axis=1)
    centroids[1:] /= counts[1:, None]
    frame = slice_frame(reference)
    measures = measure_lesions(ids, kji, count, frame, None if cord is None else cord_centreline(cord, frame),
                               in_cord)

    pair = ids * columns + codes
    level_voxels = np.bincount(pair, minlength=(count + 1) * columns).reshape(count + 1, columns)
    level_soft = per_lesion_soft = None
    if soft is not None:
        level_soft = np.bincount(pair, weights=soft, minlength=(count + 1) * columns).reshape(count + 1, columns)
        level_soft *= voxel_volume
        per_lesion_soft = np.bincount(ids, weights=soft, minlength=count + 1) * voxel_volume
    outside = None if in_cord is None else np.bincount(ids, weights=~in_cord, minlength=count + 1)

    primary = primary_levels(level_voxels)
    return [
        Lesion(id=n, voxel_count=int(counts[n]), volume_mm3=float(counts[n] * voxel_volume),
               soft_volume_mm3=None if per_lesion_soft is None else float(per_lesion_soft[n]),
               centroid_ras=tuple(float(v) for v in centroids[n]), level_voxels=level_voxels[n],
               level_soft_mm3=None if level_soft is None else level_soft[n], primary_level=int(primary[n]),
               outside_cord_voxels=None if outside is None else int(outside[n]), **_measures_of(measures, n))
        for n in range(1, count + 1)
    ], in_cord_levels


def _measures_of(measures: LesionMeasures, n: int) -> dict[str, float | None]:
    """Lesion ``n``'s slice-based measures as :class:`Lesion` fields (NaN, undefined, becomes None)."""
    ratio = float(measures.max_damage_ratio[n])
    return {"si_extent_mm": float(measures.si_extent_mm[n]), "length_mm": float(measures.length_mm[n]),
            "max_axial_area_mm2": float(measures.max_area_mm2[n]),
            "max_ap_width_mm": float(measures.max_ap_width_mm[n]),
            "max_damage_ratio": None if np.isnan(ratio) else ratio}
