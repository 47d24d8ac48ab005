"""Per-lesion measures the field reports beside volume: length along the cord, largest axial area and
anterior-posterior width, maximum axial damage ratio (as ``sct_analyze_lesion`` defines them), vertebral levels
spanned, and the cord volume per level that lesion load is computed from.

Every measure is taken per axial slice (slices across the voxel axis closest to inferior-superior,
:func:`..geometry.superior_axis`) and combined per lesion. With a cord mask, lengths, areas and widths are
corrected for the angle between the cord and the slice normal, as SCT does, so a lesion measures about the same on
a tilted or oblique acquisition. The definitions, and the lines of SCT's source they follow, are in
``docs/conventions.md`` ("Per-lesion measures"). Only (lesion, slice) pairs are gathered, never a per-lesion copy
of the grid, so the cost is that of the lesion voxels plus one pass over the cord.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..geometry import ijk_to_ras_matrix, superior_axis
from .levels import MAX_LEVEL, UNASSIGNED, LevelSource, assign_levels

#: A lesion touching at least this many vertebral levels is flagged longitudinally extensive: lesions over three
#: or more segments point to NMOSD (or MOGAD) rather than MS, whose cord lesions rarely exceed two.
EXTENSIVE_MIN_LEVELS = 3

#: Length (mm) of cord over which the centreline's direction at a slice is fitted (a least-squares line through
#: the cord centroids of the slices within +-10 mm). It smooths the slice-to-slice jitter of the centroids, which
#: would otherwise lengthen every lesion (central differences of centroids jittering by 0.3 mm on 1 mm slices add
#: about 4 %), yet follows the cervical curvature (radius of 100 mm and more); SCT's default centreline smoothing
#: is comparable (``smooth=20``, tuned to match a 20 mm Hanning window: centerline/curve_fitting.py:37-40).
TANGENT_WINDOW_MM = 20.0


@dataclass(frozen=True)
class SliceFrame:
    """A grid seen as axial slices; axes are numpy axes of the ``[k, j, i]`` array, ``spacing`` (mm) in that
    order. ``ap_axis`` is the in-slice axis closest to anterior-posterior (SCT's width direction), ``lr_axis``
    the other one."""

    axis: int
    ap_axis: int
    lr_axis: int
    spacing: tuple[float, float, float]

    @property
    def thickness_mm(self) -> float:
        """Slice thickness (mm): the spacing across the slices."""
        return self.spacing[self.axis]

    @property
    def pixel_area_mm2(self) -> float:
        """Area (mm2) of one voxel's face within a slice."""
        return self.spacing[self.ap_axis] * self.spacing[self.lr_axis]


def slice_frame(reference: sitk.Image) -> SliceFrame:
    """The axial slicing of ``reference``'s grid (any storage orientation, oblique included)."""
    axis, _ = superior_axis(reference)
    columns = ijk_to_ras_matrix(reference)[:3, :3]  # column c: RAS step of voxel axis c (i, j, k)
    columns = columns / np.linalg.norm(columns, axis=0)
    in_plane = [a for a in range(3) if a != axis]
    ap_axis = max(in_plane, key=lambda a: abs(columns[1, 2 - a]))  # numpy axis a is voxel axis 2 - a
    lr_axis = next(a for a in in_plane if a != ap_axis)
    spacing = tuple(float(s) for s in reference.GetSpacing()[::-1])
    return SliceFrame(axis=axis, ap_axis=ap_axis, lr_axis=lr_axis, spacing=spacing)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Centreline:
    """The cord slice by slice (arrays indexed by slice number along :attr:`SliceFrame.axis`).

    ``secant`` = 1 / cos of the angle between the cord's direction and the slice normal (>= 1): a slice of
    thickness t holds ``t x secant`` mm of cord. ``sagittal_cos`` = cos of that angle projected on the plane of
    the slice normal and the anterior-posterior axis (SCT's sagittal angle). ``cord_voxels``: cord voxels per slice.
    """

    secant: np.ndarray
    sagittal_cos: np.ndarray
    cord_voxels: np.ndarray


def cord_centreline(cord: np.ndarray, frame: SliceFrame) -> Centreline | None:
    """The centreline of a boolean cord mask: the cord's centroid on each slice, its direction at each slice from
    :func:`local_slope` over :data:`TANGENT_WINDOW_MM`. Slices without cord take the direction interpolated between
    the nearest cord slices (the end slices' direction beyond the cord). None for an empty mask."""
    ordered = np.moveaxis(cord, (frame.axis, frame.ap_axis, frame.lr_axis), (0, 1, 2))  # a view: [slice, ap, lr]
    profiles = {frame.ap_axis: np.count_nonzero(ordered, axis=2), frame.lr_axis: np.count_nonzero(ordered, axis=1)}
    voxels = profiles[frame.ap_axis].sum(axis=1)
    present = np.flatnonzero(voxels)
    if present.size == 0:
        return None
    along = present * frame.thickness_mm
    everywhere = np.arange(voxels.size) * frame.thickness_mm
    slopes = []
    for axis, profile in profiles.items():  # voxel counts per (slice, position along the axis)
        centre = profile[present] @ np.arange(profile.shape[1]) / voxels[present]
        slope = local_slope(along, centre * frame.spacing[axis], TANGENT_WINDOW_MM)
        slopes.append(np.interp(everywhere, along, slope))
    ap, lr = slopes
    return Centreline(secant=np.sqrt(1.0 + ap**2 + lr**2), sagittal_cos=1.0 / np.sqrt(1.0 + ap**2),
                      cord_voxels=voxels)


def local_slope(along: np.ndarray, values: np.ndarray, window_mm: float) -> np.ndarray:
    """At each point of ``along`` (mm, strictly ascending), the slope (mm/mm) of the least-squares line through the
    points within ``window_mm / 2`` of it; 0 where the window holds a single point. Running sums make it linear in
    time."""
    low = np.searchsorted(along, along - window_mm / 2, side="left")
    high = np.searchsorted(along, along + window_mm / 2, side="right")
    x = along - along.mean()  # centred: the sums stay small, the slope is unchanged
    y = values - values.mean()

    def window_sum(terms: np.ndarray) -> np.ndarray:
        running = np.concatenate([[0.0], np.cumsum(terms)])
        return running[high] - running[low]

    n = (high - low).astype(float)
    sx, sy = window_sum(x), window_sum(y)
    fitted = n >= 2  # two distinct positions or more: a line (a lone point's spread is rounding noise)
    spread = np.where(fitted, n * window_sum(x * x) - sx * sx, 1.0)
    return np.where(fitted, (n * window_sum(x * y) - sx * sy) / spread, 0.0)


@dataclass(frozen=True)
class LesionMeasures:
    """Measures of lesions 1..N, arrays indexed by lesion id (entry 0 unused); NaN where a measure is undefined.

    ``si_extent_mm``: slices spanned x slice thickness. ``length_mm``: along the cord centreline (SCT's length)
    when a cord is known, else ``si_extent_mm``. ``max_area_mm2``: largest slice area x cos(cord angle) (mm2).
    ``max_ap_width_mm``: largest anterior-posterior extent in a slice x cos(sagittal angle) (mm).
    ``max_damage_ratio``: largest (lesion voxels in the cord / cord voxels) over the lesion's slices.
    """

    si_extent_mm: np.ndarray
    length_mm: np.ndarray
    max_area_mm2: np.ndarray
    max_ap_width_mm: np.ndarray
    max_damage_ratio: np.ndarray


def measure_lesions(ids: np.ndarray, kji: np.ndarray, count: int, frame: SliceFrame,
                    centreline: Centreline | None, in_cord: np.ndarray | None) -> LesionMeasures:
    """Measures of ``count`` >= 1 lesions from their voxels: ``ids`` (lesion id 1..count of each voxel), ``kji``
    (``(N, 3)`` voxel indices) and ``in_cord`` (whether each voxel lies in the cord; None without a cord)."""
    lesion, slices, voxels, ap_extent, cord_hits = _slice_pairs(ids, kji, frame, in_cord)
    first = np.searchsorted(lesion, np.arange(1, count + 1))

    def per_lesion(ufunc: np.ufunc, values: np.ndarray) -> np.ndarray:
        return np.concatenate([[np.nan], ufunc.reduceat(values, first).astype(float)])

    secant = np.ones(slices.size) if centreline is None else centreline.secant[slices]
    sagittal = np.ones(slices.size) if centreline is None else centreline.sagittal_cos[slices]
    ratio = np.full(slices.size, np.nan)
    if centreline is not None and cord_hits is not None:
        cord_voxels = centreline.cord_voxels[slices]
        ratio = np.divide(cord_hits, cord_voxels, out=ratio, where=cord_voxels > 0)
    span = per_lesion(np.maximum, slices) - per_lesion(np.minimum, slices) + 1
    return LesionMeasures(
        si_extent_mm=span * frame.thickness_mm,
        length_mm=per_lesion(np.add, frame.thickness_mm * secant),
        max_area_mm2=per_lesion(np.maximum, voxels * frame.pixel_area_mm2 / secant),
        max_ap_width_mm=per_lesion(np.maximum, ap_extent * frame.spacing[frame.ap_axis] * sagittal),
        max_damage_ratio=per_lesion(np.fmax, ratio))  # fmax: slices without cord (NaN) are skipped


def _slice_pairs(ids: np.ndarray, kji: np.ndarray, frame: SliceFrame, in_cord: np.ndarray | None
                 ) -> tuple[np.ndarray, ...]:
    """One entry per (lesion, slice) holding lesion voxels, sorted by lesion then slice: lesion id, slice,
    voxel count, anterior-posterior extent (voxels, end to end) and voxels inside the cord (None without cord)."""
    slices_per_grid = int(kji[:, frame.axis].max()) + 1
    pair = ids.astype(np.int64) * slices_per_grid + kji[:, frame.axis]
    order = np.argsort(pair, kind="stable")
    pair = pair[order]
    starts = np.flatnonzero(np.concatenate([[True], np.diff(pair) != 0]))
    ap = kji[order, frame.ap_axis]
    ap_extent = np.maximum.reduceat(ap, starts) - np.minimum.reduceat(ap, starts) + 1
    voxels = np.diff(np.append(starts, pair.size))
    cord_hits = None if in_cord is None else np.add.reduceat(in_cord[order].astype(np.int64), starts)
    return pair[starts] // slices_per_grid, pair[starts] % slices_per_grid, voxels, ap_extent, cord_hits


def lesion_and_cord_levels(levels: LevelSource | None, reference: sitk.Image, lesion_index: np.ndarray,
                           cord: np.ndarray | None, max_distance_mm: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Level codes of the lesion voxels ``lesion_index`` (flat indices into the ``[k, j, i]`` array) and the
    cord's voxel count per level code (length ``MAX_LEVEL + 1``, None without a cord): the denominators of the
    lesion load per level. Both come from one :func:`.levels.assign_levels` call, so a level image is resampled
    once. Without a level source every voxel is unassigned (code 0), and the cord's whole volume is in column 0."""
    if levels is None:
        cord_levels = None if cord is None else np.zeros(MAX_LEVEL + 1, dtype=np.int64)
        if cord_levels is not None:
            cord_levels[UNASSIGNED] = np.count_nonzero(cord)
        return np.zeros(lesion_index.size, dtype=np.int16), cord_levels
    cord_index = np.flatnonzero(cord) if cord is not None else np.zeros(0, dtype=np.int64)
    codes = assign_levels(levels, reference, np.concatenate([lesion_index, cord_index]), cord=cord,
                          max_distance_mm=max_distance_mm)
    lesion_codes, cord_codes = codes[:lesion_index.size], codes[lesion_index.size:]
    return lesion_codes, None if cord is None else np.bincount(cord_codes, minlength=MAX_LEVEL + 1)
