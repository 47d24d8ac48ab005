"""Checks that every entry point (CLI, worker, Slicer logic) applies to an input image.

A lesion model needs a 3D scalar volume with finite intensities and a plausible voxel size. Anything else gets an
:class:`~SpinalLesionSegLib.errors.InputError` naming the file and the problem in one line, before any model runs,
so that a user never waits minutes for a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import InputError

#: Smallest plausible voxel size in mm. Below it the file is almost certainly in metres (0.001 for 1 mm).
MIN_SPACING_MM = 0.01
#: Largest plausible voxel size in mm; spinal MRI slices are at most ~10 mm thick.
MAX_SPACING_MM = 50.0
#: Tolerance on |det(direction)| - 1: a direction matrix must be a rotation or a reflection.
DIRECTION_TOLERANCE = 1e-3


def check_input_file(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a Path if it names a non-empty regular file; raise InputError otherwise."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "file not found")
    if p.is_dir():
        raise InputError(p, "is a folder, not an image file")
    if p.stat().st_size == 0:
        raise InputError(p, "file is empty (0 bytes)")
    return p


def validate_image(image: sitk.Image, source: str | os.PathLike[str] | None) -> None:
    """Raise InputError unless ``image`` is a 3D scalar volume with finite voxels and sane geometry.

    ``source`` names the image in the message (a file path, or a Slicer node name).
    """
    dim = image.GetDimension()
    size = image.GetSize()
    if dim != 3:
        shape = "x".join(str(s) for s in size)
        raise InputError(source, f"is a {dim}D image ({shape} voxels); a 3D volume is required")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            source,
            f"has {image.GetNumberOfComponentsPerPixel()} components per voxel (colour or vector image); "
            "a single-channel (scalar) 3D volume is required",
        )
    if min(size) < 2:
        shape = "x".join(str(s) for s in size)
        raise InputError(source, f"has a single slice ({shape} voxels); a 3D volume is required")

    spacing = np.array(image.GetSpacing(), dtype=float)
    spacing_text = " x ".join(f"{s:g}" for s in spacing)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(source, f"has invalid voxel spacing ({spacing_text} mm); spacing must be positive")
    if np.any(spacing < MIN_SPACING_MM):
        raise InputError(
            source,
            f"has implausibly small voxel spacing ({spacing_text} mm; minimum {MIN_SPACING_MM} mm): "
            "is the header in metres instead of millimetres?",
        )
    if np.any(spacing > MAX_SPACING_MM):
        raise InputError(
            source, f"has implausibly large voxel spacing ({spacing_text} mm; maximum {MAX_SPACING_MM} mm)"
        )

    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    origin = np.array(image.GetOrigin(), dtype=float)
    if not np.all(np.isfinite(direction)) or not np.all(np.isfinite(origin)):
        raise InputError(source, "has a non-finite origin or direction in its header")
    if abs(abs(np.linalg.det(direction)) - 1.0) > DIRECTION_TOLERANCE:
        raise InputError(source, "has a degenerate direction matrix in its header (axes are not orthonormal)")

    values = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(values.dtype, np.floating):
        n_nan = int(np.count_nonzero(np.isnan(values)))
        if n_nan:
            raise InputError(source, f"contains {n_nan} NaN voxel(s); intensities must be finite")
        n_inf = int(np.count_nonzero(np.isinf(values)))
        if n_inf:
            raise InputError(source, f"contains {n_inf} infinite voxel(s); intensities must be finite")
