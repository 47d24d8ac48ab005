"""A longitudinal comparison from files: each scan's image, lesion mask, soft map and cord, read, checked and
compared, with the inputs recorded (path and sha256) in ``summary.json``.

Shared by ``spinal-lesion-seg compare`` and ``batch --compare-sessions`` (one reading rule for both). A scan's
masks must lie on that scan's own grid: they are drawn on it, and one on another grid is a mix-up (only the
registration brings the two scans together). The comparison itself is :func:`.longitudinal.compare_scans`, which the
Slicer panel calls with its nodes' images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..image_io import image_to_array, input_digest, read_image, same_grid, sha256_file
from .level_sources import load_level_source
from .levels import LevelSource
from .longitudinal import ComparisonOutputs, compare_scans, write_comparison
from .report import read_mask, soft_values

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class ScanFiles:
    """One scan's files: the image and its binary lesion mask, optionally its soft map (0..1) and cord mask."""

    image: PathLike
    lesion: PathLike
    soft: PathLike | None = None
    cord: PathLike | None = None

    def roles(self, scan: str) -> dict[str, str]:
        """Role -> path of the files given, roles named as in ``summary.json``'s ``inputs`` (``scan`` = baseline
        or followup): ``baseline``, ``baseline_lesion``, ``baseline_soft``, ``baseline_cord``."""
        return {(scan if f.name == "image" else f"{scan}_{f.name}"): str(path)
                for f in fields(self) if (path := getattr(self, f.name)) is not None}

    def entries(self, scan: str, series_uids: Sequence[str] = ()) -> dict[str, dict[str, str]]:
        """The ``inputs`` entries of ``summary.json`` for this scan: role -> path and sha256 (of a DICOM image
        folder: over its series' files, :func:`..image_io.input_digest`)."""
        return {role: {"path": path, "sha256": input_digest(path, series_uids) if role == scan else sha256_file(path)}
                for role, path in self.roles(scan).items()}


@dataclass(frozen=True)
class Scan:
    """One scan read: the image and ``[k, j, i]`` arrays on its grid (mask and cord boolean, soft float 0..1)."""

    image: sitk.Image
    lesion: np.ndarray
    soft: np.ndarray | None
    cord: np.ndarray | None


def file_entry(path: PathLike) -> dict[str, str]:
    """A file as ``summary.json`` records it: its path and sha256 (a re-run compares these to know whether the
    comparison is current)."""
    return {"path": str(path), "sha256": sha256_file(path)}


def read_scan(files: ScanFiles, series_uids: Sequence[str] = ()) -> Scan:
    """Read a scan's files (the image may be a DICOM folder, ``series_uids`` choosing its series); InputError
    naming the file when a mask or map is not on the image's grid."""
    image = read_image(files.image, series_uids)
    own = f"its image {files.image}"
    lesion = image_to_array(on_grid(read_mask(files.lesion), image, files.lesion, own)) != 0
    soft = soft_values(on_grid(read_image(files.soft), image, files.soft, own), files.soft) if files.soft else None
    cord = image_to_array(on_grid(read_mask(files.cord), image, files.cord, own)) != 0 if files.cord else None
    return Scan(image, lesion, soft, cord)


def on_grid(image: sitk.Image, reference: sitk.Image, path: PathLike, what: str) -> sitk.Image:
    """``image`` (read from ``path``) unchanged when on ``reference``'s grid (``what`` names it); InputError
    otherwise."""
    if not same_grid(image, reference):
        raise InputError(path, f"is not on the voxel grid of {what} (size {list(image.GetSize())} vs "
                               f"{list(reference.GetSize())}, spacing {image.GetSpacing()} vs "
                               f"{reference.GetSpacing()} mm); give the file made on that scan")
    return image


def read_levels(path: PathLike, baseline: sitk.Image, baseline_path: PathLike) -> LevelSource:
    """The level source, whose label image (if any) must lie on the baseline grid."""
    source = load_level_source(path)
    if source.regions is not None:
        on_grid(source.regions, baseline, path, f"the baseline image {baseline_path}")
    return source


def compare_files(baseline: ScanFiles, followup: ScanFiles, out_dir: PathLike, *, levels: PathLike | None = None,
                  series_uids: Sequence[str] = (), **options: Any) -> ComparisonOutputs:
    """Compare two scans' files and publish the comparison set into ``out_dir`` (:func:`.longitudinal.
    write_comparison`); ``series_uids`` choose the series of DICOM image folders; ``options`` are
    :func:`.longitudinal.compare_scans`'s (register, change_percent, min_change_mm3, tolerance_mm, connectivity)."""
    before, after = read_scan(baseline, series_uids), read_scan(followup, series_uids)
    source = read_levels(levels, before.image, baseline.image) if levels else None
    result = compare_scans(before.image, before.lesion, after.image, after.lesion, baseline_soft=before.soft,
                           followup_soft=after.soft, baseline_cord=before.cord, followup_cord=after.cord,
                           levels=source, followup_source=followup.image, **options)
    inputs = baseline.entries("baseline", series_uids) | followup.entries("followup", series_uids)
    if levels:
        inputs["levels"] = file_entry(levels)
    return write_comparison(result, Path(out_dir), inputs=inputs)
