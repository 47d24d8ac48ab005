"""What the report says, once for both renderers: the title, the disclaimer, the section headings and the text
of the summary blocks, so that the HTML page and the PDF cannot drift apart in wording or numbers."""

from __future__ import annotations

from typing import Any

from .data import ReportData, input_label
from .tables import cell_text, present_columns

TITLE = "Spinal cord MS lesion report"
#: On the first page and in every PDF page footer: the numbers come from an automatic (or corrected) mask.
DISCLAIMER = "Not for diagnostic use without review by a qualified clinician."
#: Section headings, in page order.
HEADINGS = {
    "load": "Lesion load",
    "levels": "Lesions per vertebral level",
    "pictures": "Key slices",
    "lesions": "Lesions",
    "change": "Change since the baseline scan",
    "prediction": "Prediction",
    "settings": "How the numbers were computed",
}
#: The columns that name a row: repeated in every part of a table cut to fit the page.
LESION_KEY = "lesion_id"
LEVEL_KEY = "level"
CHANGE_KEY = "change_id"
#: Shown for a report made without a patient identifier.
NO_PATIENT_ID = "not given"


def patient_text(data: ReportData) -> str:
    return data.patient_id or NO_PATIENT_ID


def identification(data: ReportData) -> list[tuple[str, str]]:
    """Who and what the report is about: patient, date, image and lesion mask file names (each station's)."""
    files = [(input_label(role), path.name) for role, path in data.inputs.items()
             if role.partition("_")[0] in ("image", "lesion")]
    return [("Patient ID", patient_text(data)), ("Report date", data.created), *files]


def totals(data: ReportData) -> list[tuple[str, str]]:
    """The lesion load: count, total volume and, with a soft map, the soft-weighted volume (mm3)."""
    items = [("Lesions", str(data.lesion_count)),
             ("Total lesion volume", f"{cell_text('volume_mm3', data.total_volume_mm3)} mm³")]
    if data.total_soft_volume_mm3 is not None:
        items.append(("Soft-weighted volume", f"{cell_text('volume_mm3', data.total_soft_volume_mm3)} mm³"))
    return items


def load_note(data: ReportData) -> str:
    """One sentence on the lesions' spread over levels, or why there are none."""
    if data.lesion_count == 0:
        return "No lesion in the mask."
    levels = [row["level"] for row in data.level_rows if row["lesion_count"] and row["level"] != "unassigned"]
    if not levels:
        return "No lesion has a vertebral level (no level source given, or lesions outside it)."
    return f"Lesions at {', '.join(levels)} (by primary level: the level holding most of a lesion's voxels)."


def level_columns(data: ReportData) -> list[str]:
    return present_columns(data.level_rows)


def lesion_columns(data: ReportData) -> list[str]:
    """Every column the analysis' lesion rows carry, less the empty ones (new measures appear by themselves)."""
    return present_columns(data.lesion_rows)


def change_columns(longitudinal: dict[str, Any]) -> list[str]:
    return present_columns(longitudinal.get("rows") or [])
