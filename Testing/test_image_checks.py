"""Image files that lie (issue 11, findings 1, 6, 7 and 12), and a fuzz of broken NIfTI and NRRD files.

Truncated or corrupt data, NaN voxels that SimpleITK reads as 0, headers that declare huge grids, zero or negative
voxel sizes, single slices and sheared axes: each is refused with one line naming the file, before SimpleITK can
zero-fill, allocate or "repair" anything. The fuzz writes real broken files (no mocks) and requires that each one
either reads as the image a faithful reader (nibabel; a plain NRRD decoder here) gives, or is refused in one line.
"""

from __future__ import annotations

import gzip
import json
import resource
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.image_io import read_image
from SpinalLesionSegLib.validation import CHUNK_BYTES, MAX_AXIS_VOXELS, MAX_VOXELS

#: Address-space limit of the child processes that read broken files: Python with SimpleITK needs well under
#: 1 GiB; allocating what a broken header declares (2 GB for 1000^3 int16 voxels) fails under it.
MEMORY_LIMIT = 2 << 30
#: A small image whose voxels are all non-zero, so that zero-filled voxels cannot pass for data.
VOXELS = (np.arange(6 * 7 * 8, dtype=np.int16).reshape(6, 7, 8) % 251 + 1)


def _nifti(array: np.ndarray = VOXELS, **fields) -> bytes:
    """A single-file NIfTI-1 image (axes i, j, k = array axes 0, 1, 2) with header ``fields`` overridden; the
    header has the byte order of the array."""
    header = nib.Nifti1Header(endianness=">" if array.dtype.byteorder == ">" else "<")
    header.set_data_dtype(array.dtype)
    header.set_data_shape(array.shape)
    header.set_qform(np.diag([1.0, 1.0, 2.0, 1.0]), code=1)
    header.set_sform(np.diag([1.0, 1.0, 2.0, 1.0]), code=1)
    header["vox_offset"] = 352
    for name, value in fields.items():
        header[name] = value
    return header.binaryblock + bytes(4) + array.tobytes(order="F")


def _nrrd(array: np.ndarray = VOXELS, compress: bool = False, **fields: str) -> bytes:
    """A NRRD image with attached data (array axis 0 fastest; gzip-compressed when ``compress``) and header
    ``fields`` overridden, added or (None) left out; ``encoding`` among them makes a header that lies."""
    encoding = "gzip" if compress else "raw"
    header = {"type": "short", "dimension": "3", "space": "left-posterior-superior",
              "sizes": " ".join(str(s) for s in array.shape), "space directions": "(1,0,0) (0,1,0) (0,0,2)",
              "kinds": "domain domain domain", "endian": "little", "encoding": encoding, "space origin": "(0,0,0)"}
    header.update({key.replace("_", " "): value for key, value in fields.items()})
    header = {key: value for key, value in header.items() if value is not None}  # None: leave the field out
    data = array.astype("<i2").tobytes(order="F")
    text = "NRRD0004\n" + "".join(f"{key}: {value}\n" for key, value in header.items()) + "\n"
    return text.encode() + (gzip.compress(data, mtime=0) if compress else data)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
    return path


