"""MRI contrasts the lesion models know, and reading a contrast hint from a BIDS file name.

One list for the whole package (CLI choices, manifests, phantoms, the Slicer panel). Names follow BIDS suffixes:
``T2starw`` is T2*-weighted, ``UNIT1`` the uniform MP2RAGE image.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import InputError

CONTRASTS: tuple[str, ...] = ("T2w", "T2starw", "STIR", "PSIR", "T1w", "UNIT1")


def contrast_label(contrast: str) -> str:
    """How people write a contrast: the BIDS name with "star" spelled "*" (``T2starw`` -> ``T2*w``)."""
    return contrast.replace("star", "*")


def guess_contrast(path: str | os.PathLike[str]) -> str | None:
    """The BIDS suffix of a file name (``sub-01_T2starw.nii.gz`` -> ``T2starw``), if it is a known contrast."""
    name = Path(path).name.split(".")[0]
    match = re.search(r"_([A-Za-z0-9]+)$", name)
    if match:
        for contrast in CONTRASTS:
            if match.group(1).lower() == contrast.lower():
                return contrast
    return None


def resolve_contrast(hint: str, path: str | os.PathLike[str], description: str | None = None
                     ) -> tuple[str | None, str]:
    """(contrast or None, where it came from) for a hint of ``auto`` or a contrast name (``T2*w`` accepted).
    ``auto`` reads the BIDS suffix of the file name, else the DICOM series ``description`` of a DICOM input."""
    if hint == "auto":
        if guessed := guess_contrast(path):
            return guessed, "BIDS suffix of the file name"
        if description and (described := contrast_from_description(description)):
            return described, "DICOM series description"
        return None, "unknown (no BIDS suffix)" if description is None else "unknown (not in the series description)"
    for contrast in CONTRASTS:
        if hint.lower() in (contrast.lower(), contrast_label(contrast).lower()):
            return contrast, "given"
    raise InputError(None, f"unknown contrast {hint!r}; choose auto or one of {', '.join(CONTRASTS)}")


def contrast_from_description(description: str) -> str | None:
    """A known contrast named in free text such as a DICOM series description ("sag T2*w", "STIR_SAG"), if any.

    Longer names are tried first, so "T2starw"/"T2*w" is not mistaken for "T2w"."""
    text = description.lower()
    for contrast in sorted(CONTRASTS, key=len, reverse=True):
        if contrast.lower() in text or contrast_label(contrast).lower() in text:
            return contrast
    return None
