"""Synthetic spinal cord MRI with exact ground truth, for tests, demos and training the demo model.

A phantom is a cervical/upper-thoracic spine built in continuous millimetres (:mod:`.anatomy`): a curved spinal
cord (elliptical cross-section) inside CSF inside the bony canal, vertebral bodies with discs in front of it,
posterior arches and an airway, and multiple sclerosis lesions (ellipsoids elongated along the cord, some irregular
unions of blobs) that lie entirely inside the cord. Shapes are evaluated at supersampled points of the voxel grid
and averaged (:mod:`.render`), so anisotropic grids show the same physical object with faithful partial volume; the
image then gets a point-spread blur, a smooth multiplicative bias field (brighter posteriorly, as with a spine coil)
and Rician noise (:mod:`.appearance`).

The volume is built on a grid whose voxel axes are R, A, S and then reoriented with :func:`..geometry.reorient`
(voxel permutation and flips only), so the image and every ground-truth map share one grid exactly whatever the
random storage orientation. Ground truth follows SCT's conventions (``models-and-conventions.md`` section 3): the
labelled cord holds the vertebral level (C1=1 ... C7=7, T1=8 ...), and each disc is a single voxel at its posterior
tip whose value names the vertebra below it (3 = C2/C3 disc); the cord between disc n and disc n+1 is level n.

Random draws come from independent streams per aspect (grid, anatomy, lesions, appearance, orientation), so the
same seed gives the same anatomy and lesions whatever spacing, orientation, contrast or size is requested.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import __version__
from ..analysis.levels import level_name
from ..contrasts import CONTRASTS
from ..defaults import PHANTOM_CONTRAST
from ..geometry import reorient
from ..image_io import write_image, write_text
from .anatomy import CORD, MAX_RANDOM_LESIONS, draw_anatomy, draw_lesions, lesion_truth
from .appearance import T2_LIKE, acquire, draw_intensities
from .render import draw_grid, draw_orientation, rasterise

__all__ = ["CONTRASTS", "DEFAULT_FOV_MM", "MAX_RANDOM_LESIONS", "T2_LIKE", "Phantom", "PhantomLesion",
           "make_phantom", "write_phantom"]

#: Default field of view (mm) along R-L, A-P, S-I: about 48 x 64 x 96 voxels at 1 mm, generated in well under 1 s.
DEFAULT_FOV_MM: tuple[float, float, float] = (48.0, 64.0, 96.0)


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
    fat), uint8 0/1. ``contrast`` is one of :data:`CONTRASTS` (BIDS suffixes, as the lesion models name them).
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


def make_phantom(
    seed: int,
    contrast: str = PHANTOM_CONTRAST,
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
    _check_options(contrast, start_level, lesion_count)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]
    grid_rng, anatomy_rng, lesion_rng, appearance_rng, orientation_rng = streams
    fov = np.asarray(fov_mm, dtype=float)
    grid = draw_grid(grid_rng, fov, spacing)
    anatomy = draw_anatomy(anatomy_rng, fov, start_level)
    blobs = draw_lesions(lesion_rng, anatomy, lesion_count)
    code = draw_orientation(orientation_rng) if orientation is None else orientation

    intensities = draw_intensities(appearance_rng, contrast, len(blobs))
    ideal, truth, disc_points = rasterise(anatomy, blobs, grid.centred(), intensities)
    image = acquire(appearance_rng, ideal, grid, contrast, intensities[CORD])
    arrays = {"image": image.astype(np.float32), **truth}
    images = {name: reorient(grid.image(array), code) for name, array in arrays.items()}

    local_to_ras = grid.centre  # the anatomy's frame is the grid's, centred at 0
    lesions = []
    for label, group in enumerate(blobs, start=1):
        centre, volume = lesion_truth(group, anatomy)
        lesions.append(PhantomLesion(label, tuple(float(c) for c in centre + local_to_ras), volume,
                                     int(anatomy.level_at(np.array(centre[2])))))
    return Phantom(**images, lesions=lesions, contrast=contrast, seed=seed,
                   disc_points_ras={c: tuple(float(v) for v in p + local_to_ras) for c, p in disc_points.items()})


def _check_options(contrast: str, start_level: int, lesion_count: int | None) -> None:
    """ValueError for an option :func:`make_phantom` cannot honour."""
    if contrast not in CONTRASTS:
        raise ValueError(f"contrast must be one of {', '.join(CONTRASTS)}, got {contrast!r}")
    if not 2 <= start_level <= 20:
        raise ValueError(f"start_level must be an SCT level from 2 (C2) to 20 (L1), got {start_level}")
    if lesion_count is not None and lesion_count < 0:
        raise ValueError(f"lesion_count must be >= 0, got {lesion_count}")


def write_phantom(phantom: Phantom, out_dir: str | os.PathLike[str], stem: str = "phantom") -> dict[str, Path]:
    """Write a phantom as NIfTI files plus a JSON description; return their paths by kind.

    Files: ``<stem>_<contrast>.nii.gz`` (the image; the contrast is its BIDS suffix), ``<stem>_lesion``, ``_cord``,
    ``_levels``, ``_discs`` (``.nii.gz``) and ``<stem>_lesions.json`` (per-lesion centre RAS mm, volume mm3, level;
    disc points; seed and contrast). Every write is atomic (:func:`..image_io.write_image`, ``write_text``).
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
    paths["json"] = write_text(json.dumps(description, indent=2) + "\n", out / f"{stem}_lesions.json")
    return paths