def _info(paths: list[Path], *, memory_limit: int | None = None) -> subprocess.CompletedProcess:
    """Run ``spinal-lesion-seg info`` on ``paths`` (optionally under an address-space limit, in bytes)."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    return subprocess.run([sys.executable, "-m", "SpinalLesionSegLib", "info", *map(str, paths)],
                          capture_output=True, text=True, timeout=120, preexec_fn=limit if memory_limit else None)


def _assert_refused_one_line_each(cases: dict[Path, str], *, memory_limit: int | None = None) -> None:
    """Every file in ``cases`` is refused (exit code 2) with exactly one stderr line naming it and the phrase."""
    result = _info(list(cases), memory_limit=memory_limit)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert len(lines) == len(cases), result.stderr
    for path, phrase in cases.items():
        mine = [line for line in lines if f" {path}: " in line]
        assert len(mine) == 1, f"{path.name}: {result.stderr}"
        assert phrase in mine[0], mine[0]


def test_truncated_or_corrupt_data_is_refused_not_zero_filled(tmp_path: Path) -> None:
    """Finding 1: SimpleITK zero-fills the voxels missing from a truncated NIfTI and segments the rest."""
    full = gzip.compress(_nifti(), mtime=0)
    corrupt = bytearray(full)
    corrupt[len(full) // 2] ^= 0xFF
    files = {
        "half.nii.gz": (full[: len(full) // 2], "truncated"),
        "no_trailer.nii.gz": (full[:-4], "truncated"),  # every voxel there, the CRC and length missing
        "flipped_byte.nii.gz": (bytes(corrupt), "corrupt compressed data"),
        "half.nii": (_nifti()[:700], "truncated"),
        "header_only.nii": (_nifti()[:352], "truncated"),
        "half_raw.nrrd": (_nrrd()[:-100], "truncated"),
        "half_gzip.nrrd": (_nrrd(compress=True)[:-20], "truncated"),
    }
    for name, (data, _) in files.items():
        (tmp_path / name).write_bytes(data)
    _assert_refused_one_line_each({tmp_path / name: phrase for name, (_, phrase) in files.items()})


def test_nan_voxels_that_simpleitk_reads_as_zero_are_refused(tmp_path: Path) -> None:
    """Finding 6: ITK's NIfTI reader turns NaN and Inf into 0 without a word; the raw values are checked."""
    floats = VOXELS.astype(np.float32)
    with_nan, with_inf = floats.copy(), floats.astype(">f8")
    with_nan[1, 2, 3] = np.nan
    with_inf[0, 0, 0] = -np.inf
    cases = {
        _write(tmp_path / "nan.nii.gz", _nifti(with_nan)): "contains 1 NaN voxel(s)",
        _write(tmp_path / "nan.nii", _nifti(with_nan)): "contains 1 NaN voxel(s)",
        _write(tmp_path / "inf_big_endian.nii", _nifti(with_inf)): "contains 1 infinite voxel(s)",
        _write(tmp_path / "nan_scaled.nii.gz", _nifti(with_nan, scl_slope=2.0, scl_inter=1.0)): "NaN voxel",
        _write(tmp_path / "overflow.nii", _nifti(scl_slope=1e38)): "infinite voxel",  # int16 x 1e38 > float32
    }
    _assert_refused_one_line_each(cases)
    assert read_image(_write(tmp_path / "finite.nii.gz", _nifti(floats))).GetSize() == (6, 7, 8)


