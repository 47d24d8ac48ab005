"""Multi-station exams: a cervical and a thoracic series of one examination as one patient, one per-level table.

Spinal cord exams often cover the cord in two or three overlapping stations. Adding their tables would count the
overlap twice (a lesion seen in both stations twice, its volume twice). Instead the stations are merged in world
coordinates (they share the scanner's coordinates: one exam, no registration) onto one **union grid**: the first
station's orientation, the finest spacing of all stations, an extent covering them all. Each union voxel takes its
values from the one station that **owns** it: the station that covers it, and where stations overlap, the one in
which it lies deepest along the exam's axis (the line through the stations' centres), so an overlap is split at its
middle, far from either station's edge (where coils fall off and slices wrap). Lesions are then found once on the
union grid, so a lesion seen in both stations is one lesion, counted once, whatever side of the split it lies on.

Levels come from each station (each one's own labelled cord, TotalSpineSeg map or disc points): region images are
brought onto the union grid with their station's ownership, disc points of all stations are pooled (a disc marked
in two stations takes the mean of its positions). Stations cut from one image on one voxel lattice give exactly
that image's table (tested); stations on different grids are resampled (nearest neighbour for masks and labels,
linear for the soft map), which moves volumes by up to a voxel layer at edges.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..image_io import array_to_image, image_to_array
from .levels import LevelSource


@dataclass(frozen=True)
class Station:
    """One station: its grid (``image``, the lesion mask's), boolean ``[k, j, i]`` lesion and cord masks, the soft
    map (0..1) and the level source, each optional but the lesion; ``name`` names it in messages."""

    image: sitk.Image
    lesion: np.ndarray
    name: str
    soft: np.ndarray | None = None
    cord: np.ndarray | None = None
    levels: LevelSource | None = None


@dataclass(frozen=True)
class MergedExam:
    """The stations on the union grid; ``owner`` is each voxel's station index (-1: no station covers it)."""

    grid: sitk.Image
    lesion: np.ndarray
    owner: np.ndarray
    soft: np.ndarray | None
    cord: np.ndarray | None
    levels: LevelSource | None


def merge_stations(stations: Sequence[Station]) -> MergedExam:
    """Merge the stations of one exam (see the module docstring); InputError when they do not overlap or touch
    one body, or mix level kinds."""
    if len(stations) < 2:
        raise InputError(None, "a multi-station exam needs at least two stations")
    grid = union_grid([station.image for station in stations])
    owner = owners([station.image for station in stations], grid)
    lesion = pick_on_grid(stations, owner, grid, lambda s: s.lesion.astype(np.uint8), sitk.sitkNearestNeighbor) > 0
    soft = pick_on_grid(stations, owner, grid, lambda s: s.soft, sitk.sitkLinear) if _all(stations, "soft") else None
    cord = pick_on_grid(stations, owner, grid, lambda s: s.cord.astype(np.uint8), sitk.sitkNearestNeighbor) > 0 \
        if _all(stations, "cord") else None
    return MergedExam(grid, lesion, owner, soft, cord, _merged_levels(stations, owner, grid))


def union_grid(images: Sequence[sitk.Image]) -> sitk.Image:
    """The grid covering every image: the first one's direction, the finest spacing of all (mm), its origin at the
    lowest corner in that frame (voxel centres of the first image stay voxel centres when spacings agree)."""
    first = images[0]
    spacing = np.min([image.GetSpacing() for image in images], axis=0)
    corners = np.array([first.TransformPhysicalPointToContinuousIndex(point) for image in images
                        for point in _corners(image)]) * np.asarray(first.GetSpacing()) / spacing
    low = np.floor(corners.min(axis=0) + 1e-6)
    size = (np.ceil(corners.max(axis=0) - 1e-6) - low + 1).astype(int)
    grid = sitk.Image([int(n) for n in size], sitk.sitkUInt8)
    grid.SetSpacing(spacing.tolist())
    grid.SetDirection(first.GetDirection())
    grid.SetOrigin(first.TransformContinuousIndexToPhysicalPoint((low * spacing / first.GetSpacing()).tolist()))
    return grid


def _corners(image: sitk.Image) -> list[tuple[float, ...]]:
    """The physical positions (LPS mm) of the image's eight corner voxel centres."""
    size = image.GetSize()
    return [image.TransformIndexToPhysicalPoint([c * (n - 1) for c, n in zip(corner, size)])
            for corner in itertools.product((0, 1), repeat=3)]


def owners(images: Sequence[sitk.Image], grid: sitk.Image) -> np.ndarray:
    """Station index of each grid voxel (``[k, j, i]``, -1 where none covers it): among the stations covering it,
    the one in which it lies deepest along the exam axis."""
    points = _grid_points(grid)
    centres = np.array([np.mean(_corners(image), axis=0) for image in images])
    axis = centres[-1] - centres[0]
    if not np.linalg.norm(axis):
        raise InputError(None, "the stations share one centre: they are not stations of one exam along the spine")
    axis /= np.linalg.norm(axis)
    best = np.full(len(points), -np.inf)
    owner = np.full(len(points), -1, dtype=np.int16)
    for number, image in enumerate(images):
        extent = np.array([corner @ axis for corner in _corners(image)])
        position = points @ axis
        depth = np.minimum(position - extent.min(), extent.max() - position)
        deeper = _inside(image, points) & (depth > best)
        owner[deeper], best[deeper] = number, depth[deeper]
    if len(set(owner[owner >= 0].tolist())) < len(images):
        raise InputError(None, "a station is hidden by the others (it lies inside another station's field of view)")
    return owner.reshape(tuple(reversed(grid.GetSize())))


def _grid_points(grid: sitk.Image) -> np.ndarray:
    """Physical positions (LPS mm) of every grid voxel centre, in ``[k, j, i]`` flat order."""
    k, j, i = np.indices(tuple(reversed(grid.GetSize()))).reshape(3, -1)
    index = np.stack([i, j, k], axis=1) * np.asarray(grid.GetSpacing())
    matrix = np.asarray(grid.GetDirection()).reshape(3, 3)
    return index @ matrix.T + np.asarray(grid.GetOrigin())


def _inside(image: sitk.Image, points: np.ndarray) -> np.ndarray:
    """Whether each point lies within the image's voxels (continuous index within -0.5 .. size - 0.5)."""
    matrix = np.asarray(image.GetDirection()).reshape(3, 3)
    index = (points - np.asarray(image.GetOrigin())) @ matrix / np.asarray(image.GetSpacing())
    return np.all((index > -0.5 - 1e-6) & (index < np.asarray(image.GetSize()) - 0.5 + 1e-6), axis=1)


def pick_on_grid(stations: Sequence[Station], owner: np.ndarray, grid: sitk.Image, values,
                 interpolator: int) -> np.ndarray:
    """One array on the grid: each voxel from its owning station's array (``values(station)``), resampled."""
    merged = None
    for number, station in enumerate(stations):
        resampled = image_to_array(sitk.Resample(array_to_image(values(station), station.image), grid,
                                                 sitk.Transform(), interpolator, 0.0))
        merged = np.zeros_like(resampled) if merged is None else merged
        merged[owner == number] = resampled[owner == number]
    return merged


def _all(stations: Sequence[Station], what: str) -> bool:
    """Whether every station has ``what`` (a merged soft map or cord needs all of them); InputError if some do."""
    given = [getattr(station, what) is not None for station in stations]
    if any(given) and not all(given):
        missing = [station.name for station, has in zip(stations, given) if not has]
        raise InputError(None, f"give a {what} for every station or none (missing for {', '.join(missing)})")
    return all(given)


def _merged_levels(stations: Sequence[Station], owner: np.ndarray, grid: sitk.Image) -> LevelSource | None:
    """The stations' level sources as one: region images picked by ownership, or disc points pooled."""
    sources = [station.levels for station in stations]
    if all(source is None for source in sources):
        return None
    if any(source is None for source in sources) or len({source.regions is None for source in sources}) > 1:
        raise InputError(None, "give every station levels of one kind (all label images, or all disc points)")
    first = sources[0]
    if first.regions is not None:
        labels = pick_on_grid([replace(station, image=station.levels.regions) for station in stations], owner, grid,
                       lambda s: image_to_array(s.levels.regions).astype(np.int16), sitk.sitkNearestNeighbor)
        return LevelSource(kind=first.kind, path=Path(first.path), regions=array_to_image(labels, grid))
    pooled: dict[int, list[np.ndarray]] = {}
    for source in sources:
        for number, position in source.discs.items():
            pooled.setdefault(number, []).append(np.asarray(position, dtype=float))
    return LevelSource(kind=first.kind, path=Path(first.path),
                       discs={number: np.mean(points, axis=0) for number, points in sorted(pooled.items())})
