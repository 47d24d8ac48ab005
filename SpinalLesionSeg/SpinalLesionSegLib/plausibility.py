"""Plausibility warnings: inputs that are valid but probably not what the user meant.

Refusals (:mod:`.validation`) stop a run on data that cannot be right. These checks find data that can be read but
looks like a mix-up, and say so in one line without stopping: a T2 image given as a lesion mask or a levels map
(many distinct values, mostly non-zero), a cord mask for the region of interest that comes from another scan
(another grid, or lying partly outside the image), a contrast hint that the file name, its BIDS sidecar or the
DICOM series description contradicts. Each function returns the warning text (no prefix), or None / [] when all
looks plausible; the caller shows it (the sidecar's ``warnings``, the CLI's stderr, the Slicer status line).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import safe_json
from .contrasts import contrast_from_description, contrast_label, guess_contrast
from .errors import InputError
from .geometry import ijk_to_ras_matrix, ras_to_voxel, voxel_to_ras
from .image_io import same_grid, split_image_suffix

#: A mask with more distinct non-zero values than this is probably an image (an instance-labelled lesion mask
#: rarely has more than a few dozen; an MR image has hundreds to thousands).
MASK_MAX_LABELS = 255
#: A levels map with more distinct labels than TotalSpineSeg's highest code (100) is probably an image.
LEVELS_MAX_LABELS = 100
#: A mask or label map with more than this fraction of its voxels non-zero is probably an image: lesions, cord
#: and vertebrae fill a small part of a spinal MRI's field of view.
MAX_FOREGROUND_FRACTION = 0.5
#: BIDS sidecar keys that describe the acquisition in words.
DESCRIPTION_KEYS = ("SeriesDescription", "ProtocolName")


def looks_like_image(values: np.ndarray, what: str, max_labels: int = MASK_MAX_LABELS) -> str | None:
    """A warning when label data (``what``: "a lesion mask", "a levels map") has the statistics of an image."""
    foreground = values[values != 0]
    fraction = foreground.size / max(values.size, 1)
    n_labels = np.unique(foreground).size if foreground.size else 0
    if n_labels <= max_labels and fraction <= MAX_FOREGROUND_FRACTION:
        return None
    return (f"looks like an image, not {what} ({n_labels} distinct values, {fraction:.0%} of voxels non-zero); "
            "check that the right file was given")


def roi_mask_fit(mask: sitk.Image, image: sitk.Image) -> list[str]:
    """Warnings when a cord mask given as the region of interest seems to belong to another scan: another voxel
    grid, or foreground voxels lying outside the image's field of view (mm, voxel edges included)."""
    warnings = [] if same_grid(mask, image) else ["is on another voxel grid than the image (from another scan?)"]
    kji = np.argwhere(sitk.GetArrayViewFromImage(mask) != 0)
    if kji.size:
        ras = voxel_to_ras(ijk_to_ras_matrix(mask), kji[:, ::-1].astype(float))
        ijk = ras_to_voxel(ijk_to_ras_matrix(image), ras)
        outside = np.any((ijk < -0.5) | (ijk > np.asarray(image.GetSize()) - 0.5), axis=1).mean()
        if outside > 0:
            warnings.append(f"has {outside:.0%} of its voxels outside the image's field of view (from another "
                            "scan, or another position in the scanner?)")
    return warnings


def contrast_evidence(path: str | os.PathLike[str], description: str | None = None) -> dict[str, str]:
    """What the files say about an image's contrast: its BIDS file-name suffix, and the description in the BIDS
    JSON sidecar beside it (``sub-01_T2w.json``: SeriesDescription, ProtocolName), or of a DICOM input its series
    ``description``. Unreadable sidecars say nothing."""
    evidence = {}
    if named := guess_contrast(path):
        evidence["its file name"] = named
    if description is not None:
        if described := contrast_from_description(description):
            evidence["the DICOM series description"] = described
        return evidence
    sidecar = Path(path).with_name(split_image_suffix(path)[0] + ".json")
    try:
        record = safe_json.load_file(sidecar, max_bytes=1 << 20) if sidecar.is_file() else {}
    except InputError:
        record = {}
    for key in DESCRIPTION_KEYS:
        described = contrast_from_description(str(record.get(key, ""))) if isinstance(record, dict) else None
        if described:
            evidence[f"the {key} of {sidecar.name}"] = described
            break
    return evidence


def contrast_conflict(contrast: str | None, evidence: Mapping[str, str]) -> str | None:
    """A warning when the contrast used differs from one that ``evidence`` (source -> contrast) names."""
    for source, named in evidence.items():
        if contrast and named != contrast:
            return (f"the contrast used is {contrast_label(contrast)} but {source} says {contrast_label(named)}; "
                    "check the contrast hint")
    return None

