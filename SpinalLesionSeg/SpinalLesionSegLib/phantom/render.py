"""Sample the phantom's anatomy onto a voxel grid with faithful partial volume.

Shapes are evaluated at supersampled points of the grid (about every 0.5 mm) and averaged per voxel, so anisotropic
grids show the same physical object: the ideal image is the mean tissue intensity per voxel, and every ground-truth
mask holds the voxels that are at least half that structure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..geometry import axis_aligned_ijk_to_ras, ras_to_voxel, set_ijk_to_ras
from ..image_io import array_to_image
from .anatomy import AIR, BONE, CORD, CSF, DISC, FAT, LESION0, MUSCLE, Anatomy, Blob, in_ellipse, in_lesion, lesion_box

#: Supersampling step (mm) for partial volume: a voxel averages ceil(spacing / 0.5) points along each axis.
_FINE_STEP_MM = 0.5


@dataclass(frozen=True)
class Grid:
    """A voxel grid with axes R, A, S: size (voxels) and spacing (mm) as (x, y, z), and its centre (RAS mm)."""

    size: tuple[int, int, int]
    spacing: np.ndarray
    centre: np.ndarray

    @property
    def origin(self) -> np.ndarray:
        """Position (mm) of the centre of voxel (0, 0, 0)."""
        return self.centre - (np.asarray(self.size) - 1) / 2.0 * self.spacing

    def centred(self) -> Grid:
        """The same grid centred at 0: the anatomy's own frame."""
        return Grid(self.size, self.spacing, np.zeros(3))

    def ijk_to_ras(self) -> np.ndarray:
        """The grid's 4x4 IJK-to-RAS matrix (mm)."""
        return axis_aligned_ijk_to_ras(self.origin, self.spacing)

    def axis_mm(self, axis: int, supersample: int = 1) -> np.ndarray:
        """Coordinates (mm) of voxel centres along ``axis``, or of ``supersample`` equally spaced points per voxel."""
        offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
        index = (np.arange(self.size[axis])[:, None] + offsets[None, :]).ravel()
        return self.origin[axis] + index * self.spacing[axis]

    def image(self, array: np.ndarray) -> sitk.Image:
        """Wrap a ``[z, y, x]`` array as an RAS-oriented SimpleITK image on this grid."""
        reference = sitk.Image([int(n) for n in self.size], sitk.sitkUInt8)
        set_ijk_to_ras(reference, self.ijk_to_ras())
        return array_to_image(array, reference)


def draw_grid(rng: np.random.Generator, fov: np.ndarray, spacing: tuple[float, float, float] | None) -> Grid:
    """Voxel grid covering ``fov`` (mm), centred at a random scanner position; spacing (mm) drawn unless given: a
    sagittal (1-3 mm R-L slices) or axial (1-3 mm S-I slices) acquisition with 0.5-1 mm in-plane voxels."""
    centre = rng.uniform(-60.0, 60.0, size=3)
    drawn = np.full(3, rng.uniform(0.5, 1.0))
    drawn[0 if rng.random() < 0.6 else 2] = rng.uniform(1.0, 3.0)  # sagittal (R-L slices) or axial (S-I slices)
    step = drawn if spacing is None else np.asarray(spacing, dtype=float)
    if step.shape != (3,) or np.any(step <= 0):
        raise ValueError(f"spacing must be three positive lengths in mm, got {spacing}")
    size = np.maximum(1, np.round(fov / step)).astype(int)
    return Grid(tuple(int(n) for n in size), step, centre)


def draw_orientation(rng: np.random.Generator) -> str:
    """One of the 48 voxel orientations (axis permutation and flips), as axcodes."""
    letters = [("R", "L"), ("A", "P"), ("S", "I")]
    return "".join(letters[axis][int(rng.integers(0, 2))] for axis in rng.permutation(3))


def rasterise(anatomy: Anatomy, lesions: list[list[Blob]], local: Grid,
              intensities: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray], dict[int, np.ndarray]]:
    """The ideal partial-volume image, the ground-truth arrays and the in-view disc points, on the grid ``local``
    (in the anatomy's frame).

    Returns the image (float32 ``[z, y, x]``, ``intensities`` indexed by tissue label averaged per voxel); the truth
    ``lesion``, ``cord``, ``canal`` (uint8 0/1), ``levels`` (cord voxels hold their SCT level) and ``discs`` (one
    voxel per disc, SCT disc code); and disc points (SCT code -> mm, anatomy's frame).
    """
    labels, factors = _fine_labels(anatomy, lesions, local)
    image = _block_mean(intensities[labels], factors)
    cord_fraction = _block_mean(labels >= CORD, factors)
    canal_fraction = _block_mean(labels >= FAT, factors)
    lesion_ids = _lesion_ids(labels, factors, len(lesions), cord_fraction >= 0.5)
    cord = (cord_fraction >= 0.5).astype(np.uint8)
    levels = cord * anatomy.level_at(local.axis_mm(2)).astype(np.uint8)[:, None, None]
    discs, disc_points = _disc_points(anatomy, local)
    truth = {"lesion": (lesion_ids > 0).astype(np.uint8), "cord": cord, "levels": levels, "discs": discs,
             "canal": (canal_fraction >= 0.5).astype(np.uint8)}
    return image, truth, disc_points


