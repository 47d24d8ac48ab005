"""How the report's tables show their columns: labels with units, cell text, and which columns are worth a place.

Shared by the HTML page and the PDF so that both print the same numbers the same way. The columns come from the
rows themselves (the analysis' lesion and level rows, the longitudinal events), never from a list kept here:
a measure added to the analysis' rows appears in the report without a change to this package. Known keys get a
hand-written label; any other key is labelled from its name, with the unit its suffix states (``max_area_mm2``
-> "Max area (mm²)"), and printed with that unit's decimals.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Labels of the columns we know (units in parentheses). Others: :func:`column_label`.
LABELS: dict[str, str] = {
    "lesion_id": "Lesion",
    "voxel_count": "Voxels",
    "volume_mm3": "Volume (mm³)",
    "soft_volume_mm3": "Soft volume (mm³)",
    "mean_probability": "Mean probability",
    "flag": "Flag",
    "centroid_r_mm": "Centroid R (mm)",
    "centroid_a_mm": "Centroid A (mm)",
    "centroid_s_mm": "Centroid S (mm)",
    "si_extent_mm": "S-I extent (mm)",
    "primary_level": "Level",
    "levels": "Levels touched",
    "level_volumes_mm3": "Volume per level (mm³)",
    "outside_cord_volume_mm3": "Outside cord (mm³)",
    "level": "Level",
    "lesion_count": "Lesions (by primary level)",
    "lesions_touching": "Lesions touching",
    "change_id": "Event",
    "class": "Change",
    "baseline_ids": "Baseline lesions",
    "followup_ids": "Follow-up lesions",
    "baseline_volume_mm3": "Baseline volume (mm³)",
    "followup_volume_mm3": "Follow-up volume (mm³)",
    "volume_change_percent": "Volume change (%)",
}
#: Key suffix -> (unit shown in the label, decimals): volumes and lengths to 0.1, probabilities to 0.01.
UNITS: tuple[tuple[str, str, int], ...] = (
    ("_mm3", "mm³", 1), ("_mm2", "mm²", 1), ("_mm", "mm", 1), ("_percent", "%", 1), ("_pct", "%", 1),
    ("probability", "", 2),
)
#: Significant digits of a number whose key names no unit.
SIGNIFICANT_DIGITS = 3
#: What an empty cell shows (None: not measured, e.g. soft volume without a soft map).
MISSING = "–"
#: Decimal numbers inside text cells (``C2=12.000000001;C3=4.5``), reformatted with the column's decimals.
_NUMBER_IN_TEXT = re.compile(r"-?\d+\.\d+")


def column_label(key: str) -> str:
    """The header of column ``key``: :data:`LABELS`, else its name with its unit (``max_area_mm2`` -> "Max area
    (mm²)")."""
    if key in LABELS:
        return LABELS[key]
    for suffix, unit, _ in UNITS:
        if key.endswith(suffix) and unit:
            return f"{key[:-len(suffix)].replace('_', ' ').capitalize()} ({unit})"
    return key.replace("_", " ").capitalize()


def cell_text(key: str, value: Any) -> str:
    """The text of one cell: numbers rounded by the unit of ``key`` (whole numbers without a unit are counts,
    printed as they are), booleans as yes/no, lists comma-separated, decimals inside text (per-level volumes)
    rounded too, and :data:`MISSING` for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    decimals = _decimals(key)
    if isinstance(value, int):  # a count, unless the key names a unit (a volume that happens to be whole)
        return str(value) if decimals is None else _number(float(value), decimals)
    if isinstance(value, float):
        return _number(value, decimals)
    if isinstance(value, (list, tuple)):
        return ", ".join(cell_text(key, item) for item in value)
    text = str(value).replace(";", "; ")
    return _NUMBER_IN_TEXT.sub(lambda match: _number(float(match.group()), decimals), text)


def present_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The keys of ``rows`` in first-seen order, less those empty in every row (None or ""): a soft volume
    without a soft map, the outside-cord volume without a cord mask."""
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row))
    return [key for key in keys if any(row.get(key) not in (None, "") for row in rows)]


def column_groups(columns: Sequence[str], key: str, widths: Mapping[str, float], limit: float) -> list[list[str]]:
    """``columns`` packed in order into groups whose ``widths`` add up to at most ``limit`` (a page's width), each
    group starting with ``key`` (the lesion number) when it is one of the columns: a table too wide for the page
    is printed as several tables that still say which row is which. A single column wider than ``limit`` gets a
    group of its own."""
    lead = [key] if key in columns else []
    groups: list[list[str]] = []
    current: list[str] = []
    used = sum(widths[column] for column in lead)
    for column in (column for column in columns if column != key):
        if current and used + widths[column] > limit:
            groups.append([*lead, *current])
            current, used = [], sum(widths[column] for column in lead)
        current.append(column)
        used += widths[column]
    return [*groups, [*lead, *current]] if current or not groups else groups


def is_numeric(key: str, rows: Iterable[dict[str, Any]]) -> bool:
    """Whether column ``key`` holds numbers only (right-aligned in the tables)."""
    values = [row.get(key) for row in rows if row.get(key) is not None]
    return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _decimals(key: str) -> int | None:
    """Decimals for the unit named by ``key``'s suffix; None (significant digits) when it names none."""
    return next((decimals for suffix, _, decimals in UNITS if key.endswith(suffix)), None)


def _number(value: float, decimals: int | None) -> str:
    """``value`` with ``decimals`` decimals, or SIGNIFICANT_DIGITS significant digits (never an exponent)."""
    if not math.isfinite(value):
        return str(value)
    if decimals is None:
        magnitude = math.floor(math.log10(abs(value))) if value else 0
        decimals = max(0, SIGNIFICANT_DIGITS - 1 - magnitude)
    return f"{value:.{decimals}f}"
