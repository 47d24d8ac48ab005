"""What a NIfTI or NRRD file declares in its header, checked before SimpleITK reads the file.

SimpleITK trusts headers and "repairs" what it cannot use without saying so: it allocates whatever size the header
declares (a 50 KB file declaring 1000^3 voxels costs 2 GB), zero-fills voxels missing from a truncated file, turns
a zero, negative or NaN ``pixdim`` into a spacing of 1 mm (or its absolute value), falls back to the qform when the
sform is sheared, and reads NaN voxels of NIfTI files as 0. :func:`check_image_file` reads the header itself and
applies the rules of :mod:`.validation` to it, then checks the voxel data stream (complete, intact gzip, finite),
without holding the data in memory. Only after that does :func:`.image_io.read_image` let SimpleITK read the file.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import InputError
from .validation import (
    DIRECTION_TOLERANCE,
    GZIP_MAGIC,
    VoxelData,
    check_allocation,
    check_orientation,
    check_shape,
    check_spacing,
    check_voxel_count,
    check_voxel_stream,
    file_chunks,
)

#: Bytes of a NIfTI-1 header, and where its voxels may start at the earliest (header, then 4 extension bytes).
NIFTI1_HEADER_BYTES = 348
NIFTI1_MIN_VOX_OFFSET = 352
#: ``sizeof_hdr`` of a NIfTI-2 header, which SimpleITK cannot read.
NIFTI2_HEADER_BYTES = 540
#: The NIfTI-1 header fields the checks use: name -> (numpy type without byte order, byte offset).
NIFTI1_FIELDS = {
    "sizeof_hdr": ("i4", 0), "dim": ("(8,)i2", 40), "datatype": ("i2", 70), "pixdim": ("(8,)f4", 76),
    "vox_offset": ("f4", 108), "scl_slope": ("f4", 112), "scl_inter": ("f4", 116), "qform_code": ("i2", 252),
    "sform_code": ("i2", 254), "quatern": ("(3,)f4", 256), "qoffset": ("(3,)f4", 268), "srow": ("(3,4)f4", 280),
    "magic": ("S4", 344),
}
#: NIfTI datatype code -> numpy type (without byte order), for the codes SimpleITK reads (not float128, 1536,
#: nor complex256, 2048). 128 and 2304 are RGB and RGBA: 3 and 4 bytes per voxel.
NIFTI_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 32: "c8", 64: "f8", 128: "V3", 256: "i1", 512: "u2",
                768: "u4", 1024: "i8", 1280: "u8", 1792: "c16", 2304: "V4"}
#: Valid qform/sform codes: unknown, scanner, aligned, Talairach, MNI, other template.
XFORM_CODES = range(6)
#: NRRD axis kinds that are axes of the image grid (the others, e.g. ``vector``, hold a voxel's components).
NRRD_DOMAIN_KINDS = frozenset({"domain", "space", "time"})
#: Bytes per value of each NRRD ``type`` spelling (NRRD0005 specification).
NRRD_TYPE_BYTES = {
    **dict.fromkeys(("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"), 1),
    **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort",
                     "unsigned short", "unsigned short int", "uint16", "uint16_t"), 2),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t",
                     "float"), 4),
    **dict.fromkeys(("longlong", "long long", "long long int", "signed long long", "signed long long int",
                     "int64", "int64_t", "ulonglong", "unsigned long long", "unsigned long long int", "uint64",
                     "uint64_t", "double"), 8),
}
#: Longest NRRD header line read; real ones are well under 1 KB.
NRRD_MAX_LINE = 1 << 16


def check_image_file(path: Path) -> None:
    """Raise InputError unless the NIfTI/NRRD file ``path`` declares a sane 3D grid (size, spacing, orientation,
    voxel type) and holds all the voxel data it declares, intact and finite."""
    if path.name.lower().endswith((".nrrd", ".nhdr")):
        voxels = _nrrd_voxels(path)
        if voxels is not None:
            _check_data(voxels, path)
        return
    with open(path, "rb") as handle:
        compressed = _is_gzip(handle)
        if compressed and not path.name.lower().endswith(".gz"):  # ITK picks its reader by the name
            raise InputError(path, "is gzip-compressed but not named .nii.gz; rename it")
        chunks = file_chunks(handle, path)
        head = b"".join(_until(chunks, NIFTI1_HEADER_BYTES))
        voxels = _nifti_voxels(*_nifti_header(head, path), path)
        if compressed or voxels.scan:
            check_voxel_stream(itertools.chain([head], chunks), voxels, path)
        else:
            check_voxel_count(os.fstat(handle.fileno()).st_size, voxels, path)


def _until(chunks: Iterator[bytes], size: int) -> Iterator[bytes]:
    """Chunks from ``chunks`` until at least ``size`` bytes were given; the rest stays in ``chunks``."""
    total = 0
    for chunk in chunks:
        yield chunk
        total += len(chunk)
        if total >= size:
            return


def _is_gzip(handle: BinaryIO) -> bool:
    """Whether the bytes at the handle's position start a gzip stream (the position is kept)."""
    position = handle.tell()
    magic = handle.read(2)
    handle.seek(position)
    return magic == GZIP_MAGIC


