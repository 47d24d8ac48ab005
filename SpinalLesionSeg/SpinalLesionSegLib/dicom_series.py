"""DICOM input: one image series from a folder of DICOM files, checked before it becomes a volume.

A folder given where an image is expected is searched (recursively) for DICOM image files, grouped by series. The
series is the one named by ``--series-uid`` (several UIDs may be given: each folder uses the one it holds, so
``compare`` takes one option for two folders) or the only image series present; several candidates are refused in
one line that lists them (UID, description, number of images), as are a folder with none.

A series becomes a volume only when it is one: single-frame images with position and orientation tags, one
orientation, one pixel spacing and matrix, one frame of reference, slices stacked along their normal without
duplicates (two echoes or acquisitions mixed) and without gaps (a missing slice), no gantry tilt. SimpleITK (GDCM)
then reads the files in that order and its geometry is checked against the tags. Everything else is refused in one
line naming the folder: a silently wrong volume would put lesions at wrong levels.

pydicom reads headers only (``stop_before_pixels``) until the series is chosen.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from .errors import InputError

#: Single-frame image storage classes read as volumes: MR, CT, PET (the models take MR; the others may be masks
#: or references a user wants to look at with ``info``).
IMAGE_STORAGE = {"1.2.840.10008.5.1.4.1.1.4": "MR Image Storage", "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
                 "1.2.840.10008.5.1.4.1.1.128": "Positron Emission Tomography Image Storage"}
#: Multi-frame classes recognised only to be refused with a clear message.
MULTI_FRAME = {"1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
               "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage"}
#: Tolerances: direction cosines (unitless) and positions/spacings (mm).
COSINE_TOLERANCE = 1e-4
POSITION_TOLERANCE_MM = 1e-3
#: A slice gap may differ from the median gap by this fraction before the series counts as irregular.
GAP_TOLERANCE = 0.1
#: Files whose headers and digests are kept in memory (a few hundred bytes each): a large study, several series.
HEADER_CACHE_FILES = 20000
#: Header fields read from every file.
_HEADER_TAGS = ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID",
                "SeriesDescription", "SeriesNumber", "Modality", "ImagePositionPatient", "ImageOrientationPatient",
                "PixelSpacing", "Rows", "Columns", "NumberOfFrames", "PatientID", "InstanceNumber", "StudyDate")


@dataclass
class DicomSeries:
    """One series found in a folder: its UIDs, description and files (sorted along the slice normal once checked),
    and each file's header fields (:data:`_HEADER_TAGS`)."""

    uid: str
    folder: Path
    description: str = ""
    number: str = ""
    modality: str = ""
    sop_class: str = ""
    files: list[Path] = field(default_factory=list)
    headers: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        """``UID (description, N images)``: how a candidate is listed in an error."""
        return f"{self.uid} ({self.description or 'no description'}, {len(self.files)} images)"

    def stem(self) -> str:
        """A readable, file-safe output name: the series description and number (``sag_T2_TSE_s5``); patient
        names and IDs are left out of file names on purpose (they travel in the sidecar, not in paths)."""
        text = f"{self.description or self.modality or 'series'}_s{self.number}" if self.number else \
            (self.description or "series")
        return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_.") or "series"

    def record(self) -> dict[str, Any]:
        """What the sidecar records of the source series."""
        first = self.headers[0] if self.headers else {}
        return {"SeriesInstanceUID": self.uid, "StudyInstanceUID": first.get("StudyInstanceUID"),
                "FrameOfReferenceUID": first.get("FrameOfReferenceUID"), "SeriesDescription": self.description,
                "SeriesNumber": self.number, "Modality": self.modality, "SOPClassUID": self.sop_class,
                "NumberOfImages": len(self.files), "folder": str(self.folder)}

    def digest(self) -> str:
        """sha256 over the files' contents in slice order: the series' fingerprint for sidecars and resume."""
        total = hashlib.sha256()
        for path in self.files:
            total.update(_file_digest(path, *_file_key(path)))
        return total.hexdigest()


@functools.lru_cache(maxsize=HEADER_CACHE_FILES)
def _file_digest(path: Path, size: int, mtime_ns: int) -> bytes:
    """sha256 of a file's contents, cached per file and version (``size``, ``mtime_ns``) as the headers are."""
    return hashlib.sha256(path.read_bytes()).digest()


