"""Read and write NIfTI and NRRD images with their geometry intact, and convert images to and from numpy.

Geometry (origin, spacing, direction) is carried by SimpleITK images end to end; arrays never travel without the
image they came from. Writes are atomic (temporary file in the destination folder, then rename), so a killed
process never leaves a half-written output under the final name.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .validation import check_input_file, validate_image

#: File types we read and write, longest suffix first so that ``.nii.gz`` wins over ``.gz``.
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr")

#: Tolerance (mm, and unitless for direction cosines) under which two grids count as identical.
GRID_TOLERANCE = 1e-4


def split_image_suffix(path: str | os.PathLike[str]) -> tuple[str, str]:
    """Split a file name into (stem, suffix): ``"a/t2.nii.gz"`` -> ``("t2", ".nii.gz")``.

    Raises InputError for file types other than NIfTI and NRRD.
    """
    name = Path(path).name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], name[-len(suffix):]
    raise InputError(path, f"unsupported file type; expected one of {', '.join(IMAGE_SUFFIXES)}")


def read_image(path: str | os.PathLike[str]) -> sitk.Image:
    """Read a NIfTI or NRRD file and check it is a usable 3D scalar volume (see :mod:`.validation`).

    Raises InputError, naming the file, for a missing, empty, unreadable, 2D/4D, vector, non-finite or
    badly-spaced image.
    """
    p = check_input_file(path)
    split_image_suffix(p)
    try:
        image = sitk.ReadImage(str(p))
    except RuntimeError as error:
        raise InputError(p, f"cannot be read as an image ({_itk_reason(error)})") from None
    validate_image(image, p)
    return image


def write_image(image: sitk.Image, path: str | os.PathLike[str], *, compress: bool = True) -> Path:
    """Write ``image`` to ``path`` atomically and return the path.

    The file is first written under a temporary name in the destination folder (same file system) and then
    renamed over ``path``, so readers see either nothing or the complete file. Parent folders are created.
    """
    p = Path(path)
    _, suffix = split_image_suffix(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=f".partial{suffix}", dir=p.parent)
    os.close(fd)
    try:
        sitk.WriteImage(image, tmp_name, useCompression=compress)
        os.replace(tmp_name, p)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return p


def image_to_array(image: sitk.Image) -> np.ndarray:
    """Voxel values as a numpy array indexed ``[k, j, i]`` (a copy; the image keeps the geometry)."""
    return sitk.GetArrayFromImage(image)


def array_to_image(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Wrap a ``[k, j, i]`` array as an image on ``reference``'s grid (origin, spacing, direction copied).

    Raises ValueError if the array shape is not the reference's voxel grid.
    """
    expected = tuple(reversed(reference.GetSize()))
    if tuple(array.shape) != expected:
        raise ValueError(f"array shape {array.shape} does not match the reference grid {expected} (k, j, i)")
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def same_grid(a: sitk.Image, b: sitk.Image, tolerance: float = GRID_TOLERANCE) -> bool:
    """True when two images share size, and origin/spacing/direction within ``tolerance``."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tolerance, rtol=0)
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tolerance, rtol=0)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tolerance, rtol=0)
    )


def _itk_reason(error: RuntimeError) -> str:
    """The informative part of a multi-line SimpleITK exception message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = next((line.split("ERROR:", 1)[1] for line in reversed(lines) if "ERROR:" in line),
                  lines[-1] if lines else "unknown error")
    # Drop ITK object addresses such as "Image(0x55a4...): ", which mean nothing to a user.
    return re.sub(r"\w+\(0x[0-9a-fA-F]+\):\s*", "", reason).strip()