def _check_data(voxels: VoxelData, source: Path) -> None:
    """Check the voxel data of ``voxels`` (see :func:`.validation.check_voxel_stream`); uncompressed data that
    need not be scanned is only measured, not read."""
    with open(voxels.path, "rb") as handle:
        handle.seek(voxels.start)
        compressed = _is_gzip(handle) and voxels.gzip is not False
        if voxels.gzip and not compressed:
            raise InputError(source, "declares gzip-compressed voxel data, but its data is not gzip")
        if compressed or voxels.scan:
            check_voxel_stream(file_chunks(handle, source), voxels, source)
        else:
            check_voxel_count(os.fstat(handle.fileno()).st_size - voxels.start, voxels, source)


def _nifti_header(head: bytes, source: Path) -> tuple[np.void, str]:
    """The NIfTI-1 header fields (:data:`NIFTI1_FIELDS`) at the start of ``head``, and its byte order.

    NIfTI-2 is refused by name: SimpleITK cannot read it and would only say it found no reader.
    """
    for endian in "<>":
        size = int(np.frombuffer(head[:4], f"{endian}i4")[0]) if len(head) >= 4 else 0
        if size == NIFTI2_HEADER_BYTES and head[4:7] == b"n+2":
            raise InputError(source, "is a NIfTI-2 file, which cannot be read; save it as NIfTI-1")
        if size != NIFTI1_HEADER_BYTES:
            continue
        if len(head) < size:
            raise InputError(source, f"is truncated: it ends inside its NIfTI header ({len(head)} bytes)")
        layout = {"names": list(NIFTI1_FIELDS), "formats": [endian + f for f, _ in NIFTI1_FIELDS.values()],
                  "offsets": [offset for _, offset in NIFTI1_FIELDS.values()], "itemsize": size}
        header = np.frombuffer(head[:size], dtype=np.dtype(layout))[0]
        if header["magic"][:3] != b"n+1":
            raise InputError(source, "cannot be read as an image (not a single-file NIfTI-1: header magic "
                                     f"{header['magic'][:3]!r}, expected b'n+1')")
        return header, endian
    raise InputError(source, "cannot be read as an image (no NIfTI-1 header)")


