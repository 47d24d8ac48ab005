"""The phantom's anatomy in continuous millimetres: spine, cord and MS lesions, drawn at random.

Everything here lives in the anatomy's own frame (RAS axes, mm, origin at the field-of-view centre) and knows
nothing of voxels; :mod:`.render` samples it onto a grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Most lesions a random phantom gets; a requested count may be larger.
MAX_RANDOM_LESIONS = 6

# Tissue classes of the supersampled label map; lesion i (0-based) is LESION0 + i.
MUSCLE, AIR, BONE, DISC, FAT, CSF, CORD = range(7)
LESION0 = 7
TISSUES = ("muscle", "air", "bone", "disc", "fat", "csf", "cord")

#: Vertebral body heights (mm) by SCT level number (C1=1 ... L5=24), adult averages; discs in between.
_BODY_HEIGHT_MM = {**{level: 15.0 for level in range(1, 3)}, **{level: 14.0 for level in range(3, 8)},
                   **{level: 18.0 for level in range(8, 14)}, **{level: 22.0 for level in range(14, 20)},
                   **{level: 26.0 for level in range(20, 25)}}
_DISC_HEIGHT_MM = {True: 5.0, False: 7.0}  # cervical/thoracic, lumbar
_LESION_GAP_MM = 4.0  # minimal gap between lesion bounding boxes, more than the thickest slice, so lesions stay apart
_LESION_VOLUME_MM3 = (3.0, 150.0)


@dataclass(frozen=True)
class Blob:
    """An ellipsoid: centre (mm), rotation (columns = its axes in RAS) and semi-axes (mm)."""

    centre: np.ndarray
    axes: np.ndarray
    semi: np.ndarray

    def half_extent(self) -> np.ndarray:
        """Half-size (mm) of the axis-aligned box enclosing the ellipsoid."""
        return np.sqrt(((self.axes * self.semi) ** 2).sum(axis=1))

    def contains(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Whether broadcastable points (mm) lie inside."""
        d = (x - self.centre[0], y - self.centre[1], z - self.centre[2])
        total = 0.0
        for axis in range(3):
            u = sum(self.axes[row, axis] * d[row] for row in range(3)) / self.semi[axis]
            total = total + u * u
        return total <= 1.0