def is_dicom_folder(path: str | os.PathLike[str]) -> bool:
    """Whether an input path names a folder (taken as DICOM files)."""
    return Path(path).is_dir()


def find_series(folder: str | os.PathLike[str]) -> list[DicomSeries]:
    """Every image series of the DICOM files under ``folder`` (non-DICOM files are ignored), by UID."""
    found: dict[str, DicomSeries] = {}
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith(".")):
        header = _image_header(path, *_file_key(path))
        if header is None:
            continue
        uid = str(header["SeriesInstanceUID"] or "")
        series = found.setdefault(uid, DicomSeries(
            uid, Path(folder), str(header["SeriesDescription"] or ""), str(header["SeriesNumber"] or ""),
            str(header["Modality"] or ""), str(header["SOPClassUID"] or "")))
        series.files.append(path)
        series.headers.append(header)
    return sorted(found.values(), key=lambda s: (s.number.zfill(8), s.uid))


def _file_key(path: Path) -> tuple[int, int]:
    """(size in bytes, modification time in ns): a file changed since it was cached is read again."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=HEADER_CACHE_FILES)
def _image_header(path: Path, size: int, mtime_ns: int) -> dict[str, Any] | None:
    """The header fields (:data:`_HEADER_TAGS`) of an image file, None for anything that is not a single- or
    multi-frame image this module knows. Cached per file and version (``size``, ``mtime_ns``): one command reads
    a folder's headers several times (info, checks, reading, sidecar), and a flat folder may hold thousands."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_HEADER_TAGS))
    except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError):
        return None
    if str(dataset.get("SOPClassUID", "")) not in IMAGE_STORAGE | MULTI_FRAME:
        return None
    return {tag: dataset.get(tag) for tag in _HEADER_TAGS}


def choose_series(folder: str | os.PathLike[str], series_uids: Sequence[str] = ()) -> DicomSeries:
    """The series of ``folder`` named by one of ``series_uids``, or its only series; InputError otherwise."""
    candidates = find_series(folder)
    if not candidates:
        raise InputError(folder, "is a folder with no DICOM image series (MR, CT or PET) in it; give a NIfTI or NRRD "
                                 "file, or a folder of DICOM files")
    if series_uids:
        chosen = [s for s in candidates if s.uid in series_uids]
        if not chosen:
            raise InputError(folder, f"holds no series {' or '.join(series_uids)}; it has: "
                                     + "; ".join(s.summary() for s in candidates))
    else:
        chosen = candidates
    if len(chosen) > 1:
        raise InputError(folder, f"holds {len(chosen)} image series; choose one with --series-uid: "
                                 + "; ".join(s.summary() for s in chosen))
    return chosen[0]


