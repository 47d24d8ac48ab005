"""Vertebral levels: codes and names, a loaded level source, and the rules that give a lesion voxel a level.

Internally a level is an integer code in SCT's numbering (C1=1 ... C7=7, T1=8 ... T12=19, L1=20 ... L5=24), except
that the five sacral segments share one code, 25 = "S" (a lesion in the sacral canal cannot be told apart by
segment from the level sources, and the conus ends above it), and Co = 30. Code 0 means ``unassigned``. The rules
are stated in ``docs/conventions.md``; the numbers here are the single source for them. Reading the sources
(labelled cords, TotalSpineSeg outputs, disc points, markups) is :mod:`.level_sources`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..defaults import LEVEL_MAX_DISTANCE_MM
from ..errors import InputError
from ..geometry import ijk_to_ras_matrix, superior_axis, voxel_to_ras
from ..image_io import image_to_array, resample_to_grid

#: Code of voxels and lesions with no level.
UNASSIGNED = 0
UNASSIGNED_NAME = "unassigned"
SACRUM = 25
COCCYX = 30
#: Largest level code; arrays of per-level sums have ``MAX_LEVEL + 1`` columns (column 0 = unassigned).
MAX_LEVEL = COCCYX

#: Level code -> name, in anatomical order (superior first).
LEVEL_NAMES: dict[int, str] = {
    **{c: f"C{c}" for c in range(1, 8)},
    **{c: f"T{c - 7}" for c in range(8, 20)},
    **{c: f"L{c - 19}" for c in range(20, 25)},
    SACRUM: "S",
    COCCYX: "Co",
}


def canonical_level(code: int) -> int:
    """Map an SCT level code (1..30) to this package's code: the sacral segments 25..29 all become 25 ("S")."""
    return SACRUM if SACRUM <= code < COCCYX else code


def level_name(code: int) -> str:
    """Name of a level code (``3`` -> ``"C3"``, ``0`` -> ``"unassigned"``)."""
    return UNASSIGNED_NAME if code == UNASSIGNED else LEVEL_NAMES[canonical_level(code)]


@dataclass(frozen=True)
class LevelSource:
    """A loaded level source: either a region image of level codes or disc positions.

    ``regions`` is an image of level codes (0 = none) on its own grid; ``discs`` maps SCT disc numbers
    (n = the disc just above level n) to RAS positions in mm. Exactly one of the two is set.
    """

    kind: str
    path: Path
    regions: sitk.Image | None = None
    discs: dict[int, np.ndarray] = field(default_factory=dict)

    def covered_levels(self) -> set[int]:
        """Level codes the source can assign: labels present, or the levels between the first and last disc."""
        if self.regions is not None:
            values = np.unique(image_to_array(self.regions))
            return {int(v) for v in values if v != UNASSIGNED}
        numbers = sorted(self.discs)
        return {canonical_level(code) for code in range(numbers[0], numbers[-1])}


def assign_levels(source: LevelSource, reference: sitk.Image, flat_index: np.ndarray, *,
                  cord: np.ndarray | None = None,
                  max_distance_mm: float = LEVEL_MAX_DISTANCE_MM) -> np.ndarray:
    """Level code (int16, 0 = unassigned) of each voxel ``flat_index`` (into the ``[k, j, i]`` array of
    ``reference``, the lesion mask's grid).

    Region sources: a voxel inside the labelled region takes its label; otherwise the label of the nearest
    labelled voxel within ``max_distance_mm`` (Euclidean, in mm; the default 10 mm reaches from any point of an
    adult cord cross-section, about 8 x 12 mm, to its label); else unassigned.
    Disc sources: level n lies between disc n and disc n+1. With a ``cord`` (a boolean ``[k, j, i]`` array on the
    reference grid) positions are measured along its centreline, on planes perpendicular to the cord, and one
    level is extrapolated beyond each outer disc (:mod:`.disc_levels`: the cord voxels get exactly the labelled
    cord of :func:`.disc_levels.label_cord`). Without a cord: along the image axis closest to inferior-superior,
    nothing beyond the outer discs. Disc levels go by position only (``max_distance_mm`` does not apply).
    """
    flat_index = np.asarray(flat_index, dtype=np.int64)
    if flat_index.size == 0:
        return np.zeros(0, dtype=np.int16)
    if source.regions is not None:
        # Callers that take files refuse another grid unless asked (run_stats); a Slicer node on another grid is.
        aligned = resample_to_grid(source.regions, reference, source.path, "the lesion mask", allow=True)
        # A read-only view, not a copy: only lesion voxels are read, and a copy of a large grid costs ~100 ms.
        regions = sitk.GetArrayViewFromImage(aligned)
        return _assign_from_regions(regions, reference.GetSpacing()[::-1], flat_index, max_distance_mm)
    if cord is not None and np.any(cord):
        from .disc_levels import levels_along_cord  # built on this module's rules: imported here, not at the top

        return levels_along_cord(source.discs, cord, reference, flat_index, source.path)
    return _assign_from_discs(source.discs, reference, flat_index, source.path)