@dataclass(frozen=True)
class Anatomy:
    """The spine in the phantom's local frame: RAS axes, mm, origin at the field-of-view centre."""

    fov: np.ndarray  # (3,) mm
    lateral: tuple[float, float, float]  # scoliosis: amplitude (mm), wavelength (mm), phase
    sagittal: tuple[float, float, float]  # canal AP position (mm), lordosis bulge (mm), forward tilt (mm/mm)
    cord_semi: np.ndarray  # (LR, AP) semi-axes, mm
    cord_offset: np.ndarray  # cord centre relative to the canal centre (x, y), mm
    csf_semi: np.ndarray
    canal_semi: np.ndarray
    body_semi: np.ndarray  # vertebral body footprint (LR, AP), mm
    body_gap: float  # posterior longitudinal ligament between canal and bodies, mm
    disc_z: np.ndarray  # disc mid-planes, descending, mm
    disc_half: np.ndarray  # half disc heights, mm
    first_disc_code: int  # SCT code of disc_z[0]; the next ones count up

    def canal_centre(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Canal centre line (x, y) in mm at heights ``z`` (mm): a lordotic, mildly scoliotic curve."""
        amplitude, wavelength, phase = self.lateral
        ap, bulge, tilt = self.sagittal
        x = amplitude * np.sin(2.0 * np.pi * z / wavelength + phase)
        y = ap + bulge * (1.0 - (2.0 * z / self.fov[2]) ** 2) + tilt * z
        return x, y

    def cord_centre(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cord centre line (x, y) in mm at heights ``z`` (mm), slightly off the canal's."""
        x, y = self.canal_centre(z)
        return x + self.cord_offset[0], y + self.cord_offset[1]

    def cord_tangent(self, z: float) -> np.ndarray:
        """Unit vector along the cord at height ``z`` (mm), pointing superiorly."""
        h = 0.5
        (x0, y0), (x1, y1) = self.cord_centre(np.array(z - h)), self.cord_centre(np.array(z + h))
        t = np.array([float(x1 - x0), float(y1 - y0), 2.0 * h])
        return t / np.linalg.norm(t)

    def in_cord(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Whether broadcastable points (mm) lie inside the cord."""
        return in_ellipse(x, y, *self.cord_centre(z), self.cord_semi)

    def level_at(self, z: np.ndarray) -> np.ndarray:
        """SCT level (int) at heights ``z`` (mm): the cord between disc n and disc n+1 belongs to level n."""
        above = (self.disc_z[None, :] > np.asarray(z, dtype=float).reshape(-1, 1)).sum(axis=1)
        return (self.first_disc_code - 1 + above).reshape(np.shape(z))

    def in_disc(self, z: np.ndarray) -> np.ndarray:
        """Whether heights ``z`` (mm) cut through an intervertebral disc."""
        return (np.abs(np.asarray(z)[..., None] - self.disc_z) <= self.disc_half).any(axis=-1)

    def disc_point(self, index: int) -> np.ndarray:
        """Posterior tip (mm) of disc ``index``: where SCT puts its disc label."""
        z = self.disc_z[index]
        x, y = self.canal_centre(np.array(z))
        return np.array([float(x), float(y) + self.canal_semi[1] + self.body_gap, z])

    def body_centre_y(self, z: np.ndarray) -> np.ndarray:
        """AP position (mm) of the vertebral body centres at heights ``z`` (mm), in front of the canal."""
        return self.canal_centre(z)[1] + self.canal_semi[1] + self.body_gap + self.body_semi[1]


def draw_anatomy(rng: np.random.Generator, fov: np.ndarray, start_level: int) -> Anatomy:
    """Random adult-sized spine: cord about 7 mm AP by 10-12 mm LR, vertebra and disc heights from averages."""
    cord = np.array([rng.uniform(5.0, 6.0), rng.uniform(3.2, 3.8)])
    csf = cord + np.array([rng.uniform(2.5, 4.0), rng.uniform(2.0, 3.5)])
    canal = csf + rng.uniform(1.0, 1.8, size=2)
    scale = rng.uniform(0.9, 1.1)
    disc_z, disc_half = [fov[2] / 2.0 - rng.uniform(4.0, 12.0)], []
    level = start_level
    while True:
        disc_half.append(0.5 * scale * _DISC_HEIGHT_MM[level < 20] * rng.uniform(0.85, 1.15))
        step = scale * _BODY_HEIGHT_MM.get(level, 26.0) * rng.uniform(0.93, 1.07) + 2.0 * disc_half[-1]
        if disc_z[-1] - step < -fov[2] / 2.0 - 10.0:
            break
        disc_z.append(disc_z[-1] - step)
        level += 1
    return Anatomy(
        fov=fov,
        lateral=(rng.uniform(0.0, 2.0), rng.uniform(80.0, 200.0), rng.uniform(0.0, 2.0 * np.pi)),
        sagittal=(-fov[1] / 2.0 + rng.uniform(22.0, 28.0), rng.uniform(1.0, 5.0), rng.uniform(-0.08, 0.08)),
        cord_semi=cord,
        cord_offset=np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.3, 1.0)]),
        csf_semi=csf,
        canal_semi=canal,
        body_semi=np.array([rng.uniform(7.5, 9.0), rng.uniform(7.0, 8.0)]),
        body_gap=rng.uniform(1.0, 2.0),
        disc_z=np.array(disc_z),
        disc_half=np.array(disc_half),
        first_disc_code=start_level,
    )


def draw_lesions(rng: np.random.Generator, anatomy: Anatomy, count: int | None) -> list[list[Blob]]:
    """Lesions as groups of ellipsoids (1 blob, or 2-3 for irregular ones), well apart and centred in the cord.

    ``count`` None draws 1..MAX_RANDOM_LESIONS lesions, or none with 5% probability."""
    if count is None:
        count = 0 if rng.random() < 0.05 else int(rng.integers(1, MAX_RANDOM_LESIONS + 1))
    lesions: list[list[Blob]] = []
    boxes: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(50 * count):
        if len(lesions) == count:
            break
        blobs = _draw_lesion(rng, anatomy)
        low, high = lesion_box(blobs)
        inside_fov = abs(low[2]) < anatomy.fov[2] / 2.0 - 2.0 and abs(high[2]) < anatomy.fov[2] / 2.0 - 2.0
        apart = all(np.any((low > h + _LESION_GAP_MM) | (high < lo - _LESION_GAP_MM)) for lo, h in boxes)
        if inside_fov and apart:
            lesions.append(blobs)
            boxes.append((low, high))
    return lesions


def _draw_lesion(rng: np.random.Generator, anatomy: Anatomy) -> list[Blob]:
    """One lesion: volume log-uniform in 3-150 mm3 before clipping to the cord, elongated 1.5-3x along the cord,
    centred anywhere but the outermost rim of the cord (MS lesions are often peripheral, in the white matter)."""
    volume = math.exp(rng.uniform(*np.log(_LESION_VOLUME_MM3)))
    elongation = rng.uniform(1.5, 3.0)
    z = rng.uniform(-anatomy.fov[2] / 2.0, anatomy.fov[2] / 2.0)
    angle, radius = rng.uniform(0.0, 2.0 * np.pi), 0.85 * math.sqrt(rng.random())
    cx, cy = anatomy.cord_centre(np.array(z))
    centre = np.array([float(cx) + radius * math.cos(angle) * anatomy.cord_semi[0],
                       float(cy) + radius * math.sin(angle) * anatomy.cord_semi[1], z])
    tangent = anatomy.cord_tangent(z)
    across = np.cross(tangent, [0.0, 1.0, 0.0])
    across /= np.linalg.norm(across)
    spin = rng.uniform(0.0, np.pi)
    u = math.cos(spin) * across + math.sin(spin) * np.cross(tangent, across)
    axes = np.column_stack([u, np.cross(tangent, u), tangent])
    n_blobs = 1 if rng.random() < 0.6 else int(rng.integers(2, 4))
    shares = rng.uniform(0.5, 1.0, size=n_blobs)
    blobs = []
    for share in shares / shares.sum():
        e = elongation * rng.uniform(0.8, 1.2)
        r = (3.0 * share * volume / (4.0 * np.pi * e)) ** (1.0 / 3.0)
        ratio = math.sqrt(rng.uniform(0.8, 1.25))
        semi = np.array([r * ratio, r / ratio, e * r])
        shift = axes @ (np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), rng.uniform(-1.0, 1.0)])
                        * np.array([r, r, 0.9 * e * r])) if blobs else np.zeros(3)
        blobs.append(Blob(centre + shift, axes, semi))
    return blobs


def lesion_box(blobs: list[Blob]) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) corners (mm) of the axis-aligned box enclosing a lesion's blobs."""
    low = np.min([b.centre - b.half_extent() for b in blobs], axis=0)
    high = np.max([b.centre + b.half_extent() for b in blobs], axis=0)
    return low, high


def in_lesion(blobs: list[Blob], x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Whether broadcastable points (mm) lie in the union of a lesion's blobs."""
    inside = blobs[0].contains(x, y, z)
    for blob in blobs[1:]:
        inside = inside | blob.contains(x, y, z)
    return inside


def lesion_truth(blobs: list[Blob], anatomy: Anatomy) -> tuple[np.ndarray, float]:
    """Centroid (mm) and exact-ish volume (mm3) of a lesion clipped to the cord, on a fine grid of its own box
    (about 60 points per axis), so the truth does not depend on the image grid."""
    low, high = lesion_box(blobs)
    step = float(np.prod(high - low)) ** (1.0 / 3.0) / 60.0
    xs, ys, zs = (np.arange(low[a] + step / 2.0, high[a], step) for a in range(3))
    x, y, z = xs[None, None, :], ys[None, :, None], zs[:, None, None]
    inside = in_lesion(blobs, x, y, z) & anatomy.in_cord(x, y, z)
    k, j, i = np.nonzero(inside)
    centre = np.array([xs[i].mean(), ys[j].mean(), zs[k].mean()])
    return centre, float(inside.sum() * step**3)


def in_ellipse(x: np.ndarray, y: np.ndarray, cx: np.ndarray, cy: np.ndarray, semi: np.ndarray) -> np.ndarray:
    """Whether points lie inside the axis-aligned ellipse of centre (cx, cy) and semi-axes ``semi`` (mm), computed
    in the points' precision (float32 on the supersampled grid, which halves the time)."""
    dtype = np.result_type(x, y)
    dx = (x - np.asarray(cx, dtype)) / dtype.type(semi[0])
    dy = (y - np.asarray(cy, dtype)) / dtype.type(semi[1])
    return dx * dx + dy * dy <= 1.0