def check_geometry(series: DicomSeries) -> DicomSeries:
    """Sort the series' files along the slice normal after checking that they form one regular volume; InputError
    naming the folder and the problem otherwise."""
    where = series.folder
    if series.sop_class in MULTI_FRAME:
        raise InputError(where, f"series {series.uid} is {MULTI_FRAME[series.sop_class]} (multi-frame), which is "
                                "not supported yet; export it as single-frame images")
    if len(series.files) < 2:
        raise InputError(where, f"series {series.uid} has a single image: not a volume")
    headers = series.headers
    missing = [str(series.files[n].name) for n, h in enumerate(headers)
               if any(h.get(t) is None for t in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"))]
    if missing:
        raise InputError(where, f"{missing[0]} lacks position, orientation or pixel spacing tags")
    _same(series, "ImageOrientationPatient", COSINE_TOLERANCE, "mixed slice orientations")
    _same(series, "PixelSpacing", POSITION_TOLERANCE_MM, "mixed pixel spacings")
    _same(series, "Rows", 0, "mixed image sizes")
    _same(series, "Columns", 0, "mixed image sizes")
    if len({h.get("FrameOfReferenceUID") for h in headers}) > 1:
        raise InputError(where, f"series {series.uid} mixes frames of reference")
    order = _slice_order(series)
    series.files = [series.files[n] for n in order]
    series.headers = [series.headers[n] for n in order]
    return series


def _same(series: DicomSeries, tag: str, tolerance: float, problem: str) -> None:
    values = np.array([np.atleast_1d(np.asarray(h[tag], dtype=float)) for h in series.headers])
    if np.any(np.abs(values - values[0]) > tolerance):
        distinct = len({tuple(np.round(v, 4)) for v in values})
        raise InputError(series.folder, f"series {series.uid} has {problem} ({distinct} different {tag} values)")


def slice_normal(orientation: Iterable[float]) -> np.ndarray:
    """The unit normal (LPS) of slices with ImageOrientationPatient ``orientation`` (row and column cosines)."""
    cosines = np.asarray(list(orientation), dtype=float)
    normal = np.cross(cosines[:3], cosines[3:])
    return normal / np.linalg.norm(normal)


def _slice_order(series: DicomSeries) -> list[int]:
    """File indices sorted along the normal; InputError for duplicates, gaps, or slices off the normal (tilt)."""
    where, uid = series.folder, series.uid
    normal = slice_normal(series.headers[0]["ImageOrientationPatient"])
    positions = np.array([np.asarray(h["ImagePositionPatient"], dtype=float) for h in series.headers])
    distance = positions @ normal
    order = list(np.argsort(distance, kind="stable"))
    gaps = np.diff(distance[order])
    if np.any(gaps < POSITION_TOLERANCE_MM):
        raise InputError(where, f"series {uid} has two images at the same slice position (echoes, phases or "
                                "repeated acquisitions mixed in one series)")
    step = float(np.min(gaps))
    if np.any(gaps > (1 + GAP_TOLERANCE) * step):
        worst = int(np.argmax(gaps))
        raise InputError(where, f"series {uid} has irregular slice spacing: a gap of {gaps[worst]:.3g} mm after "
                                f"slice {worst + 1} of {len(gaps) + 1} where the smallest is {step:.3g} mm (a missing "
                                "slice?)")
    lateral = positions[order] - positions[order[0]] - np.outer(distance[order] - distance[order[0]], normal)
    if np.max(np.linalg.norm(lateral, axis=1)) > max(POSITION_TOLERANCE_MM, 0.01 * step):
        raise InputError(where, f"series {uid} has slices that do not stack along their normal (gantry tilt or "
                                "several stacks)")
    return [int(n) for n in order]


def read_series(folder: str | os.PathLike[str], series_uids: Sequence[str] = ()) -> tuple[sitk.Image, DicomSeries]:
    """The chosen series of ``folder`` as a volume (LPS geometry from the tags) and its description."""
    series = check_geometry(choose_series(folder, series_uids))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(path) for path in series.files])
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise InputError(folder, f"series {series.uid} cannot be read ({str(error).strip().splitlines()[-1]})") \
            from None
    _check_read_geometry(image, series)
    if image.GetPixelID() == sitk.sitkFloat64:  # GDCM's rescale gives doubles; float32 holds 16-bit data exactly
        image = sitk.Cast(image, sitk.sitkFloat32)
    return image, series


def _check_read_geometry(image: sitk.Image, series: DicomSeries) -> None:
    """The volume's origin, spacing and direction must be those the tags give (GDCM trusts other tags)."""
    first = series.headers[0]
    cosines = np.asarray(first["ImageOrientationPatient"], dtype=float)
    normal = slice_normal(cosines)
    row_spacing, column_spacing = (float(v) for v in first["PixelSpacing"])
    positions = [np.asarray(h["ImagePositionPatient"], dtype=float) for h in series.headers]
    step = float(np.min(np.diff([p @ normal for p in positions])))
    expected_direction = np.column_stack([cosines[:3], cosines[3:], normal]).ravel()
    expected = {"origin": (image.GetOrigin(), positions[0]), "direction": (image.GetDirection(), expected_direction),
                "spacing": (image.GetSpacing(), (column_spacing, row_spacing, step))}
    for what, (got, want) in expected.items():
        if not np.allclose(got, want, atol=1e-3, rtol=1e-4):
            raise InputError(series.folder, f"series {series.uid}: the volume read has {what} {np.round(got, 4)} "
                                            f"but the DICOM tags give {np.round(want, 4)}")

