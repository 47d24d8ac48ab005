"""Synthetic spinal cord MRI with exact ground truth, for tests, demos and training the demo model.

A phantom is a cervical/upper-thoracic spine built in continuous millimetres: a curved spinal cord (elliptical
cross-section) inside CSF inside the bony canal, vertebral bodies with discs in front of it, posterior arches and an
airway, and multiple sclerosis lesions (ellipsoids elongated along the cord, some irregular unions of blobs) that lie
entirely inside the cord. Shapes are evaluated at supersampled points of the voxel grid and averaged, so anisotropic
grids show the same physical object with faithful partial volume; the image then gets a point-spread blur, a smooth
multiplicative bias field (brighter posteriorly, as with a spine coil) and Rician noise.

The volume is built on a grid whose voxel axes are R, A, S and then reoriented with :func:`.geometry.reorient`
(voxel permutation and flips only), so the image and every ground-truth map share one grid exactly whatever the
random storage orientation. Ground truth follows SCT's conventions (``models-and-conventions.md`` section 3): the
labelled cord holds the vertebral level (C1=1 ... C7=7, T1=8 ...), and each disc is a single voxel at its posterior
tip whose value names the vertebra below it (3 = C2/C3 disc); the cord between disc n and disc n+1 is level n.

Random draws come from independent streams per aspect (grid, anatomy, lesions, appearance, orientation), so the
same seed gives the same anatomy and lesions whatever spacing, orientation, contrast or size is requested.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import __version__
from .contrasts import CONTRASTS
from .geometry import reorient, set_ijk_to_ras
from .image_io import array_to_image, write_image

#: MRI contrasts a phantom can imitate (BIDS suffixes, as the lesion models name them).
#: Contrasts on which MS lesions are brighter than the cord; on the others (T1w, UNIT1, PSIR) they are darker.
T2_LIKE: tuple[str, ...] = ("T2w", "T2starw", "STIR")
#: Default field of view (mm) along R-L, A-P, S-I: about 48 x 64 x 96 voxels at 1 mm, generated in well under 1 s.
DEFAULT_FOV_MM: tuple[float, float, float] = (48.0, 64.0, 96.0)
#: Most lesions a random phantom gets; a requested count may be larger.
MAX_RANDOM_LESIONS = 6

# Tissue classes of the supersampled label map; lesion i (0-based) is LESION0 + i.
MUSCLE, AIR, BONE, DISC, FAT, CSF, CORD = range(7)
LESION0 = 7
_TISSUES = ("muscle", "air", "bone", "disc", "fat", "csf", "cord")

#: Mean tissue intensities (arbitrary units) per contrast, in _TISSUES order, from typical clinical appearance:
#: CSF bright on T2w/T2starw/STIR and dark on T1w/UNIT1/PSIR, fatty marrow and fat bright on T1w and suppressed
#: on STIR, bone dark on T2starw (susceptibility), cord white matter brighter than CSF on T1-like contrasts.
_INTENSITY: dict[str, tuple[float, ...]] = {
    "T2w": (220.0, 5.0, 380.0, 650.0, 600.0, 1000.0, 450.0),
    "T2starw": (250.0, 5.0, 160.0, 480.0, 320.0, 900.0, 420.0),
    "STIR": (260.0, 5.0, 140.0, 620.0, 60.0, 950.0, 420.0),
    "PSIR": (450.0, 0.0, 650.0, 380.0, 800.0, 120.0, 700.0),
    "T1w": (420.0, 5.0, 700.0, 380.0, 900.0, 150.0, 600.0),
    "UNIT1": (520.0, 0.0, 620.0, 420.0, 720.0, 110.0, 800.0),
}
#: Lesion-to-cord intensity ratio range: hyperintense on T2-like contrasts, hypointense on T1-like ones.
_LESION_RATIO = {True: (1.35, 1.8), False: (0.55, 0.8)}

#: Vertebral body heights (mm) by SCT level number (C1=1 ... L5=24), adult averages; discs in between.
_BODY_HEIGHT_MM = {**{level: 15.0 for level in range(1, 3)}, **{level: 14.0 for level in range(3, 8)},
                   **{level: 18.0 for level in range(8, 14)}, **{level: 22.0 for level in range(14, 20)},
                   **{level: 26.0 for level in range(20, 25)}}
_DISC_HEIGHT_MM = {True: 5.0, False: 7.0}  # cervical/thoracic, lumbar
_LEVEL_NAMES = ("C", 1, 7), ("T", 8, 19), ("L", 20, 24), ("S", 25, 29)

#: Supersampling step (mm) for partial volume: a voxel averages ceil(spacing / 0.5) points along each axis.
_FINE_STEP_MM = 0.5
_LESION_GAP_MM = 4.0  # minimal gap between lesion bounding boxes, more than the thickest slice, so lesions stay apart
_LESION_VOLUME_MM3 = (3.0, 150.0)


@dataclass(frozen=True)
class PhantomLesion:
    """Ground truth of one lesion: one connected component of the lesion mask."""

    label: int  #: 1-based index, in order of generation
    centre_ras: tuple[float, float, float]  #: centroid, RAS mm (Slicer's frame)
    volume_mm3: float  #: true continuous volume (mm3), independent of the voxel grid
    level: int  #: SCT vertebral level of the centroid (C1=1 ... T1=8)


@dataclass
class Phantom:
    """A synthetic image and its ground truth, all on exactly the same voxel grid.

    ``lesion`` and ``cord`` are uint8 0/1 masks; ``levels`` is SCT's labelled cord (cord voxels hold their vertebral
    level); ``discs`` holds single voxels with SCT disc codes; ``canal`` is the bony canal (CSF, cord and epidural
    fat), uint8 0/1.
    """

    image: sitk.Image
    lesion: sitk.Image
    cord: sitk.Image
    levels: sitk.Image
    discs: sitk.Image
    canal: sitk.Image
    lesions: list[PhantomLesion]
    contrast: str
    seed: int
    disc_points_ras: dict[int, tuple[float, float, float]] = field(default_factory=dict)  #: disc code -> RAS mm


@dataclass(frozen=True)
class _Blob:
    """An ellipsoid: centre (RAS mm), rotation (columns = its axes in RAS) and semi-axes (mm)."""

    centre: np.ndarray
    axes: np.ndarray
    semi: np.ndarray

    def half_extent(self) -> np.ndarray:
        """Half-size (mm) of the axis-aligned box enclosing the ellipsoid."""
        return np.sqrt(((self.axes * self.semi) ** 2).sum(axis=1))

    def contains(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Whether broadcastable RAS points (mm) lie inside."""
        d = (x - self.centre[0], y - self.centre[1], z - self.centre[2])
        total = 0.0
        for axis in range(3):
            u = sum(self.axes[row, axis] * d[row] for row in range(3)) / self.semi[axis]
            total = total + u * u
        return total <= 1.0


