"""The report's longitudinal section: what changed since a baseline scan.

The comparison itself (registration, lesion matching, the change classes) is
:func:`..analysis.longitudinal.compare_scans`, with the ``compare`` command's summary and event rows. This module
turns them into the plain dict the renderers take, so that the section renders (and is tested) from any source of
this shape::

    {"summary": {"new": 1, "disappeared": 0, "merged": 0, "split": 0, "enlarged": 1, "shrunk": 0, "stable": 3,
                 "baseline_volume_mm3": 120.0, "followup_volume_mm3": 151.5, ...},
     "rows": [{"change_id": 1, "class": "new", "followup_ids": "4", "followup_volume_mm3": 9.0, ...}, ...],
     "baseline": {"image": "ses-01_T2w.nii.gz", "lesion": "ses-01_T2w_lesion_seg.nii.gz"},
     "figure": b"<PNG: the registration check>"}

Only ``summary`` is required; ``rows`` (one per change event, any columns: rendered generically), ``baseline``
(file names) and ``figure`` are shown when present.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..analysis.report import read_mask_on
from ..image_io import read_image
from .tables import cell_text

#: The change classes in the order the report lists them, with their labels.
CHANGE_CLASSES: dict[str, str] = {
    "new": "New", "enlarged": "Enlarged", "stable": "Stable", "shrunk": "Shrunk", "disappeared": "Disappeared",
    "merged": "Merged", "split": "Split",
}


def compare_for_report(baseline_image: str | os.PathLike[str], baseline_lesion: str | os.PathLike[str],
                       followup_image: str | os.PathLike[str],
                       followup_lesion: str | os.PathLike[str], series_uids: Sequence[str] = ()) -> dict[str, Any]:
    """Compare the follow-up scan (the report's) with its baseline, as ``compare`` does with its defaults
    (registration of the whole images), and return the change section's dict. Each mask must lie on its own
    image's grid (images may be DICOM folders, ``series_uids`` choosing each one's series). InputError for unusable
    files and for a failed or implausible registration."""
    from ..analysis.longitudinal import change_rows, compare_scans, comparison_summary

    scans = []
    for image_path, lesion_path in ((baseline_image, baseline_lesion), (followup_image, followup_lesion)):
        image = read_image(image_path, series_uids)
        scans += [image, read_mask_on(lesion_path, image, f"its image {image_path}", resample=False)]
    result = compare_scans(*scans)
    return {"summary": comparison_summary(result, inputs={}), "rows": change_rows(result),
            "baseline": {"image": Path(baseline_image).name, "lesion": Path(baseline_lesion).name},
            "figure": result.figure}


def change_counts(longitudinal: dict[str, Any]) -> list[tuple[str, int]]:
    """(label, count) of each change class, in :data:`CHANGE_CLASSES` order (0 when the summary lacks one)."""
    summary = longitudinal.get("summary", {})
    return [(label, int(summary.get(key, 0))) for key, label in CHANGE_CLASSES.items()]


def volume_sentence(longitudinal: dict[str, Any]) -> str:
    """``Total lesion volume 120.0 mm³ at baseline, 151.5 mm³ now: +31.5 mm³ (+26.3%).`` The percentage is left
    out when the baseline had no lesion volume; the whole sentence when the summary has no volumes."""
    summary = longitudinal.get("summary", {})
    before, after = summary.get("baseline_volume_mm3"), summary.get("followup_volume_mm3")
    if before is None or after is None:
        return ""
    change = after - before
    percent = f" ({change / before * 100:+.1f}%)" if before > 0 else ""
    return (f"Total lesion volume {cell_text('volume_mm3', float(before))} mm³ at baseline, "
            f"{cell_text('volume_mm3', float(after))} mm³ now: {change:+.1f} mm³{percent}.")


def baseline_text(longitudinal: dict[str, Any]) -> str:
    """``Baseline: IMAGE with lesion mask MASK.`` from the dict's ``baseline`` names; empty without them."""
    baseline = longitudinal.get("baseline") or {}
    if not baseline.get("image"):
        return ""
    mask = f" with lesion mask {baseline['lesion']}" if baseline.get("lesion") else ""
    return f"Baseline: {baseline['image']}{mask}."
