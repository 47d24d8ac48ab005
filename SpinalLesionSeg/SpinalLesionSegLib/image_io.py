"""Read and write NIfTI and NRRD images (and read DICOM series) with their geometry intact, and convert images to
and from numpy.

Geometry (origin, spacing, direction) is carried by SimpleITK images end to end; arrays never travel without the
image they came from. Writes are atomic (temporary file in the destination folder, then rename), so a killed
process never leaves a half-written output under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .dicom_series import check_geometry, choose_series, is_dicom_folder, read_series
from .errors import InputError
from .geometry import voxel_box_ras
from .image_header import check_image_file
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


def input_stem(path: str | os.PathLike[str], series_uids: Sequence[str] = ()) -> str:
    """The name outputs made from an input start with: the file name without its suffix, or for a DICOM folder
    the chosen series' readable name (:meth:`.dicom_series.DicomSeries.stem`)."""
    if is_dicom_folder(path):
        return choose_series(path, series_uids).stem()
    return split_image_suffix(path)[0]


def input_digest(path: str | os.PathLike[str], series_uids: Sequence[str] = ()) -> str:
    """The sha256 of an input file, or of a DICOM series' files in slice order: what sidecars record and batch
    re-runs compare."""
    if is_dicom_folder(path):
        return check_geometry(choose_series(path, series_uids)).digest()
    return sha256_file(path)


def read_image(path: str | os.PathLike[str], series_uids: Sequence[str] = ()) -> sitk.Image:
    """Read a NIfTI or NRRD file, or a DICOM series from a folder, and check it is a usable 3D scalar volume.

    The header and the voxel data are checked first (:func:`.image_header.check_image_file`: declared size,
    spacing and orientation, truncated or corrupt data, NaN voxels that SimpleITK would read as 0), then the image
    SimpleITK reads (:func:`.validation.validate_image`). Raises InputError, naming the file, for a missing, empty,
    unreadable, truncated, oversized, 2D/4D, vector, non-finite or badly-spaced image. A folder is read as the
    DICOM series ``series_uids`` names, or its only one (:func:`.dicom_series.read_series` and its checks).
    """
    if is_dicom_folder(path):
        image = read_series(path, series_uids)[0]
        validate_image(image, path)
        return image
    p = check_input_file(path)
    split_image_suffix(p)
    try:
        check_image_file(p)
    except OSError as error:  # unreadable (permissions, I/O error): a problem with the input, not a bug
        raise InputError(p, f"cannot be read ({error.strerror or error})") from None
    try:
        with _itk_warnings_muted():
            image = sitk.ReadImage(str(p))
    except RuntimeError as error:
        raise InputError(p, f"cannot be read as an image ({_itk_reason(error)})") from None
    validate_image(image, p)
    return image


@contextlib.contextmanager
def _itk_warnings_muted() -> Iterator[None]:
    """Silence ITK's multi-line warnings on stderr while reading: the checks before the read refuse what they
    warn about, and a command's error output must stay one line per problem."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def temporary_beside(path: str | os.PathLike[str], suffix: str = ".partial") -> Path:
    """A new, empty, hidden temporary file beside ``path`` (same folder, so renaming it onto ``path`` is atomic),
    named ``.<name>.<pid>.<random><suffix>``: the writer's pid lets a clean-up spare a live writer's temporaries
    (:func:`remove_stale_temporaries`); ``suffix`` lets writers that pick a format by extension see the right one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    return Path(tmp_name)