@dataclass(frozen=True)
class _Anatomy:
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
        x, y = self.canal_centre(z)
        return x + self.cord_offset[0], y + self.cord_offset[1]

    def cord_tangent(self, z: float) -> np.ndarray:
        """Unit vector along the cord at height ``z`` (mm), pointing superiorly."""
        h = 0.5
        (x0, y0), (x1, y1) = self.cord_centre(np.array(z - h)), self.cord_centre(np.array(z + h))
        t = np.array([float(x1 - x0), float(y1 - y0), 2.0 * h])
        return t / np.linalg.norm(t)

    def in_cord(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return _in_ellipse(x, y, *self.cord_centre(z), self.cord_semi)

    def level_at(self, z: np.ndarray) -> np.ndarray:
        """SCT level (int) at heights ``z`` (mm): the cord between disc n and disc n+1 belongs to level n."""
        above = (self.disc_z[None, :] > np.asarray(z, dtype=float).reshape(-1, 1)).sum(axis=1)
        return (self.first_disc_code - 1 + above).reshape(np.shape(z))

    def in_disc(self, z: np.ndarray) -> np.ndarray:
        return (np.abs(np.asarray(z)[..., None] - self.disc_z) <= self.disc_half).any(axis=-1)

    def disc_point(self, index: int) -> np.ndarray:
        """Posterior tip (RAS mm, local frame) of disc ``index``: where SCT puts its disc label."""
        z = self.disc_z[index]
        x, y = self.canal_centre(np.array(z))
        return np.array([float(x), float(y) + self.canal_semi[1] + self.body_gap, z])

    def body_centre_y(self, z: np.ndarray) -> np.ndarray:
        return self.canal_centre(z)[1] + self.canal_semi[1] + self.body_gap + self.body_semi[1]


@dataclass(frozen=True)
class _Grid:
    """A voxel grid with axes R, A, S: size (voxels) and spacing (mm) as (x, y, z), and its centre (RAS mm)."""

    size: tuple[int, int, int]
    spacing: np.ndarray
    centre: np.ndarray

    @property
    def origin(self) -> np.ndarray:
        """Position (mm) of the centre of voxel (0, 0, 0)."""
        return self.centre - (np.asarray(self.size) - 1) / 2.0 * self.spacing

    def centred(self) -> _Grid:
        """The same grid centred at 0: the anatomy's own frame."""
        return _Grid(self.size, self.spacing, np.zeros(3))

    def axis_mm(self, axis: int, supersample: int = 1) -> np.ndarray:
        """Coordinates (mm) of voxel centres along ``axis``, or of ``supersample`` equally spaced points per voxel."""
        offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
        index = (np.arange(self.size[axis])[:, None] + offsets[None, :]).ravel()
        return self.origin[axis] + index * self.spacing[axis]

    def image(self, array: np.ndarray) -> sitk.Image:
        """Wrap a ``[z, y, x]`` array as an RAS-oriented SimpleITK image on this grid."""
        reference = sitk.Image([int(n) for n in self.size], sitk.sitkUInt8)
        matrix = np.eye(4)
        matrix[:3, :3] = np.diag(self.spacing)
        matrix[:3, 3] = self.origin
        set_ijk_to_ras(reference, matrix)
        return array_to_image(array, reference)


def make_phantom(
    seed: int,
    contrast: str = "T2w",
    *,
    fov_mm: tuple[float, float, float] = DEFAULT_FOV_MM,
    spacing: tuple[float, float, float] | None = None,
    start_level: int = 2,
    orientation: str | None = None,
    lesion_count: int | None = None,
) -> Phantom:
    """Generate a synthetic spinal cord MRI and its exact ground truth.

    ``fov_mm`` is the field of view along R-L, A-P, S-I (mm). ``spacing`` is the voxel size along R-L, A-P, S-I (mm);
    ``None`` draws it from the seed: a sagittal (1-3 mm R-L slices) or axial (1-3 mm S-I slices) acquisition with
    0.5-1 mm in-plane voxels. ``start_level`` is the SCT level of the first vertebra whose upper disc is in view
    (2 = C2; the few mm above it are level ``start_level - 1``). ``orientation`` is the voxel storage orientation
    (axcodes such as ``"PSR"``; ``None`` draws one of the 48). ``lesion_count`` fixes the number of lesions
    (``None``: 1-6, or 0 with 5% probability); fewer are made only if they cannot fit apart in the cord.
    """
    if contrast not in CONTRASTS:
        raise ValueError(f"contrast must be one of {', '.join(CONTRASTS)}, got {contrast!r}")
    if not 2 <= start_level <= 20:
        raise ValueError(f"start_level must be an SCT level from 2 (C2) to 20 (L1), got {start_level}")
    if lesion_count is not None and lesion_count < 0:
        raise ValueError(f"lesion_count must be >= 0, got {lesion_count}")
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]
    grid_rng, anatomy_rng, lesion_rng, appearance_rng, orientation_rng = streams

    grid = _draw_grid(grid_rng, np.asarray(fov_mm, dtype=float), spacing)
    anatomy = _draw_anatomy(anatomy_rng, np.asarray(fov_mm, dtype=float), start_level)
    blobs = _draw_lesions(lesion_rng, anatomy, lesion_count)
    code = _draw_orientation(orientation_rng) if orientation is None else orientation

    local = grid.centred()
    labels, factors = _fine_labels(anatomy, blobs, local)
    intensities = _draw_intensities(appearance_rng, contrast, len(blobs))
    image = _block_mean(intensities[labels], factors)
    cord_fraction = _block_mean(labels >= CORD, factors)
    canal_fraction = _block_mean(labels >= FAT, factors)
    lesion_ids = _lesion_ids(labels, factors, len(blobs), cord_fraction >= 0.5)
    image = _acquire(appearance_rng, image, grid, contrast, intensities[CORD])
    cord = (cord_fraction >= 0.5).astype(np.uint8)
    levels = cord * anatomy.level_at(local.axis_mm(2)).astype(np.uint8)[:, None, None]
    discs, disc_points = _disc_points(anatomy, local)

    local_to_ras = grid.centre
    lesions = [_describe_lesion(i + 1, group, anatomy, local_to_ras) for i, group in enumerate(blobs)]
    arrays = {"image": image.astype(np.float32), "lesion": (lesion_ids > 0).astype(np.uint8), "cord": cord,
              "levels": levels, "discs": discs, "canal": (canal_fraction >= 0.5).astype(np.uint8)}
    images = {name: reorient(grid.image(array), code) for name, array in arrays.items()}
    return Phantom(**images, lesions=lesions, contrast=contrast, seed=seed,
                   disc_points_ras={c: tuple(float(v) for v in p + local_to_ras) for c, p in disc_points.items()})


