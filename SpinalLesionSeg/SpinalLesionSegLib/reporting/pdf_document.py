"""The report as a PDF (A4 portrait), laid out by ReportLab's platypus: paragraphs, tables that break across pages
with their header row repeated, the pictures, and on every page a header (title, patient ID) and a footer (the
disclaimer, date, software version, page n of m).

The fonts are the PDF standard fonts (Helvetica): nothing to embed or to find on the machine, so the PDF looks the
same from Slicer on Windows as from a Linux server. They cover Latin-1 and the few symbols the report uses (³, –,
·); other characters (a file name in another script) cannot be drawn. Text from files or the user is escaped
for platypus' mark-up.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    Image,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from .change import baseline_text, change_counts, volume_sentence
from .data import ReportData
from .pictures import KEY_SLICE_ROLES, ReportPicture
from .sections import (
    CHANGE_KEY,
    DISCLAIMER,
    HEADINGS,
    LESION_KEY,
    LEVEL_KEY,
    TITLE,
    change_columns,
    identification,
    lesion_columns,
    level_columns,
    load_note,
    patient_text,
    totals,
)
from .tables import cell_text, column_groups, column_label, is_numeric

#: Page margins: the header and footer live in the top and bottom ones.
MARGIN = 16 * mm
TOP_MARGIN = 22 * mm
BOTTOM_MARGIN = 22 * mm
FRAME_WIDTH = A4[0] - 2 * MARGIN
#: Boxes (width, height) the pictures are fitted into, aspect kept: the overview beside a two-column grid of
#: axial close-ups, and the chart across the page.
OVERVIEW_BOX = (84 * mm, 140 * mm)
AXIAL_BOX = (44 * mm, 50 * mm)
CHART_WIDTH = 170 * mm
REGISTRATION_WIDTH = 130 * mm
#: Table text size (pt); a column is as wide as its widest cell text (or header word: headers wrap at spaces),
#: at most MAX_COLUMN_WIDTH (longer text wraps), plus the cell's padding (ReportLab's 6 pt each side).
TABLE_FONT_SIZE = 7.5
MAX_COLUMN_WIDTH = 90.0
CELL_PADDING = 13.0
GREY = colors.HexColor("#555555")
RED = colors.HexColor("#a61b1b")
RULE = colors.HexColor("#c8c8c8")
HEADER_FILL = colors.HexColor("#eef0f3")
ZEBRA_FILL = colors.HexColor("#f8f9fa")

_STYLES = {
    "title": ParagraphStyle("title", fontName="Helvetica-Bold", fontSize=17, leading=21, spaceAfter=6),
    "h2": ParagraphStyle("h2", fontName="Helvetica-Bold", fontSize=12, leading=15, spaceBefore=10, spaceAfter=5,
                         keepWithNext=1),
    "body": ParagraphStyle("body", fontName="Helvetica", fontSize=9, leading=12, spaceAfter=4),
    "note": ParagraphStyle("note", fontName="Helvetica", fontSize=7.5, leading=9.5, textColor=GREY, spaceAfter=3),
    "label": ParagraphStyle("label", fontName="Helvetica", fontSize=8.5, leading=11, textColor=GREY),
    "value": ParagraphStyle("value", fontName="Helvetica", fontSize=8.5, leading=11),
    "th": ParagraphStyle("th", fontName="Helvetica-Bold", fontSize=TABLE_FONT_SIZE, leading=9),
    "td": ParagraphStyle("td", fontName="Helvetica", fontSize=TABLE_FONT_SIZE, leading=9),
    "td_num": ParagraphStyle("td_num", fontName="Helvetica", fontSize=TABLE_FONT_SIZE, leading=9, alignment=2),
    "big": ParagraphStyle("big", fontName="Helvetica-Bold", fontSize=16, leading=19),
    "disclaimer": ParagraphStyle("disclaimer", fontName="Helvetica-Bold", fontSize=10, leading=13, textColor=RED),
    "picture_title": ParagraphStyle("picture_title", fontName="Helvetica-Bold", fontSize=7.5, leading=9,
                                    spaceBefore=2),
}


def render_pdf(data: ReportData, pictures: Sequence[ReportPicture]) -> bytes:
    """The report as PDF bytes, with ``pictures`` embedded (PNG)."""
    buffer = io.BytesIO()
    document = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=TOP_MARGIN,
                                 bottomMargin=BOTTOM_MARGIN, title=f"{TITLE}: {patient_text(data)}",
                                 author="spinal-lesion-seg", subject=DISCLAIMER,
                                 creator=f"spinal-lesion-seg {data.version}")
    by_role = {picture.role: picture for picture in pictures}
    story: list[Flowable] = [_paragraph(TITLE, "title"), _pairs(identification(data)), Spacer(1, 6),
                             _boxed(_paragraph(DISCLAIMER, "disclaimer"), RED)]
    story += [_heading("load"), _figures(totals(data)), Spacer(1, 4), _paragraph(load_note(data), "body")]
    story += [_heading("levels"), *_tables(data.level_rows, level_columns(data), LEVEL_KEY)]
    if "levels" in by_role:
        story += [_image(by_role["levels"], CHART_WIDTH, CHART_WIDTH), _paragraph(by_role["levels"].caption, "note")]
    story += _key_slices([p for p in pictures if p.role in KEY_SLICE_ROLES])
    story += _lesions(data)
    if data.longitudinal is not None:
        story += _change(data.longitudinal, by_role.get("registration"))
    if data.prediction:
        story += [_heading("prediction"), _pairs(data.prediction)]
    story += [_heading("settings"), _pairs(data.settings)]
    document.build(story, canvasmaker=_page_canvas(data))
    return buffer.getvalue()


def _paragraph(text: str, style: str) -> Paragraph:
    return Paragraph(escape(text), _STYLES[style])


def _heading(key: str) -> Paragraph:
    return _paragraph(HEADINGS[key], "h2")


def _boxed(flowable: Flowable, colour: colors.Color) -> Table:
    """``flowable`` framed across the page (the disclaimer)."""
    return Table([[flowable]], colWidths=[FRAME_WIDTH], style=TableStyle([
        ("BOX", (0, 0), (-1, -1), 1.5, colour), ("LEFTPADDING", (0, 0), (-1, -1), 8),
        ("TOPPADDING", (0, 0), (-1, -1), 5), ("BOTTOMPADDING", (0, 0), (-1, -1), 6)]))


def _pairs(pairs: Sequence[tuple[str, str]]) -> Table:
    """(label, text) pairs as a two-column table; long values (fingerprints, paths) wrap."""
    rows = [[_paragraph(label, "label"), _paragraph(text, "value")] for label, text in pairs]
    return Table(rows, colWidths=[42 * mm, FRAME_WIDTH - 42 * mm], hAlign="LEFT", style=TableStyle([
        ("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0),
        ("TOPPADDING", (0, 0), (-1, -1), 1), ("BOTTOMPADDING", (0, 0), (-1, -1), 1)]))


def _figures(items: Sequence[tuple[str, str]]) -> Table:
    """Big numbers side by side, each framed, with its label under it (the lesion load, the change counts)."""
    cells = [[_paragraph(value, "big"), _paragraph(label, "label")] for label, value in items]
    width = min(46 * mm, FRAME_WIDTH / max(1, len(items)))
    return Table([cells], colWidths=[width] * len(items), hAlign="LEFT", style=TableStyle([
        ("BOX", (0, 0), (-1, -1), 0.5, RULE), ("INNERGRID", (0, 0), (-1, -1), 0.5, RULE),
        ("LEFTPADDING", (0, 0), (-1, -1), 7), ("TOPPADDING", (0, 0), (-1, -1), 5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 6), ("VALIGN", (0, 0), (-1, -1), "TOP")]))


def _tables(rows: Sequence[dict[str, Any]], columns: Sequence[str], key: str) -> list[Flowable]:
    """``rows`` as one table, or as several when its columns do not fit the page side by side: each part repeats
    the ``key`` column and says which part it is."""
    widths = _column_widths(rows, columns)
    groups = column_groups(columns, key, widths, FRAME_WIDTH)
    story: list[Flowable] = []
    for number, group in enumerate(groups, start=1):
        if len(groups) > 1:
            story.append(_paragraph(f"Part {number} of {len(groups)} of the table", "note"))
        scale = min(1.0, FRAME_WIDTH / sum(widths[column] for column in group))
        story += [_table(rows, group, [widths[column] * scale for column in group]), Spacer(1, 6)]
    return story


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str], widths: Sequence[float]) -> Table:
    """``rows`` as a table of ``columns`` (labels and cell text from :mod:`.tables`), ``widths`` in pt: header
    row repeated on every page, numbers right-aligned, alternate rows shaded."""
    styles = {key: "td_num" if is_numeric(key, rows) else "td" for key in columns}
    header = [Paragraph(escape(column_label(key)), _STYLES["th"]) for key in columns]
    body = [[Paragraph(escape(cell_text(key, row.get(key))), _STYLES[styles[key]]) for key in columns]
            for row in rows]
    return Table([header, *body], colWidths=list(widths), repeatRows=1, hAlign="LEFT", style=TableStyle([
        ("GRID", (0, 0), (-1, -1), 0.4, RULE), ("BACKGROUND", (0, 0), (-1, 0), HEADER_FILL),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, ZEBRA_FILL]),
        ("VALIGN", (0, 0), (-1, -1), "TOP"), ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3)]))


def _column_widths(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> dict[str, float]:
    """Each column's width (pt): its widest cell text or header word (headers wrap at spaces), at most
    MAX_COLUMN_WIDTH, plus the padding."""
    def width(text: str, font: str) -> float:
        return stringWidth(text, font, TABLE_FONT_SIZE)

    return {key: CELL_PADDING + min(MAX_COLUMN_WIDTH, max(
        [width(word, "Helvetica-Bold") for word in column_label(key).split()]
        + [width(cell_text(key, row.get(key)), "Helvetica") for row in rows])) for key in columns}


def _image(picture: ReportPicture, max_width: float, max_height: float) -> Image:
    """``picture`` fitted into ``max_width`` x ``max_height`` (pt), aspect kept."""
    width, height = picture.size_px
    scale = min(max_width / width, max_height / height)
    image = Image(io.BytesIO(picture.png), width=width * scale, height=height * scale)
    image.hAlign = "LEFT"
    return image


def _key_slices(pictures: Sequence[ReportPicture]) -> list[Flowable]:
    """The overview beside a two-column grid of the axial close-ups, titles under each, then each caption once."""
    if not pictures:
        return []
    overview = [[_image(p, *OVERVIEW_BOX), _paragraph(p.title, "picture_title")] for p in pictures
                if p.role == "overview"]
    axial = [[_image(p, *AXIAL_BOX), _paragraph(p.title, "picture_title")] for p in pictures if p.role != "overview"]
    grid: Flowable | str = ""
    if axial:
        rows = [axial[start:start + 2] + [""] * (2 - len(axial[start:start + 2])) for start in range(0, len(axial), 2)]
        grid = Table(rows, colWidths=[AXIAL_BOX[0] + 3 * mm] * 2, hAlign="LEFT", style=TableStyle([
            ("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 6)]))
    layout = Table([[overview[0] if overview else "", grid]], colWidths=[OVERVIEW_BOX[0] + 4 * mm, None],
                   hAlign="LEFT", style=TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"),
                                                    ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
    notes = [_paragraph(caption, "note") for caption in dict.fromkeys(p.caption for p in pictures)]
    return [_heading("pictures"), layout, *notes]


def _lesions(data: ReportData) -> list[Flowable]:
    """The lesion list: every column of the analysis' rows, in as many parts as the page width needs."""
    if not data.lesion_rows:
        return [_heading("lesions"), _paragraph("No lesion in the mask.", "body")]
    return [_heading("lesions"), *_tables(data.lesion_rows, lesion_columns(data), LESION_KEY)]