def move_into_place(temporary: Path, path: str | os.PathLike[str]) -> None:
    """Rename a finished temporary onto ``path`` (atomic), with ordinary permissions (0666 less the umask), not
    mkstemp's private 0600."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
    os.replace(temporary, path)


@contextlib.contextmanager
def atomic_destination(path: str | os.PathLike[str], suffix: str = ".partial") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (:func:`temporary_beside`); when the block succeeds, rename it onto
    ``path``. On failure it is deleted."""
    tmp = temporary_beside(path, suffix)
    try:
        yield tmp
        move_into_place(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


#: Temporaries older than this (s) are removed even when their writer cannot be asked whether it lives (Windows).
STALE_TEMPORARY_AGE_S = 3600.0


def remove_stale_temporaries(path: str | os.PathLike[str]) -> None:
    """Remove the hidden temporaries :func:`temporary_beside` left beside ``path`` when its writer was killed,
    never those of a writer still running (a concurrent run into the same folder)."""
    target = Path(path)
    for stale in target.parent.glob(f".{target.name}.*.partial*"):
        pid = stale.name[len(target.name) + 2:].split(".")[0]
        if pid.isdigit() and writer_alive(int(pid), stale):
            continue
        stale.unlink(missing_ok=True)


def writer_alive(pid: int, evidence: Path) -> bool:
    """Whether process ``pid``, which wrote ``evidence``, still runs (so its files must be left alone). Where a
    process cannot be asked without harming it (Windows), a file younger than STALE_TEMPORARY_AGE_S counts as live."""
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill would terminate the process there: judge by age instead
        try:
            return time.time() - evidence.stat().st_mtime < STALE_TEMPORARY_AGE_S
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def write_image(image: sitk.Image, path: str | os.PathLike[str], *, compress: bool = True) -> Path:
    """Write ``image`` to ``path`` atomically (see :func:`atomic_destination`) and return the path.

    Readers see either nothing or the complete file, even if the process is killed mid-write.
    """
    p = Path(path)
    _, suffix = split_image_suffix(p)
    with atomic_destination(p, suffix=f".partial{suffix}") as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
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


def resample_to_grid(image: sitk.Image, reference: sitk.Image, source: str | os.PathLike[str] | None,
                     reference_name: str, *, allow: bool) -> sitk.Image:
    """Return ``image`` on ``reference``'s voxel grid (nearest neighbour, so labels and masks keep their values).

    Unchanged when the grids already match. Otherwise resampled only when the user asked (``allow``: the
    ``--resample`` option; in Slicer, choosing a node on another grid, which Slicer itself shows resampled), with a
    logged warning naming both images: masks and level maps are meant to share their image's grid, and a
    different one is usually a mix-up. InputError when not allowed, and when the two images do not overlap
    physically at all, since then no voxel could be compared.
    """
    if same_grid(image, reference):
        return image
    if not _boxes_overlap(image, reference):
        raise InputError(source, f"does not overlap {reference_name} physically (different position in the "
                                 "scanner); it cannot belong to the same scan")
    if not allow:
        raise InputError(source, f"is on another voxel grid than {reference_name} (size {list(image.GetSize())} "
                                 f"vs {list(reference.GetSize())}, spacing {_mm(image.GetSpacing())} vs "
                                 f"{_mm(reference.GetSpacing())} mm); pass --resample to resample it onto that grid "
                                 "(nearest neighbour), or give the file on the same grid")
    logging.getLogger(__name__).warning(
        "%s: on a different voxel grid from %s; resampled onto it (nearest neighbour)", source, reference_name)
    return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, image.GetPixelID())


def _mm(values: tuple[float, ...]) -> str:
    return "x".join(f"{v:g}" for v in values)


def _boxes_overlap(a: sitk.Image, b: sitk.Image) -> bool:
    """True when the physical bounding boxes (voxel edges, RAS mm) of two images intersect with positive volume."""
    (a_low, a_high), (b_low, b_high) = voxel_box_ras(a), voxel_box_ras(b)
    return bool(np.all(np.minimum(a_high, b_high) > np.maximum(a_low, b_low)))


def write_text(text: str, path: str | os.PathLike[str]) -> Path:
    """Write a text file (CSV, JSON) atomically in UTF-8, like :func:`write_image`; return the path."""
    return write_bytes(text.encode("utf-8"), path)


def write_bytes(data: bytes, path: str | os.PathLike[str]) -> Path:
    """Write a file (e.g. a PNG plot) atomically (see :func:`atomic_destination`); return the path."""
    p = Path(path)
    with atomic_destination(p) as tmp:
        tmp.write_bytes(data)
    return p


def sha256_file(path: str | os.PathLike[str], on_bytes: Callable[[int], None] | None = None) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (checkpoints are hundreds of MB); ``on_bytes(n)`` after each
    chunk lets callers show progress. Recorded so that every output can be traced to exactly its inputs."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    return digest.hexdigest()


def _itk_reason(error: RuntimeError) -> str:
    """The informative part of a multi-line SimpleITK exception message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = next((line.split("ERROR:", 1)[1] for line in reversed(lines) if "ERROR:" in line),
                  lines[-1] if lines else "unknown error")
    # Drop ITK object addresses such as "Image(0x55a4...): ", which mean nothing to a user.
    return re.sub(r"\w+\(0x[0-9a-fA-F]+\):\s*", "", reason).strip()