def write_phantom(phantom: Phantom, out_dir: str | os.PathLike[str], stem: str = "phantom") -> dict[str, Path]:
    """Write a phantom as NIfTI files plus a JSON description; return their paths by kind.

    Files: ``<stem>_<contrast>.nii.gz`` (the image; the contrast is its BIDS suffix), ``<stem>_lesion``, ``_cord``,
    ``_levels``, ``_discs`` (``.nii.gz``) and ``<stem>_lesions.json`` (per-lesion centre RAS mm, volume mm3, level;
    disc points; seed and contrast). Every write is atomic (:func:`.io.write_image`).
    """
    out = Path(out_dir)
    paths = {"image": write_image(phantom.image, out / f"{stem}_{phantom.contrast}.nii.gz")}
    for kind in ("lesion", "cord", "levels", "discs"):
        paths[kind] = write_image(getattr(phantom, kind), out / f"{stem}_{kind}.nii.gz")
    description = {
        "generator": f"SpinalLesionSegLib.phantom {__version__}",
        "seed": phantom.seed,
        "contrast": phantom.contrast,
        "spacing_mm": list(phantom.image.GetSpacing()),
        "lesions": [
            {"label": lesion.label, "centre_ras_mm": list(lesion.centre_ras), "volume_mm3": lesion.volume_mm3,
             "level": lesion.level, "level_name": level_name(lesion.level)}
            for lesion in phantom.lesions
        ],
        "disc_points_ras_mm": {str(code): list(point) for code, point in phantom.disc_points_ras.items()},
    }
    json_path = out / f"{stem}_lesions.json"
    tmp = json_path.with_name(f".{json_path.name}.partial")
    tmp.write_text(json.dumps(description, indent=2) + "\n")
    os.replace(tmp, json_path)
    paths["json"] = json_path
    return paths