def test_nan_scan_finds_a_value_split_across_read_chunks(tmp_path: Path) -> None:
    """The raw data is scanned in chunks of CHUNK_BYTES: a float64 whose 8 bytes straddle two chunks (voxels
    from byte 356, so no value is aligned to the chunk boundary) is still found, compressed or not."""
    values = np.ones(3 * CHUNK_BYTES // 8, np.float64)
    values[(CHUNK_BYTES - 356) // 8] = np.nan  # bytes CHUNK_BYTES - 4 .. CHUNK_BYTES + 3 of the file
    data = _nifti(values.reshape(-1, 64, 64, order="F"), vox_offset=356)
    data = data[:352] + bytes(4) + data[352:]
    for name in ("split.nii", "split.nii.gz"):
        with pytest.raises(InputError, match="contains 1 NaN voxel"):
            read_image(_write(tmp_path / name, data))


def test_declared_size_is_checked_before_anything_is_allocated(tmp_path: Path) -> None:
    """Finding 7: a 50 KB file declaring 1000^3 voxels made `info` allocate 2 GB. Refused from the header, under
    an address-space limit (:data:`MEMORY_LIMIT`) that such an allocation would break."""
    cases = {
        _write(tmp_path / "cube1000.nii", _nifti(dim=[3, 1000, 1000, 1000, 1, 1, 1, 1]) + bytes(50_000)):
            "declares 1000x1000x1000 voxels",
        _write(tmp_path / "cube1000.nii.gz", _nifti(dim=[3, 1000, 1000, 1000, 1, 1, 1, 1])): "declares 1000x1000",
        _write(tmp_path / "long_axis.nii", _nifti(dim=[3, MAX_AXIS_VOXELS + 1, 2, 2, 1, 1, 1, 1])): "per axis",
        _write(tmp_path / "cube1000.nrrd", _nrrd(sizes="1000 1000 1000")): "declares 1000x1000x1000 voxels",
        _write(tmp_path / "just_over.nii", _nifti(dim=[3, MAX_AXIS_VOXELS, MAX_AXIS_VOXELS, 17, 1, 1, 1, 1])):
            f"({MAX_AXIS_VOXELS**2 * 17:,} in all); at most {MAX_AXIS_VOXELS} per axis and {MAX_VOXELS:,} in all",
    }
    _assert_refused_one_line_each(cases, memory_limit=MEMORY_LIMIT)


def test_impossible_geometry_is_refused_with_our_message(tmp_path: Path) -> None:
    """Finding 12: ITK turns pixdim 0 (and NaN) into 1 mm and a negative one into its absolute value, fails a
    one-voxel-thick slice with "No orthonormal definition found", and uses the qform behind a sheared sform."""
    sheared = [[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 2, 0]]
    one_slice = VOXELS[:, :, :1].copy()
    cases = {
        _write(tmp_path / "pixdim_zero.nii", _nifti(pixdim=[1, 1, 1, 0, 1, 1, 1, 1])): "invalid voxel spacing",
        _write(tmp_path / "pixdim_negative.nii.gz", _nifti(pixdim=[1, 1, -1, 2, 1, 1, 1, 1])): "must be positive",
        _write(tmp_path / "pixdim_nan.nii", _nifti(pixdim=[1, np.nan, 1, 2, 1, 1, 1, 1])): "nan x 1 x 2 mm",
        _write(tmp_path / "slice_2d.nii", _nifti(one_slice, qform_code=0, srow_z=[0, 0, 0, 0])): "single slice",
        _write(tmp_path / "series.nii.gz", _nifti(np.stack([VOXELS] * 2, axis=-1))): "is a 4D image (6x7x8x2",
        _write(tmp_path / "sheared.nii", _nifti(srow_x=sheared[0])): "not orthonormal",
        _write(tmp_path / "singular.nii", _nifti(srow_z=[1, 0, 0, 0])): "not orthonormal",
        _write(tmp_path / "nan_sform.nii", _nifti(srow_z=[0, 0, np.nan, 0])): "non-finite",
        _write(tmp_path / "bad_quaternion.nii", _nifti(sform_code=0, quatern_b=2.0)): "invalid qform",
        _write(tmp_path / "nan_spacing.nrrd", _nrrd(space_directions="(1,0,0) (0,1,0) (0,0,nan)")): "spacing",
        _write(tmp_path / "nan_spacings.nrrd", _nrrd(space_directions=None, spacings="1 1 nan")):
            "invalid voxel spacing",
        _write(tmp_path / "singular.nrrd", _nrrd(space_directions="(1,0,0) (0,1,0) (1,0,0)")): "not orthonormal",
        _write(tmp_path / "slice.nrrd", _nrrd(one_slice)): "single slice",
        _write(tmp_path / "slice_2d.nrrd", _nrrd(VOXELS[:, :, 0], dimension="2",
                                                space_directions="(1,0,0) (0,1,0)", kinds="domain domain")):
            "is a 2D image",
    }
    _assert_refused_one_line_each(cases)


def test_valid_variants_read_exactly(tmp_path: Path) -> None:
    """What the checks must not refuse: a 4D file holding one volume, a flipped qform, big-endian data,
    scaled integers, gzip in two members, NRRD with a flipped axis or detached gzip data."""
    (tmp_path / "data.raw.gz").write_bytes(gzip.compress(VOXELS.astype("<i2").tobytes(order="F")))
    detached = _nrrd(compress=True).split(b"\n\n")[0].decode() + "\ndata file: data.raw.gz\n"
    members = _nifti()
    (tmp_path / "two_members.nii.gz").write_bytes(gzip.compress(members[:500]) + gzip.compress(members[500:]))
    variants = {
        tmp_path / "two_members.nii.gz": VOXELS,
        _write(tmp_path / "one_volume.nii.gz", _nifti(VOXELS[..., None])): VOXELS,
        _write(tmp_path / "qfac.nii", _nifti(sform_code=0, pixdim=[-1, 1, 1, 2, 1, 1, 1, 1])): VOXELS,
        _write(tmp_path / "big_endian.nii", _nifti(VOXELS.astype(">f4"))): VOXELS,
        _write(tmp_path / "scaled.nii.gz", _nifti(scl_slope=0.5, scl_inter=-1)): VOXELS * 0.5 - 1,
        _write(tmp_path / "flipped.nrrd", _nrrd(space_directions="(1,0,0) (0,1,0) (0,0,-2)")): VOXELS,
        _write(tmp_path / "detached.nhdr", detached.encode()): VOXELS,
    }
    for path, expected in variants.items():
        image = read_image(path)
        np.testing.assert_allclose(sitk.GetArrayFromImage(image), expected.T, err_msg=path.name)
        assert image.GetSpacing() == (1.0, 1.0, 2.0), path.name


# --------------------------------------------------------------------------------------------------------------
# The fuzz: many broken files, one verdict each.

#: NIfTI header mutations: field -> values. Each value replaces the field in a valid file.
NIFTI_MUTATIONS = {
    "dim": [[3, 6, 7, 0, 1, 1, 1, 1], [3, 6, -7, 8, 1, 1, 1, 1], [3, 6, 7, 1, 1, 1, 1, 1], [2, 6, 7, 8, 1, 1, 1, 1],
            [4, 6, 7, 8, 2, 1, 1, 1], [4, 6, 7, 8, 1, 1, 1, 1], [0, 6, 7, 8, 1, 1, 1, 1], [8, 6, 7, 8, 1, 1, 1, 1],
            [3, 6, 7, 9, 1, 1, 1, 1], [3, 6, 7, 4, 1, 1, 1, 1], [3, 7, 6, 8, 1, 1, 1, 1],
            [3, 1000, 1000, 1000, 1, 1, 1, 1], [3, 5000, 2, 2, 1, 1, 1, 1], [3, 32767, 32767, 32767, 1, 1, 1, 1],
            [5, 6, 7, 8, 1, 3, 1, 1]],
    "pixdim": [[1, 1, 1, 0, 1, 1, 1, 1], [1, 1, -1, 2, 1, 1, 1, 1], [1, 1, np.nan, 2, 1, 1, 1, 1],
               [1, 1, 1, np.inf, 1, 1, 1, 1], [1, 0.001, 0.001, 0.002, 1, 1, 1, 1], [1, 1, 1, 100, 1, 1, 1, 1],
               [5, 1, 1, 2, 1, 1, 1, 1], [-1, 1, 1, 2, 1, 1, 1, 1], [0, 1, 1, 2, 0, 0, 0, 0]],
    "datatype": [2, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1536, 2048, 2304, 0, 3, 9999],
    "bitpix": [0, 8, 32, -3],
    "vox_offset": [0, 100, 348, 351, 353, 356, 352.5, np.nan, -5, 1e9, 2.0**31, 368],
    "qform_code": [0, 2, 4, 5, 9, -1],
    "sform_code": [0, 2, 6, -1],
    "srow_x": [[1, 0.5, 0, 0], [0, 0, 0, 0], [np.nan, 0, 0, 0], [-1, 0, 0, 1e30], [np.inf, 0, 0, 0]],
    "srow_z": [[1, 0, 0, 0], [0, 0, 2, np.inf], [0, 0, -2, 0]],
    "quatern_b": [np.nan, 2.0, 0.5],
    "qoffset_x": [np.nan],
    "scl_slope": [2.0, 0.0, np.nan, np.inf, 1e38],
    "scl_inter": [np.nan, 5.0],
    "sizeof_hdr": [300, 540],
    "magic": [b"ni1", b"xx1", b"n+2"],
}

#: NRRD header mutations (field -> values). Each value replaces or adds the field.
NRRD_MUTATIONS = {
    "sizes": ["6 7 4", "6 7 9", "6 7 1", "7 6 8", "6 7", "6 7 8 2", "1000 1000 1000", "0 7 8", "-6 7 8", "a b c"],
    "dimension": ["2", "4", "x"],
    "type": ["ushort", "uchar", "float", "double", "int64", "block", "complex"],
    "endian": ["big"],
    "encoding": ["gzip", "ascii", "bzip2", "hex"],
    "space_directions": ["(0,0,0) (0,1,0) (0,0,2)", "(1,0,0) (0,1,0) (1,0,0)", "(1,0,0) (0.5,1,0) (0,0,2)",
                         "(1,0,0) (0,1,0) (0,0,nan)", "(1,0,0) (0,1,0) (0,0,-2)", "(1,0,0) (0,1,0)",
                         "(1,0,0) (0,1,0) (0,0,inf)", "none (0,1,0) (0,0,2)", "(1,0) (0,1) (0,0)"],
    "space_origin": ["(nan,0,0)", "(1,2,3)", "(1,2)"],
    "kinds": ["vector domain domain", "domain domain", "domain domain time"],
    "byte_skip": ["2", "-1", "100000"],
    "data_file": ["missing.raw"],
    "spacings": ["1 1 nan"],
}

#: Reads each file of a list in a child process: its verdict, voxels (saved beside it) and spacing, and its peak
#: memory; a reader that allocated what a broken header declares would fail under MEMORY_LIMIT or show here.
_CHILD = """
import json, resource, sys, traceback, warnings
warnings.simplefilter("error")  # a warning would be stray output on the command line: count it as a crash
import numpy as np, SimpleITK as sitk
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.image_io import read_image
results = {}
from pathlib import Path
for path in json.loads(Path(sys.argv[1]).read_text()):
    try:
        image = read_image(path)
        np.save(path + ".npy", sitk.GetArrayFromImage(image))
        results[path] = ["read", list(image.GetSpacing())]
    except InputError as error:
        results[path] = ["refused", str(error)]
    except BaseException:
        results[path] = ["crash", traceback.format_exc()]
# Peak RSS of this program: VmHWM starts again at exec, while ru_maxrss also counts the pytest process this child
# was forked from (subprocess forks to apply the memory limit), which grows over the suite.
status = Path("/proc/self/status")
peak = [int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmHWM:")] \
    if status.exists() else [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss]
print(json.dumps({"results": results, "max_rss_kb": peak[0]}))
"""


def _fuzz_files(folder: Path) -> list[Path]:
    """Write every broken file of the fuzz into ``folder``: truncations at 30 offsets of each kind of file, 40
    NIfTI headers with one byte inverted, and one file per header mutation."""
    folder.mkdir()
    floats = (VOXELS * 0.25).astype(np.float32)
    bases = {"int.nii": _nifti(), "int.nii.gz": gzip.compress(_nifti(), mtime=0),
             "float.nii.gz": gzip.compress(_nifti(floats), mtime=0), "raw.nrrd": _nrrd(),
             "gzip.nrrd": _nrrd(compress=True)}
    files = []
    for name, data in bases.items():
        for n in np.unique(np.linspace(1, len(data) - 1, 30).astype(int)):
            files.append(folder / f"cut{n:05d}_{name}")
            files[-1].write_bytes(data[:n])
    for position in np.random.default_rng(11).choice(348, 40, replace=False):  # any header byte, inverted
        flipped = bytearray(_nifti())
        flipped[position] ^= 0xFF
        files.append(_write(folder / f"flip{position:03d}.nii", bytes(flipped)))
    for field, values in NIFTI_MUTATIONS.items():
        for i, value in enumerate(values):
            for suffix in (".nii", ".nii.gz"):
                files.append(_write(folder / f"{field}{i}{suffix}", _nifti(**{field: value})))
    for field, values in NRRD_MUTATIONS.items():
        for i, value in enumerate(values):
            for compress in (False, True):
                files.append(_write(folder / f"{field}{i}_{'gzip' if compress else 'raw'}.nrrd",
                                    _nrrd(compress=compress, **{field: value})))
    return files


def _faithful_nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...]] | None:
    """Voxels ([k, j, i], scaled) and spacing as nibabel reads them; None where nibabel refuses the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = nib.load(path)
            data = np.asanyarray(image.dataobj)
        shape = data.shape
        while len(shape) > 3 and shape[-1] == 1:
            shape = shape[:-1]
        return data.reshape(shape).T, tuple(float(z) for z in image.header["pixdim"][1:4])
    except Exception:
        return None


def _faithful_nrrd(path: Path) -> tuple[np.ndarray, tuple[float, ...]] | None:
    """Voxels ([k, j, i]) and spacing of a NRRD file as its header spells them, decoded plainly (raw or gzip
    attached data, little or big endian); None for anything this decoder does not handle."""
    head, _, data = path.read_bytes().partition(b"\n\n")
    types = {"short": "i2", "ushort": "u2", "uchar": "u1", "float": "f4", "double": "f8", "int64": "i8"}
    try:
        fields = dict(line.split(": ", 1) for line in head.decode().splitlines()[1:])
        sizes = [int(s) for s in fields["sizes"].split()]
        dtype = np.dtype(("<" if fields["endian"] == "little" else ">") + types[fields["type"]])
        data = gzip.decompress(data) if fields["encoding"] == "gzip" else data
        assert fields["encoding"] in ("raw", "gzip") and "data file" not in fields
        nbytes, skip = int(np.prod(sizes)) * dtype.itemsize, int(fields.get("byte skip", 0))
        data = data[len(data) - nbytes:] if skip == -1 else data[skip:]  # -1: the data ends the file
        values = np.frombuffer(data[:nbytes], dtype).reshape(sizes[::-1])
        vectors = [np.array(v.strip("()").split(","), float) for v in fields["space directions"].split()]
        return values, tuple(float(np.linalg.norm(v)) for v in vectors)
    except Exception:
        return None


def test_fuzz_every_broken_file_reads_faithfully_or_is_refused_in_one_line(tmp_path: Path) -> None:
    """Truncations and header mutations of NIfTI (.nii, .nii.gz) and NRRD (raw, gzip) files: each one reads as
    the faithful reader's image (same voxels, same spacing: nothing zero-filled or "repaired") or is refused
    with one line naming the file. Never a traceback, a hang, stray output or a huge allocation."""
    files = _fuzz_files(tmp_path / "fuzz")
    listing = tmp_path / "files.json"
    listing.write_text(json.dumps([str(p) for p in files]))

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    child = subprocess.run([sys.executable, "-c", _CHILD, str(listing)], capture_output=True, text=True,
                           timeout=300, preexec_fn=limit)
    assert child.returncode == 0 and child.stderr == "", child.stderr[-3000:]
    report = json.loads(child.stdout)
    read = 0
    for path in files:
        verdict, detail = report["results"][str(path)]
        assert verdict != "crash", f"{path.name}: {detail}"
        faithful = (_faithful_nrrd if path.suffix == ".nrrd" else _faithful_nifti)(path)
        if verdict == "refused":
            assert "\n" not in detail and detail.startswith(f"{path}: "), detail
            continue
        read += 1
        assert faithful is not None, f"{path.name} was read, but a faithful reader refuses it"
        voxels, spacing = faithful
        ours = np.load(f"{path}.npy")
        assert ours.shape == voxels.shape, path.name
        np.testing.assert_allclose(ours, voxels, rtol=1e-6, err_msg=path.name)
        np.testing.assert_allclose(detail, spacing, rtol=1e-6, err_msg=path.name)
    assert 20 < read < len(files) - 200  # both verdicts are exercised
    assert report["max_rss_kb"] < 600_000, report["max_rss_kb"]


def test_in_process_refusals_are_input_errors(tmp_path: Path) -> None:
    """The library raises InputError (not OSError, zlib.error or EOFError), and names what SimpleITK would not:
    NIfTI-2 (no reader) and a gzip file named .nii (ITK picks its reader by the name)."""
    nib.save(nib.Nifti2Image(VOXELS, np.eye(4)), tmp_path / "two.nii")
    (tmp_path / "zipped.nii").write_bytes(gzip.compress(_nifti()))
    cases = {_write(tmp_path / "cut.nii", _nifti()[:500]): "truncated", tmp_path / "two.nii": "NIfTI-2",
             tmp_path / "zipped.nii": "not named .nii.gz"}
    for path, phrase in cases.items():
        with pytest.raises(InputError, match=phrase):
            read_image(path)