def _change(longitudinal: dict[str, Any], registration: ReportPicture | None) -> list[Flowable]:
    """The longitudinal section: baseline, counts of each change class, volume change, the events (cut like the
    lesion table), the registration check."""
    summary: list[Flowable] = [_heading("change")]
    if baseline_text(longitudinal):
        summary.append(_paragraph(baseline_text(longitudinal), "body"))
    counts = [(label, str(count)) for label, count in change_counts(longitudinal)]
    summary += [_figures(counts), Spacer(1, 4), _paragraph(volume_sentence(longitudinal), "body")]
    story: list[Flowable] = [KeepTogether(summary)]
    rows = longitudinal.get("rows") or []
    if rows:
        story += _tables(rows, change_columns(longitudinal), CHANGE_KEY)
    if registration is not None:
        story += [_image(registration, REGISTRATION_WIDTH, REGISTRATION_WIDTH),
                  _paragraph(registration.title, "picture_title"), _paragraph(registration.caption, "note")]
    return story


def _page_canvas(data: ReportData) -> type[Canvas]:
    """A canvas class that holds every page until the document ends, so that each page's header and footer can
    say "page n of m" (platypus knows the page count only then)."""

    class PageCanvas(Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._held: list[dict[str, Any]] = []

        def showPage(self) -> None:  # ReportLab's name; called at the end of each page
            self._held.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            for number, state in enumerate(self._held, start=1):
                self.__dict__.update(state)
                _decorate(self, data, number, len(self._held))
                super().showPage()
            super().save()

    return PageCanvas


def _decorate(canvas: Canvas, data: ReportData, number: int, total: int) -> None:
    """The page's header (title, patient ID, a rule) and footer (a rule, the disclaimer, date and version, page
    number)."""
    width, height = A4
    canvas.saveState()
    canvas.setStrokeColor(RULE)
    canvas.setFillColor(GREY)
    canvas.setFont("Helvetica-Bold", 8.5)
    canvas.drawString(MARGIN, height - 12 * mm, TITLE)
    canvas.drawRightString(width - MARGIN, height - 12 * mm, f"Patient ID: {patient_text(data)}")
    canvas.line(MARGIN, height - 14 * mm, width - MARGIN, height - 14 * mm)
    canvas.line(MARGIN, 16 * mm, width - MARGIN, 16 * mm)
    canvas.setFont("Helvetica", 7.5)
    canvas.drawString(MARGIN, 8 * mm, f"{data.created} · spinal-lesion-seg {data.version}")
    canvas.drawRightString(width - MARGIN, 8 * mm, f"Page {number} of {total}")
    canvas.setFont("Helvetica-Bold", 7.5)
    canvas.setFillColor(RED)
    canvas.drawCentredString(width / 2, 12 * mm, DISCLAIMER)
    canvas.restoreState()