def _assign_from_regions(regions: np.ndarray, spacing_kji: tuple[float, ...], flat_index: np.ndarray,
                         max_distance_mm: float) -> np.ndarray:
    codes = regions.ravel()[flat_index].astype(np.int16)
    missing = np.flatnonzero(codes == UNASSIGNED)
    if missing.size == 0 or max_distance_mm <= 0:
        return codes
    from scipy import ndimage

    # Only voxels within max_distance_mm of a lesion voxel can be its nearest label: crop to that box (exact).
    kji = np.stack(np.unravel_index(flat_index[missing], regions.shape), axis=1)
    margin = np.ceil(max_distance_mm / np.asarray(spacing_kji)).astype(int)
    low = np.maximum(kji.min(axis=0) - margin, 0)
    high = np.minimum(kji.max(axis=0) + margin + 1, regions.shape)
    crop = regions[tuple(slice(a, b) for a, b in zip(low, high))]
    if not np.any(crop):
        return codes
    distance, nearest = ndimage.distance_transform_edt(crop == UNASSIGNED, sampling=spacing_kji,
                                                      return_indices=True)
    local = tuple((kji - low).T)
    near = distance[local] <= max_distance_mm
    nearest_label = crop[tuple(axis[local] for axis in nearest)]
    codes[missing[near]] = nearest_label[near]
    return codes


def _assign_from_discs(discs: dict[int, np.ndarray], reference: sitk.Image, flat_index: np.ndarray,
                       path: Path) -> np.ndarray:
    """Levels between discs measured along the image axis closest to inferior-superior (no cord known)."""
    matrix = ijk_to_ras_matrix(reference)
    shape = tuple(reversed(reference.GetSize()))
    kji = np.stack(np.unravel_index(flat_index, shape), axis=1)
    voxels_ras = voxel_to_ras(matrix, kji[:, ::-1])
    numbers = np.array(sorted(discs), dtype=np.int64)
    _, up = superior_axis(reference)
    disc_s = np.array([discs[n] for n in numbers]) @ up
    check_disc_order(numbers, disc_s, path, "along the image's inferior-superior axis")
    return levels_between_discs(numbers, disc_s, voxels_ras @ up)


def check_disc_order(numbers: np.ndarray, disc_s: np.ndarray, path: Path | None, measure: str) -> None:
    """InputError unless discs ``numbers`` (ascending) lie strictly superior to inferior at ``disc_s`` (mm, growing
    superior): a swapped or duplicated label would otherwise silently renumber every level between them."""
    if np.any(np.diff(disc_s) >= 0):
        order = ", ".join(f"{n}@{s:.1f}mm" for n, s in zip(numbers, disc_s))
        raise InputError(path, f"disc points are not in superior-to-inferior order {measure} ({order}); "
                               "disc n must lie above disc n+1")


def levels_between_discs(numbers: np.ndarray, disc_s: np.ndarray, voxel_s: np.ndarray) -> np.ndarray:
    """Level code of positions ``voxel_s`` (mm, growing superior) between discs ``numbers`` at ``disc_s``.

    ``numbers`` ascend and ``disc_s`` strictly descend. Level n is ``disc_s[n+1] < s <= disc_s[n]``: a position
    level with a disc belongs to the level below it. Between non-consecutive discs n and m the gap is split evenly
    into levels n..m-1. Positions above the first disc or at/below the last are unassigned.
    """
    ascending = disc_s[::-1]
    j = np.searchsorted(ascending, voxel_s, side="left")
    inside = (j >= 1) & (j < len(ascending))
    upper = len(ascending) - 1 - np.clip(j, 1, len(ascending) - 1)
    n_up, n_low = numbers[upper], numbers[upper + 1]
    s_up, s_low = disc_s[upper], disc_s[upper + 1]
    fraction = (s_up - voxel_s) / (s_up - s_low)
    level = np.minimum(n_up + np.floor(fraction * (n_low - n_up)).astype(np.int64), n_low - 1)
    lut = np.array([canonical_level(c) for c in range(COCCYX + 1)], dtype=np.int16)
    return np.where(inside, lut[np.clip(level, 0, COCCYX)], UNASSIGNED).astype(np.int16)
