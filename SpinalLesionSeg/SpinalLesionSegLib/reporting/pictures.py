"""The report's pictures: the key slices (drawn by :mod:`..analysis.overlay_pictures`, the batch QC page's
renderer, so both show lesions the same way) and the per-level bar chart (matplotlib, Agg, imported when drawn).

Each picture is PNG bytes with its file name, title and caption: the PDF embeds the bytes, the HTML page links the
file, and :mod:`.writer` publishes the files beside the page. File names are fixed by role (``report_axial_1.png``
is always the largest lesion), so a re-run replaces every picture of the previous report and removes those it no
longer has.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from PIL import Image

from ..analysis.overlay_pictures import AXIAL_FIELD_MM, render_lesion_pictures
from ..defaults import CANDIDATE_THRESHOLD
from ..image_io import read_image
from .data import MAX_KEY_LESIONS, ReportData
from .tables import cell_text

#: Every picture role a report may have, with its file name (beside report.html).
PICTURE_FILES: dict[str, str] = {
    "overview": "report_overview.png",
    **{f"axial_{rank}": f"report_axial_{rank}.png" for rank in range(1, MAX_KEY_LESIONS + 1)},
    "levels": "report_levels.png",
    "registration": "report_registration.png",
}
#: The roles of the key slices (the overview, then the axial close-ups, largest lesion first).
KEY_SLICE_ROLES = tuple(role for role in PICTURE_FILES if role == "overview" or role.startswith("axial_"))
#: The chart's size (inches) and resolution (dots per inch): page-wide in the PDF, sharp when printed.
CHART_SIZE_IN = (7.0, 2.6)
CHART_DPI = 150
#: The chart's bar colours: lesion volume, and the soft-weighted volume beside it.
VOLUME_COLOUR = "#c0392b"
SOFT_COLOUR = "#f0b400"


@dataclass(frozen=True)
class ReportPicture:
    """One picture of the report: PNG bytes, its size (px), file name, title and caption (plain text)."""

    role: str
    file_name: str
    title: str
    caption: str
    png: bytes

    @property
    def size_px(self) -> tuple[int, int]:
        """(width, height) in pixels, read from the PNG header."""
        with Image.open(io.BytesIO(self.png)) as picture:
            return picture.size


def render_pictures(data: ReportData) -> list[ReportPicture]:
    """The report's pictures: the sagittal overview and an axial close-up of each key lesion (when there are
    lesions), the per-level chart (when there is a level or a lesion volume to show) and the registration check
    of the longitudinal comparison (when it has one)."""
    pictures = _key_slices(data)
    chart = level_chart(data.level_rows)
    if chart is not None:
        pictures.append(_picture("levels", "Lesion volume per vertebral level",
                                 "Bars: lesion volume at each level; n: lesions whose primary level it is."
                                 + (" Yellow: soft-weighted volume." if data.total_soft_volume_mm3 is not None
                                    else ""), chart))
    figure = (data.longitudinal or {}).get("figure")
    if figure:
        pictures.append(_picture("registration", "Registration of the follow-up onto the baseline",
                                 "Left: checkerboard of the baseline and the registered follow-up (edges must run on "
                                 "across the squares). Right: the baseline with the follow-up's edges. Top: "
                                 "sagittal, bottom: axial.", figure))
    return pictures


def _key_slices(data: ReportData) -> list[ReportPicture]:
    """The sagittal overview and the axial close-ups of the key lesions (none without lesions)."""
    pictures: list[ReportPicture] = []
    if data.key_lesions:
        image = data.volumes["image"] if "image" in data.volumes else read_image(data.inputs["image"],
                                                                                 data.series_uids)
        drawn = render_lesion_pictures(image, data.labels, data.key_lesions,
                                       soft_path=data.volumes.get("soft", data.inputs.get("soft")),
                                       cord_path=data.volumes.get("cord", data.inputs.get("cord")))
        pictures.append(_picture("overview", "Sagittal overview", _overview_caption(data), drawn.overview))
        rows = {row["lesion_id"]: row for row in data.lesion_rows}
        for rank, lesion_id in enumerate((n for n in data.key_lesions if n in drawn.axial), start=1):
            pictures.append(_picture(f"axial_{rank}", _lesion_title(rows[lesion_id]),
                                     f"Axial slice through the lesion's centroid, {AXIAL_FIELD_MM:g} mm field "
                                     "(anterior up, the patient's right on the left).", drawn.axial[lesion_id]))
    return pictures


def _picture(role: str, title: str, caption: str, png: bytes) -> ReportPicture:
    return ReportPicture(role=role, file_name=PICTURE_FILES[role], title=title, caption=caption, png=png)


def _lesion_title(row: dict[str, Any]) -> str:
    """``Lesion 3: C3, 27.0 mm³`` (the level left out when no level source was given)."""
    level = row.get("primary_level")
    where = f"{level}, " if level and level != "unassigned" else ""
    return f"Lesion {row['lesion_id']}: {where}{cell_text('volume_mm3', row['volume_mm3'])} mm³"


def _overview_caption(data: ReportData) -> str:
    through = "the cord's middle" if data.has("cord") else "the largest lesion"
    soft = (f" Yellow tint: lesion probability of at least {CANDIDATE_THRESHOLD:g} in the soft map (maximum "
            "across the slices)." if data.has("soft") else "")
    return (f"Sagittal slice through {through} (superior up, anterior on the left). Red: the outline of every "
            "lesion, projected onto this slice from both sides; numbers: the lesions shown in the axial slices."
            + soft)


def level_chart(level_rows: list[dict[str, Any]]) -> bytes | None:
    """A bar chart (PNG) of the lesion volume (mm3) per level in anatomical order, with each level's lesion
    count (by primary level) over its bar and the soft-weighted volume beside it when known. The unassigned bar
    is drawn only when it holds volume. None when there is nothing to draw (no level and no lesion)."""
    rows = [row for row in level_rows if row["level"] != "unassigned" or row["volume_mm3"] > 0]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=CHART_SIZE_IN, dpi=CHART_DPI, layout="constrained")
    axes = figure.add_subplot()
    has_soft = rows[0]["soft_volume_mm3"] is not None
    width = 0.4 if has_soft else 0.6
    positions = [index - (width / 2 if has_soft else 0.0) for index in range(len(rows))]
    bars = axes.bar(positions, [row["volume_mm3"] for row in rows], width, color=VOLUME_COLOUR, label="volume")
    if has_soft:
        axes.bar([p + width for p in positions], [row["soft_volume_mm3"] for row in rows], width,
                 color=SOFT_COLOUR, label="soft-weighted volume")
        axes.legend(frameon=False, fontsize=8, loc="upper right")
    axes.bar_label(bars, labels=[f"n={row['lesion_count']}" if row["lesion_count"] else "" for row in rows],
                   fontsize=8, padding=2)
    axes.set_xticks(range(len(rows)), [row["level"] for row in rows], fontsize=9)
    axes.set_ylabel("volume (mm³)", fontsize=9)
    axes.tick_params(axis="y", labelsize=8)
    axes.margins(y=0.18)
    axes.spines[["top", "right"]].set_visible(False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