def level_name(level: int) -> str:
    """SCT level number as a name: 1 -> "C1", 8 -> "T1", 20 -> "L1", 25 -> "S1"."""
    for letter, first, last in _LEVEL_NAMES:
        if first <= level <= last:
            return f"{letter}{level - first + 1}"
    raise ValueError(f"no vertebral level {level}")


# --- random draws ------------------------------------------------------------------------------------------------


def _draw_grid(rng: np.random.Generator, fov: np.ndarray, spacing: tuple[float, float, float] | None) -> _Grid:
    """Voxel grid covering ``fov`` (mm), centred at a random scanner position; spacing drawn unless given."""
    centre = rng.uniform(-60.0, 60.0, size=3)
    drawn = np.full(3, rng.uniform(0.5, 1.0))
    drawn[0 if rng.random() < 0.6 else 2] = rng.uniform(1.0, 3.0)  # sagittal (R-L slices) or axial (S-I slices)
    step = drawn if spacing is None else np.asarray(spacing, dtype=float)
    if step.shape != (3,) or np.any(step <= 0):
        raise ValueError(f"spacing must be three positive lengths in mm, got {spacing}")
    size = np.maximum(1, np.round(fov / step)).astype(int)
    return _Grid(tuple(int(n) for n in size), step, centre)