def _nifti_voxels(header: np.void, endian: str, source: Path) -> VoxelData:
    """Apply the image rules to a NIfTI-1 header and return where its voxels are."""
    dim = [int(d) for d in header["dim"]]
    if not 1 <= dim[0] <= 7:
        raise InputError(source, f"has an invalid number of dimensions in its header (dim[0] = {dim[0]})")
    shape = dim[1:dim[0] + 1]
    check_allocation(shape, source)
    while len(shape) > 3 and shape[-1] == 1:  # as ITK does: a 4D file with one volume is 3D
        shape = shape[:-1]
    check_shape(shape, source)
    code = int(header["datatype"])
    if code not in NIFTI_DTYPES:
        raise InputError(source, f"has an unsupported voxel type (NIfTI datatype code {code})")
    check_spacing(header["pixdim"][1:4], source)
    _check_nifti_orientation(header, source)
    slope, inter = float(header["scl_slope"]), float(header["scl_inter"])
    if np.isfinite(slope) and slope != 0 and not np.isfinite(inter):  # a slope of 0, NaN or Inf means "none"
        raise InputError(source, f"has an invalid intensity scaling in its header (scl_inter = {inter:g})")
    offset = float(header["vox_offset"])
    if not np.isfinite(offset) or offset != int(offset) or offset < NIFTI1_MIN_VOX_OFFSET:
        raise InputError(source, f"has an invalid voxel data offset in its header (vox_offset = {offset:g}; "
                                 f"a single-file NIfTI has its voxels at byte {NIFTI1_MIN_VOX_OFFSET} or later)")
    dtype = np.dtype(endian + NIFTI_DTYPES[code])
    return VoxelData(source, 0, int(offset), int(np.prod(shape)) * dtype.itemsize, dtype, dtype.kind in "fc")


def _check_nifti_orientation(header: np.void, source: Path) -> None:
    """Refuse invalid qform/sform codes, a broken quaternion, and a sheared, singular or non-finite sform.

    A sheared sform is refused even with a valid qform: ITK would silently use the qform while nibabel, FSL and
    SCT use the sform, so the file means different places to different tools.
    """
    codes = {name: int(header[name]) for name in ("qform_code", "sform_code")}
    for name, code in codes.items():
        if code not in XFORM_CODES:
            raise InputError(source, f"has an invalid {name} ({code}) in its header")
    if codes["qform_code"]:
        quatern, qoffset = header["quatern"].astype(float), header["qoffset"].astype(float)
        qfac = float(header["pixdim"][0])
        if (not np.all(np.isfinite(quatern)) or quatern @ quatern > 1 + DIRECTION_TOLERANCE
                or qfac not in (-1.0, 0.0, 1.0) or not np.all(np.isfinite(qoffset))):
            raise InputError(source, f"has an invalid qform in its header (quaternion {quatern.tolist()}, "
                                     f"offset {qoffset.tolist()}, qfac {qfac:g})")
    if codes["sform_code"]:
        srow = header["srow"].astype(float)
        axes = srow[:, :3]
        if np.all(np.isfinite(axes)):  # unit columns; a zero column stays zero and fails as not orthonormal
            norms = np.linalg.norm(axes, axis=0)
            axes = axes / np.where(norms > 0, norms, 1.0)
        check_orientation(axes, srow[:, 3], source)


def _nrrd_voxels(path: Path) -> VoxelData | None:
    """Apply the image rules to a NRRD header; return where its voxels are, or None when the data cannot be
    located cheaply (text encodings, bzip2, line skips, lists of data files: teem checks those itself)."""
    with open(path, "rb") as handle:
        fields = _nrrd_fields(handle, path)
        data_start = handle.tell()
    sizes = _nrrd_numbers(fields, "sizes", path, int)
    if _nrrd_numbers(fields, "dimension", path, int) != [len(sizes)]:
        raise InputError(path, "cannot be read as an image (NRRD 'sizes' does not match 'dimension')")
    check_allocation(sizes, path)
    kinds = fields.get("kinds", "").lower().split()
    directions = _nrrd_vectors(fields.get("spacedirections", ""), path)
    if (kinds and len(kinds) != len(sizes)) or (directions and len(directions) != len(sizes)):
        raise InputError(path, "cannot be read as an image (NRRD 'kinds' or 'space directions' does not match "
                               "'dimension')")
    grid_axes = [i for i in range(len(sizes)) if (directions and directions[i] is not None)
                 or (kinds and kinds[i] in NRRD_DOMAIN_KINDS) or (not directions and not kinds)]
    check_shape([sizes[i] for i in grid_axes], path)
    if directions and any(directions[i] is None for i in grid_axes):
        raise InputError(path, "cannot be read as an image (a NRRD domain axis has no space direction)")
    _check_nrrd_geometry(fields, [v for v in directions if v is not None], grid_axes, path)
    return _nrrd_data(fields, path, data_start, int(np.prod(sizes)))


