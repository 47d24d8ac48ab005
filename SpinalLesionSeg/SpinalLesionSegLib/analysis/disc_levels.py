"""Levels from sparse input: a few disc points and the cord mask give a labelled cord, as SCT labels one.

The output follows SCT's labelled-cord convention (``sct_label_vertebrae``): every cord voxel holds its vertebral
level code (:mod:`.levels`: C1 = 1 ... C7 = 7, T1 = 8 ..., 0 = unassigned). Disc points are SCT disc numbers
(disc n = the disc just above level n: 3 = C2/C3, so C3 lies between discs 3 and 4), from markups, SCT disc labels
or TotalSpineSeg discs (:mod:`.level_sources`). The rule (``docs/conventions.md``, "Levels from disc points along
the cord"):

1. The cord's centreline is its centroid on each axial slice, its direction there the least-squares line through
   the centroids within +-10 mm (:data:`.lesion_measures.TANGENT_WINDOW_MM`, as for lesion lengths).
2. Every cord voxel and every disc point gets a position ``s`` (mm, growing superior) along the centreline: the
   arc length of its slice's centroid plus its offset from that centroid along the cord's direction. Each voxel is
   thus measured on the plane through it perpendicular to the cord, as SCT's straightening does, not on the image
   slice; a disc point clicked a few mm beside the cord (or on the posterior tip of the disc, SCT's convention)
   keeps its position along the cord.
3. Between given discs, :func:`.levels.levels_between_discs`: level n is ``s(disc n+1) < s <= s(disc n)``, a gap
   between non-consecutive discs split evenly.
4. Beyond the outer discs, one level is extrapolated: the cord within one mean level length (the span of the
   given discs / the levels it holds) above the first disc n gets level n-1, below the last disc m level m; cord
   farther out stays unassigned. SCT's own ``-discfile`` labelling extends the outer levels without limit (the whole
   cord below the last disc is its level), which mislabels every level beyond; stopping at once would leave the
   levels a user brackets with a single disc (C2 above C2/C3, where no C1/C2 disc is clicked) unassigned.

Voxels off the cord (a lesion beside it) are measured the same way and take the level at their position, as the
image-axis rule does without a cord. :func:`.levels.assign_levels` uses this rule for disc sources whenever a cord
is given, so ``stats``, the report, ``compare`` and the panel share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..geometry import ijk_to_ras_matrix, ras_to_voxel, superior_axis
from ..image_io import array_to_image, image_to_array, resample_to_grid
from .lesion_measures import TANGENT_WINDOW_MM, local_slope
from .levels import UNASSIGNED, LevelSource, canonical_level, check_disc_order, levels_between_discs

#: Levels extrapolated beyond each outer disc (each one mean level length long).
EXTRAPOLATED_LEVELS = 1


@dataclass(frozen=True)
class CordAxis:
    """The cord's centreline on a grid, to measure positions along it. Coordinates are "grid mm": the ``[k, j, i]``
    index times the spacing (an isometric copy of RAS on the orthonormal grids :mod:`..validation` accepts).

    ``slices``: slice numbers (along ``axis``, the axial-slice axis) holding cord, ascending; ``centres`` (S, 3):
    the cord's centroid on each; ``tangents`` (S, 3): unit direction of the cord there (towards growing slice
    numbers); ``arc_mm`` (S,): arc length from the first centre; ``sign``: +1 when slice numbers grow superior.
    """

    axis: int
    sign: float
    spacing: np.ndarray
    slices: np.ndarray
    centres: np.ndarray
    tangents: np.ndarray
    arc_mm: np.ndarray

    def position(self, points_mm: np.ndarray) -> np.ndarray:
        """Position (mm, growing superior) along the cord of points (N, 3) in grid mm: the arc length of the nearest
        cord slice's centre plus the point's offset from it along the cord's direction (linear beyond the cord)."""
        along = self.slices * self.spacing[self.axis]
        z = np.asarray(points_mm, dtype=float)[:, self.axis]
        above = np.searchsorted(along, z)  # along[above - 1] < z <= along[above]
        lower, upper = np.clip(above - 1, 0, along.size - 1), np.clip(above, 0, along.size - 1)
        nearest = np.where(np.abs(z - along[lower]) <= np.abs(z - along[upper]), lower, upper)
        offset = np.einsum("nd,nd->n", points_mm - self.centres[nearest], self.tangents[nearest])
        return self.sign * (self.arc_mm[nearest] + offset)