def _draw_anatomy(rng: np.random.Generator, fov: np.ndarray, start_level: int) -> _Anatomy:
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
    return _Anatomy(
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


def _draw_lesions(rng: np.random.Generator, anatomy: _Anatomy, count: int | None) -> list[list[_Blob]]:
    """Lesions as groups of ellipsoids (1 blob, or 2-3 for irregular ones), well apart and centred in the cord."""
    if count is None:
        count = 0 if rng.random() < 0.05 else int(rng.integers(1, MAX_RANDOM_LESIONS + 1))
    lesions: list[list[_Blob]] = []
    boxes: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(50 * count):
        if len(lesions) == count:
            break
        blobs = _draw_lesion(rng, anatomy)
        low = np.min([b.centre - b.half_extent() for b in blobs], axis=0)
        high = np.max([b.centre + b.half_extent() for b in blobs], axis=0)
        inside_fov = abs(low[2]) < anatomy.fov[2] / 2.0 - 2.0 and abs(high[2]) < anatomy.fov[2] / 2.0 - 2.0
        apart = all(np.any((low > h + _LESION_GAP_MM) | (high < lo - _LESION_GAP_MM)) for lo, h in boxes)
        if inside_fov and apart:
            lesions.append(blobs)
            boxes.append((low, high))
    return lesions


def _draw_lesion(rng: np.random.Generator, anatomy: _Anatomy) -> list[_Blob]:
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
        blobs.append(_Blob(centre + shift, axes, semi))
    return blobs


def _draw_orientation(rng: np.random.Generator) -> str:
    """One of the 48 voxel orientations (axis permutation and flips), as axcodes."""
    letters = [("R", "L"), ("A", "P"), ("S", "I")]
    return "".join(letters[axis][int(rng.integers(0, 2))] for axis in rng.permutation(3))


def _draw_intensities(rng: np.random.Generator, contrast: str, n_lesions: int) -> np.ndarray:
    """Intensity per label: tissue means jittered by +-10%, then one lesion-to-cord ratio per lesion."""
    tissues = np.array(_INTENSITY[contrast]) * rng.uniform(0.9, 1.1, size=len(_TISSUES))
    ratios = rng.uniform(*_LESION_RATIO[contrast in T2_LIKE], size=n_lesions)
    return np.concatenate([tissues, tissues[CORD] * ratios]).astype(np.float32)


# --- rasterisation -----------------------------------------------------------------------------------------------


def _fine_labels(anatomy: _Anatomy, lesions: list[list[_Blob]], local: _Grid) -> tuple[np.ndarray, tuple[int, ...]]:
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
    labels[_in_ellipse(x, y, canal_x, airway_y, np.array([7.0, 4.0]))] = AIR
    arch = _in_ellipse(x, y, canal_x, canal_y, anatomy.canal_semi + 3.0) & (y < canal_y)
    spinous = (np.abs(x - canal_x) < 2.5) & (y < canal_y) & (y > canal_y - anatomy.canal_semi[1] - 14.0)
    labels[(arch | spinous) & ~disc] = BONE
    labels[body & ~disc] = BONE
    labels[body & disc] = DISC
    labels[_in_ellipse(x, y, canal_x, canal_y, anatomy.canal_semi)] = FAT
    labels[_in_ellipse(x, y, canal_x, canal_y, anatomy.csf_semi)] = CSF
    labels[anatomy.in_cord(x, y, z)] = CORD
    for i, blobs in enumerate(lesions):
        _paint_lesion(labels, (xs, ys, zs), blobs, LESION0 + i)
    return labels, factors


def _paint_lesion(labels: np.ndarray, axes_mm: tuple[np.ndarray, ...], blobs: list[_Blob], value: int) -> None:
    """Label the points of ``labels`` inside the lesion and the cord, looking only inside the lesion's box."""
    low = np.min([b.centre - b.half_extent() for b in blobs], axis=0)
    high = np.max([b.centre + b.half_extent() for b in blobs], axis=0)
    window = [slice(*np.searchsorted(axes_mm[a], [low[a], high[a]])) for a in range(3)]
    xs, ys, zs = (axes_mm[a][window[a]] for a in range(3))
    region = labels[window[2], window[1], window[0]]
    inside = _union(blobs, xs[None, None, :], ys[None, :, None], zs[:, None, None])
    region[inside & (region == CORD)] = value


def _union(blobs: list[_Blob], x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    inside = blobs[0].contains(x, y, z)
    for blob in blobs[1:]:
        inside = inside | blob.contains(x, y, z)
    return inside


def _in_ellipse(x: np.ndarray, y: np.ndarray, cx: np.ndarray, cy: np.ndarray, semi: np.ndarray) -> np.ndarray:
    """Whether points lie inside the axis-aligned ellipse of centre (cx, cy) and semi-axes ``semi`` (mm), computed
    in the points' precision (float32 on the supersampled grid, which halves the time)."""
    dtype = np.result_type(x, y)
    dx = (x - np.asarray(cx, dtype)) / dtype.type(semi[0])
    dy = (y - np.asarray(cy, dtype)) / dtype.type(semi[1])
    return dx * dx + dy * dy <= 1.0


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


def _disc_points(anatomy: _Anatomy, local: _Grid) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Single-voxel SCT disc labels on the grid ``local`` (``[z, y, x]`` uint8) and the in-view disc points (mm,
    anatomy's frame)."""
    discs = np.zeros(local.size[::-1], dtype=np.uint8)
    points = {}
    for index in range(anatomy.disc_z.size):
        point = anatomy.disc_point(index)
        ijk = np.round((point - local.origin) / local.spacing).astype(int)
        if np.all((ijk >= 0) & (ijk < np.asarray(local.size))):
            code = anatomy.first_disc_code + index
            discs[ijk[2], ijk[1], ijk[0]] = code
            points[code] = point
    return discs, points


# --- acquisition -------------------------------------------------------------------------------------------------


def _acquire(rng: np.random.Generator, image: np.ndarray, grid: _Grid, contrast: str, cord_level: float) -> np.ndarray:
    """Scanner effects on the ideal partial-volume image: point-spread blur, bias field, noise (Gaussian on PSIR,
    whose real-valued reconstruction keeps the sign; Rician on magnitude images)."""
    from scipy.ndimage import gaussian_filter  # kept out of module import: the core imports numpy and SimpleITK only

    image = gaussian_filter(image, sigma=0.4, mode="nearest") * _bias_field(rng, grid)
    sigma = rng.uniform(0.03, 0.07) * cord_level
    real = image + rng.normal(0.0, sigma, size=image.shape).astype(np.float32)
    if contrast == "PSIR":
        return real
    imaginary = rng.normal(0.0, sigma, size=image.shape).astype(np.float32)
    return np.sqrt(real * real + imaginary * imaginary)


def _bias_field(rng: np.random.Generator, grid: _Grid) -> np.ndarray:
    """Smooth multiplicative field on the grid, ``[z, y, x]``: brighter posteriorly (spine coil) plus a gentle
    random quadratic; roughly within +-30%."""
    x, y, z = (grid.axis_mm(a) - grid.axis_mm(a).mean() for a in range(3))
    half = np.asarray(grid.size) * grid.spacing / 2.0
    u, v, w = x / half[0], y / half[1], z / half[2]
    coefficients = rng.uniform(-0.1, 0.1, size=4)
    posterior = -rng.uniform(0.1, 0.25)
    log_field = (posterior * v[None, :, None] + coefficients[0] * u[None, None, :] + coefficients[1] * w[:, None, None]
                 + coefficients[2] * (w**2)[:, None, None] + coefficients[3] * (u**2)[None, None, :])
    return np.exp(log_field).astype(np.float32)


def _describe_lesion(label: int, blobs: list[_Blob], anatomy: _Anatomy, local_to_ras: np.ndarray) -> PhantomLesion:
    """Exact-ish volume (mm3) and centroid of a lesion clipped to the cord, on a fine grid of its own box
    (about 60 points per axis), so the truth does not depend on the image grid."""
    low = np.min([b.centre - b.half_extent() for b in blobs], axis=0)
    high = np.max([b.centre + b.half_extent() for b in blobs], axis=0)
    step = float(np.prod(high - low)) ** (1.0 / 3.0) / 60.0
    xs, ys, zs = (np.arange(low[a] + step / 2.0, high[a], step) for a in range(3))
    x, y, z = xs[None, None, :], ys[None, :, None], zs[:, None, None]
    inside = _union(blobs, x, y, z) & anatomy.in_cord(x, y, z)
    k, j, i = np.nonzero(inside)
    centre = np.array([xs[i].mean(), ys[j].mean(), zs[k].mean()])
    return PhantomLesion(label, tuple(float(c) for c in centre + local_to_ras), float(inside.sum() * step**3),
                         int(anatomy.level_at(np.array(centre[2]))))