def _fine_labels(anatomy: Anatomy, lesions: list[list[Blob]], local: Grid) -> tuple[np.ndarray, tuple[int, ...]]:
    """Tissue label at supersampled points of the grid ``local`` (in the anatomy's frame), ``[z, y, x]``, and the
    supersampling factors (x, y, z)."""
    factors = tuple(int(max(1, math.ceil(s / _FINE_STEP_MM - 1e-6))) for s in local.spacing)
    xs, ys, zs = (local.axis_mm(a, factors[a]).astype(np.float32) for a in range(3))
    x, y, z = xs[None, None, :], ys[None, :, None], zs[:, None, None]
    labels = np.full((zs.size, ys.size, xs.size), MUSCLE, dtype=np.uint8)

    canal_x, canal_y = (c.astype(np.float32)[:, None, None] for c in anatomy.canal_centre(zs))
    disc = anatomy.in_disc(zs)[:, None, None]
    body_y = anatomy.body_centre_y(zs).astype(np.float32)[:, None, None]
    body = _superellipse(x - canal_x, y - body_y, anatomy.body_semi)
    airway_y = body_y + anatomy.body_semi[1] + 9.0
    labels[in_ellipse(x, y, canal_x, airway_y, np.array([7.0, 4.0]))] = AIR
    arch = in_ellipse(x, y, canal_x, canal_y, anatomy.canal_semi + 3.0) & (y < canal_y)
    spinous = (np.abs(x - canal_x) < 2.5) & (y < canal_y) & (y > canal_y - anatomy.canal_semi[1] - 14.0)
    labels[(arch | spinous) & ~disc] = BONE
    labels[body & ~disc] = BONE
    labels[body & disc] = DISC
    labels[in_ellipse(x, y, canal_x, canal_y, anatomy.canal_semi)] = FAT
    labels[in_ellipse(x, y, canal_x, canal_y, anatomy.csf_semi)] = CSF
    labels[anatomy.in_cord(x, y, z)] = CORD
    for i, blobs in enumerate(lesions):
        _paint_lesion(labels, (xs, ys, zs), blobs, LESION0 + i)
    return labels, factors


def _paint_lesion(labels: np.ndarray, axes_mm: tuple[np.ndarray, ...], blobs: list[Blob], value: int) -> None:
    """Label the points of ``labels`` inside the lesion and the cord, looking only inside the lesion's box."""
    low, high = lesion_box(blobs)
    window = [slice(*np.searchsorted(axes_mm[a], [low[a], high[a]])) for a in range(3)]
    xs, ys, zs = (axes_mm[a][window[a]] for a in range(3))
    region = labels[window[2], window[1], window[0]]
    inside = in_lesion(blobs, xs[None, None, :], ys[None, :, None], zs[:, None, None])
    region[inside & (region == CORD)] = value


def _superellipse(dx: np.ndarray, dy: np.ndarray, semi: np.ndarray) -> np.ndarray:
    """Rounded-rectangle footprint of a vertebral body (exponent 4), in the offsets' precision."""
    u, v = dx / dx.dtype.type(semi[0]), dy / dy.dtype.type(semi[1])
    u, v = u * u, v * v
    return u * u + v * v <= 1.0


def _block_mean(fine: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """Average supersampled ``[z, y, x]`` values per voxel: the partial-volume value of each voxel."""
    total = fine.astype(np.float32)
    for axis, factor in zip((2, 1, 0), factors):  # strided sums: ten times faster than a reshaped mean
        parts = [total[(slice(None),) * axis + (slice(q, None, factor),)] for q in range(factor)]
        total = sum(parts[1:], parts[0])
    return total / np.float32(np.prod(factors))


def _lesion_ids(labels: np.ndarray, factors: tuple[int, ...], count: int, cord: np.ndarray) -> np.ndarray:
    """Lesion number (1-based) per voxel: voxels at least half lesion, or the most-lesion cord voxel of a lesion
    smaller than that (so every lesion keeps at least one voxel on any grid). Lesion points are cord points of the
    supersampled labels, so a voxel at least half lesion is at least half cord: lesion voxels are cord voxels."""
    ids = np.zeros(cord.shape, dtype=np.uint8)
    for i in range(count):
        fraction = _block_mean(labels == LESION0 + i, factors)
        mask = fraction >= 0.5
        if not mask.any():
            mask = np.zeros_like(cord)
            mask.flat[int(np.argmax(np.where(cord, fraction, -1.0)))] = True
        ids[mask] = i + 1
    return ids


def _disc_points(anatomy: Anatomy, local: Grid) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Single-voxel SCT disc labels on the grid ``local`` (``[z, y, x]`` uint8) and the in-view disc points (mm,
    anatomy's frame)."""
    discs = np.zeros(local.size[::-1], dtype=np.uint8)
    points = {}
    matrix = local.ijk_to_ras()
    for index in range(anatomy.disc_z.size):
        point = anatomy.disc_point(index)
        ijk = np.round(ras_to_voxel(matrix, point)[0]).astype(int)
        if np.all((ijk >= 0) & (ijk < np.asarray(local.size))):
            code = anatomy.first_disc_code + index
            discs[ijk[2], ijk[1], ijk[0]] = code
            points[code] = point
    return discs, points