def cord_axis(cord: np.ndarray, reference: sitk.Image) -> CordAxis:
    """The :class:`CordAxis` of a non-empty boolean ``[k, j, i]`` cord mask on ``reference``'s grid.

    Directions come from :func:`.lesion_measures.local_slope` over :data:`.lesion_measures.TANGENT_WINDOW_MM`:
    slice-to-slice jitter of the centroids (0.3 mm on 1 mm slices) would tilt the planes by ~15 degrees.
    """
    axis, up = superior_axis(reference)
    spacing = np.asarray(reference.GetSpacing()[::-1], dtype=float)
    step = ijk_to_ras_matrix(reference)[:3, 2 - axis]  # RAS step of one slice
    kji = np.argwhere(cord)
    slices, inverse, counts = np.unique(kji[:, axis], return_inverse=True, return_counts=True)
    centres = np.stack([np.bincount(inverse, weights=kji[:, d]) / counts for d in range(3)], axis=1) * spacing
    along = centres[:, axis]
    direction = np.ones_like(centres)
    for d in range(3):
        if d != axis:
            direction[:, d] = local_slope(along, centres[:, d], TANGENT_WINDOW_MM)
    length = np.linalg.norm(direction, axis=1)  # mm of cord per mm across the slices (the secant)
    arc = np.concatenate([[0.0], np.cumsum(np.diff(along) * (length[1:] + length[:-1]) / 2)])
    return CordAxis(axis=axis, sign=float(np.sign(step @ up)), spacing=spacing, slices=slices, centres=centres,
                    tangents=direction / length[:, None], arc_mm=arc)


def levels_along_cord(discs: dict[int, np.ndarray], cord: np.ndarray, reference: sitk.Image,
                      flat_index: np.ndarray, path: Path | None = None) -> np.ndarray:
    """Level codes (int16, 0 = unassigned) of voxels ``flat_index`` (into the ``[k, j, i]`` array of
    ``reference``) from disc points (SCT disc number -> RAS mm, at least two) and a non-empty boolean cord mask on
    the same grid, by the rule of the module docstring. Voxels off the cord (a lesion beside it) are measured the
    same way, so they take the level at their position along the cord. InputError (naming ``path``) when the
    discs are not superior to inferior along the cord."""
    axis = cord_axis(cord, reference)
    numbers = np.array(sorted(discs), dtype=np.int64)
    grid = ras_to_voxel(ijk_to_ras_matrix(reference), np.array([discs[n] for n in numbers]))[:, ::-1]
    disc_s = axis.position(grid * axis.spacing)
    check_disc_order(numbers, disc_s, path, "along the cord")
    kji = np.stack(np.unravel_index(np.asarray(flat_index, dtype=np.int64), cord.shape), axis=1)
    voxel_s = axis.position(kji * axis.spacing)
    return extrapolate_outer_levels(numbers, disc_s, voxel_s, levels_between_discs(numbers, disc_s, voxel_s))


def label_cord(discs: dict[int, np.ndarray], cord: np.ndarray, reference: sitk.Image,
               path: Path | None = None) -> np.ndarray:
    """The labelled cord (int16 ``[k, j, i]``: level codes on the cord, 0 = unassigned and outside it), SCT's
    ``*_labeled`` convention, from disc points (SCT number -> RAS mm) and a boolean cord mask on ``reference``'s
    grid (:func:`levels_along_cord` on every cord voxel)."""
    labelled = np.zeros(cord.shape, dtype=np.int16)
    index = np.flatnonzero(cord)
    if index.size:
        labelled.reshape(-1)[index] = levels_along_cord(discs, cord, reference, index, path)
    return labelled


def extrapolate_outer_levels(numbers: np.ndarray, disc_s: np.ndarray, voxel_s: np.ndarray,
                             codes: np.ndarray) -> np.ndarray:
    """``codes`` with :data:`EXTRAPOLATED_LEVELS` levels added beyond the outer discs, each one mean level length
    (mm: the span of the discs / the levels between them) long: above disc n (the first) levels n-1, n-2, ...,
    at or below disc m (the last) levels m, m+1, ...; never above C1. Boundaries as between discs: a position
    level with a disc belongs to the level below it."""
    mean = (disc_s[0] - disc_s[-1]) / (numbers[-1] - numbers[0])
    out = codes.copy()
    above = np.ceil((voxel_s - disc_s[0]) / mean).astype(np.int64)  # 1 = first level above the first disc
    below = np.floor((disc_s[-1] - voxel_s) / mean).astype(np.int64)  # 0 = first level below the last disc
    lut = np.array([UNASSIGNED] + [canonical_level(c) for c in range(1, 31)], dtype=np.int16)
    up = (voxel_s > disc_s[0]) & (above <= EXTRAPOLATED_LEVELS) & (numbers[0] - above >= 1)
    out[up] = lut[numbers[0] - above[up]]
    down = (voxel_s <= disc_s[-1]) & (below < EXTRAPOLATED_LEVELS) & (numbers[-1] + below <= 30)
    out[down] = lut[numbers[-1] + below[down]]
    return out


def labelled_cord_image(source: LevelSource, cord: sitk.Image) -> sitk.Image:
    """The labelled cord of a disc-point source on the cord mask's grid (an SCT-style ``*_labeled`` image, to
    save or show); a region source's own labels limited to the cord, for a like-for-like view."""
    mask = image_to_array(cord) > 0
    if source.regions is not None:
        regions = image_to_array(resample_to_grid(source.regions, cord, source.path, "the cord mask", allow=True))
        return array_to_image(np.where(mask, regions, UNASSIGNED).astype(np.int16), cord)
    return array_to_image(label_cord(source.discs, mask, cord, source.path), cord)