def _nrrd_data(fields: dict[str, str], path: Path, data_start: int, n_values: int) -> VoxelData | None:
    """Where a NRRD file's raw or gzip voxel data is (attached after the header, or in its ``data file``)."""
    itemsize = NRRD_TYPE_BYTES.get(fields.get("type", "").lower())
    if itemsize is None:
        raise InputError(path, f"has an unsupported voxel type (NRRD type {fields.get('type', 'missing')!r})")
    encoding = fields.get("encoding", "").lower()
    if encoding not in ("raw", "gzip", "gz"):
        return None
    data_file = fields.get("datafile")
    if fields.get("lineskip", "0") != "0" or (data_file is not None and (
            data_file.startswith("LIST") or "%" in data_file or len(data_file.split()) != 1)):
        return None
    if data_file is not None and not (path.parent / data_file).is_file():
        raise InputError(path, f"names a data file that does not exist ({data_file})")
    skip = _nrrd_numbers(fields, "byteskip", path, int)[0] if "byteskip" in fields else 0
    data_path, start = (path.parent / data_file, 0) if data_file is not None else (path, data_start)
    return VoxelData(data_path, start, max(skip, 0), n_values * itemsize, np.dtype(np.uint8),
                     gzip=encoding != "raw")


def _nrrd_fields(handle: BinaryIO, source: Path) -> dict[str, str]:
    """The ``field: value`` lines of a NRRD header (keys lower-case without spaces), up to the blank line that
    ends it."""
    if not handle.readline(NRRD_MAX_LINE).startswith(b"NRRD000"):
        raise InputError(source, "cannot be read as an image (no NRRD magic line)")
    fields: dict[str, str] = {}
    while (line := handle.readline(NRRD_MAX_LINE)).strip(b"\r\n"):
        text = line.decode("latin-1").rstrip("\r\n")
        key, sep, value = text.partition(": ")
        if text.startswith("#") or ":=" in key:  # comments and key/value pairs carry no geometry
            continue
        if not sep:
            raise InputError(source, f"cannot be read as an image (bad NRRD header line {text[:40]!r})")
        fields[key.strip().lower().replace(" ", "")] = value.strip()  # "data file" and "datafile" alike
    return fields


def _nrrd_numbers(fields: dict[str, str], key: str, source: Path, kind: type = float) -> list:
    """The whitespace-separated numbers of a NRRD field, or InputError when it is missing or not numbers."""
    try:
        return [kind(token) for token in fields[key].split()]
    except (KeyError, ValueError):
        raise InputError(source, f"cannot be read as an image (missing or invalid NRRD field {key!r})") from None


def _nrrd_vectors(text: str, source: Path) -> list[np.ndarray | None]:
    """Parse ``(x,y,z)`` vectors (``none`` for an axis without one) of ``space directions``/``space origin``."""
    vectors: list[np.ndarray | None] = []
    for token in text.replace(" ,", ",").replace(", ", ",").split():
        try:
            vectors.append(None if token == "none" else np.array(token.strip("()").split(","), dtype=float))
        except ValueError:
            raise InputError(source, f"cannot be read as an image (invalid NRRD vector {token!r})") from None
    return vectors


def _check_nrrd_geometry(fields: dict[str, str], vectors: list[np.ndarray], grid_axes: list[int],
                         source: Path) -> None:
    """Check the spacing and orientation a NRRD header declares (``space directions``, else ``spacings``)."""
    if vectors:
        origin = _nrrd_vectors(fields.get("spaceorigin", "(0,0,0)"), source)
        if {len(v) for v in vectors} != {3} or len(origin) != 1 or origin[0] is None or len(origin[0]) != 3:
            raise InputError(source, "cannot be read as an image (NRRD space directions and origin must be 3D "
                                     "vectors)")
        columns = np.array(vectors, dtype=float).T
        norms = np.linalg.norm(columns, axis=0)
        check_spacing(norms, source)
        check_orientation(columns / norms, origin[0], source)
    elif "spacings" in fields:
        spacings = _nrrd_numbers(fields, "spacings", source)
        check_spacing([spacings[i] for i in grid_axes if i < len(spacings)], source)
