"""Checks that every entry point (CLI, worker, Slicer logic) applies to an input image.

A lesion model needs a 3D scalar volume with finite intensities and a plausible voxel size. Anything else gets an
:class:`~SpinalLesionSegLib.errors.InputError` naming the file and the problem in one line, before any model runs,
so that a user never waits minutes for a traceback.

Each rule lives here once. :func:`validate_image` applies them to an image in memory; :mod:`.image_header` applies
the same functions to what a file's header declares, before SimpleITK allocates or silently "repairs" anything
(ITK turns a zero voxel size into 1 mm, zero-fills a truncated file, reads NaN voxels of NIfTI files as 0).
:func:`check_voxel_stream` checks the voxel data of a file itself: complete, intact and finite.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import SimpleITK as sitk

from .errors import InputError

#: Smallest plausible voxel size in mm. Below it the file is almost certainly in metres (0.001 for 1 mm).
MIN_SPACING_MM = 0.01
#: Largest plausible voxel size in mm; spinal MRI slices are at most ~10 mm thick.
MAX_SPACING_MM = 50.0
#: Tolerance on the direction matrix D: |D^T D - I| (every entry) must stay below it, i.e. the voxel axes are
#: orthonormal (a rotation or a reflection). Headers store directions in float32 (about 1e-7).
DIRECTION_TOLERANCE = 1e-3
#: Most voxels along one axis. The largest clinical and research MRI matrices are 1024; 4096 leaves room for
#: upsampled data while refusing headers that declare absurd sizes (a damaged dim field) before any allocation.
MAX_AXIS_VOXELS = 4096
#: Most voxels in one image, all volumes and components together: 2^28 (268 million) is 1 GiB as float32 and
#: about 50 times a whole-spine 0.5 mm scan. Larger images would exhaust memory in the model anyway.
MAX_VOXELS = 2**28
#: Bytes read (or decompressed) at a time when checking voxel data: memory stays bounded for any file size.
CHUNK_BYTES = 1 << 20
#: The first two bytes of every gzip stream.
GZIP_MAGIC = b"\x1f\x8b"


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


def _shape_text(size: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in size)


def check_allocation(size: Sequence[int], source: str | os.PathLike[str] | None) -> None:
    """Refuse a voxel grid that is empty or too large to allocate (see :data:`MAX_VOXELS`).

    Applied to a header's sizes before anything is read: a 50 KB file can declare 1000^3 voxels, and SimpleITK
    would allocate all of them (2 GB) before noticing that the data is missing.
    """
    if any(int(s) < 1 for s in size):
        raise InputError(source, f"declares an empty or negative image size ({_shape_text(size)} voxels)")
    total = int(np.prod([int(s) for s in size], dtype=object))
    if max(int(s) for s in size) > MAX_AXIS_VOXELS or total > MAX_VOXELS:
        raise InputError(source, f"declares {_shape_text(size)} voxels ({total:,} in all); at most "
                                 f"{MAX_AXIS_VOXELS} per axis and {MAX_VOXELS:,} in all are supported")


def check_shape(size: Sequence[int], source: str | os.PathLike[str] | None) -> None:
    """Refuse anything but a 3D grid with at least two voxels along every axis (2D, one slice, 4D series)."""
    if len(size) != 3:
        raise InputError(source, f"is a {len(size)}D image ({_shape_text(size)} voxels); a 3D volume is required")
    if min(size) < 2:
        raise InputError(source, f"has a single slice ({_shape_text(size)} voxels); a 3D volume is required")


def check_spacing(spacing: Sequence[float], source: str | os.PathLike[str] | None) -> None:
    """Refuse a voxel size that is not positive and finite, or implausible for MRI in millimetres."""
    values = np.array(spacing, dtype=float)
    text = " x ".join(f"{s:g}" for s in values)
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise InputError(source, f"has invalid voxel spacing ({text} mm); spacing must be positive")
    if np.any(values < MIN_SPACING_MM):
        raise InputError(source, f"has implausibly small voxel spacing ({text} mm; minimum {MIN_SPACING_MM} mm): "
                                 "is the header in metres instead of millimetres?")
    if np.any(values > MAX_SPACING_MM):
        raise InputError(source, f"has implausibly large voxel spacing ({text} mm; maximum {MAX_SPACING_MM} mm)")


def check_orientation(direction: np.ndarray, origin: Sequence[float],
                      source: str | os.PathLike[str] | None) -> None:
    """Refuse a non-finite origin or direction, and voxel axes that are not orthonormal (sheared or singular).

    ``direction`` is 3x3 with one unit column per voxel axis. Lesion volumes and distances assume right angles.
    """
    direction = np.asarray(direction, dtype=float)
    if not np.all(np.isfinite(direction)) or not np.all(np.isfinite(np.asarray(origin, dtype=float))):
        raise InputError(source, "has a non-finite origin or direction in its header")
    if np.max(np.abs(direction.T @ direction - np.eye(3))) > DIRECTION_TOLERANCE:
        raise InputError(source, "has a degenerate direction matrix in its header (axes are not orthonormal)")


def refuse_non_finite(n_nan: int, n_inf: int, source: str | os.PathLike[str] | None) -> None:
    """Refuse NaN or infinite voxels: a model would silently turn them into garbage or zeros."""
    if n_nan:
        raise InputError(source, f"contains {n_nan} NaN voxel(s); intensities must be finite")
    if n_inf:
        raise InputError(source, f"contains {n_inf} infinite voxel(s); intensities must be finite")


def validate_image(image: sitk.Image, source: str | os.PathLike[str] | None) -> None:
    """Raise InputError unless ``image`` is a 3D scalar volume with finite voxels and sane geometry.

    ``source`` names the image in the message (a file path, or a Slicer node name).
    """
    size = image.GetSize()
    check_allocation(size, source)
    if image.GetDimension() == 3 and image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            source,
            f"has {image.GetNumberOfComponentsPerPixel()} components per voxel (colour or vector image); "
            "a single-channel (scalar) 3D volume is required",
        )
    check_shape(size, source)
    if image.GetPixelID() in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
        raise InputError(source, "has complex-valued voxels; a real-valued (scalar) 3D volume is required")
    check_spacing(image.GetSpacing(), source)
    check_orientation(np.array(image.GetDirection(), dtype=float).reshape(3, 3), image.GetOrigin(), source)
    values = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(values.dtype, np.floating):
        refuse_non_finite(int(np.count_nonzero(np.isnan(values))), int(np.count_nonzero(np.isinf(values))), source)


@dataclass(frozen=True)
class VoxelData:
    """Where a file's voxels are and what they are, as its header declares.

    ``start`` is the byte of ``path`` where the (possibly gzip-compressed) data stream begins; ``offset`` the
    first voxel byte within the decompressed stream; ``nbytes`` how many voxel bytes the header promises.
    ``scan`` is set when the reader would hide NaN/Inf (SimpleITK reads them as 0 in NIfTI files), so that
    :func:`check_voxel_stream` must look for them in the raw values of type ``dtype``. ``gzip`` says whether the
    header declares compressed data (NRRD's ``encoding``); None when only the content tells (NIfTI, whose
    ``.nii.gz`` ITK reads whether or not it is compressed).
    """

    path: Path
    start: int
    offset: int
    nbytes: int
    dtype: np.dtype
    scan: bool = False
    gzip: bool | None = None


def file_chunks(handle: BinaryIO, source: str | os.PathLike[str] | None) -> Iterator[bytes]:
    """The bytes of ``handle`` from its position on, decompressed when they are a gzip stream.

    Gzip data is checked as zlib's reader (used by ITK) reads it: member after member, each ending with its CRC
    and length, bytes after the last member ignored; a stream that stops early or fails its CRC is refused here,
    where ITK would zero-fill the missing voxels. Data that is not gzip passes unchanged (ITK reads it too).
    """
    data = handle.read(CHUNK_BYTES)
    if data[:2] != GZIP_MAGIC:
        while data:
            yield data
            data = handle.read(CHUNK_BYTES)
        return
    yield from _gunzip(handle, data, source)


def _gunzip(handle: BinaryIO, data: bytes, source: str | os.PathLike[str] | None) -> Iterator[bytes]:
    """Decompress gzip members from ``data`` and then ``handle``, in chunks of at most :data:`CHUNK_BYTES`."""
    stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
    while True:
        try:
            out = stream.decompress(data, CHUNK_BYTES)
            if not stream.eof and not stream.unconsumed_tail:
                data = handle.read(CHUNK_BYTES)
                out += b"" if data else stream.flush()
            else:
                data = stream.unconsumed_tail
        except zlib.error as error:
            raise InputError(source, f"has corrupt compressed data ({error})") from None
        if out:
            yield out
        if stream.eof:
            data = stream.unused_data + handle.read(max(0, 2 - len(stream.unused_data)))
            if data[:2] != GZIP_MAGIC:  # end of the last member; zlib ignores what follows
                return
            stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif not data:
            raise InputError(source, "is truncated: its compressed data ends before the end of the gzip stream")


def check_voxel_stream(chunks: Iterable[bytes], voxels: VoxelData, source: str | os.PathLike[str] | None) -> None:
    """Read ``chunks`` (a file's data stream, see :func:`file_chunks`) to the end and refuse missing voxel bytes
    (a truncated file, which ITK would zero-fill) and, when ``voxels.scan``, NaN or infinite values."""
    end = voxels.offset + voxels.nbytes
    position, n_nan, n_inf, carry = 0, 0, 0, b""
    for chunk in chunks:
        if voxels.scan and position < end and position + len(chunk) > voxels.offset:
            part = carry + chunk[max(0, voxels.offset - position):end - position]
            usable = len(part) - len(part) % voxels.dtype.itemsize
            values = np.frombuffer(part[:usable], dtype=voxels.dtype)
            n_nan += int(np.count_nonzero(np.isnan(values)))
            n_inf += int(np.count_nonzero(np.isinf(values)))
            carry = part[usable:]
        position += len(chunk)
    check_voxel_count(position, voxels, source)
    refuse_non_finite(n_nan, n_inf, source)


def check_voxel_count(available: int, voxels: VoxelData, source: str | os.PathLike[str] | None) -> None:
    """Refuse a data stream of ``available`` bytes that ends before the voxels its header declares.

    SimpleITK reads such a NIfTI file without complaint and fills the missing voxels with zeros.
    """
    if available < voxels.offset + voxels.nbytes:
        held = min(max(available - voxels.offset, 0), voxels.nbytes)
        raise InputError(source, f"is truncated: its header declares {voxels.nbytes:,} bytes of voxel data, but "
                                 f"the file holds only {held:,} of them")
