"""The report as one self-contained HTML page: inline CSS, no script, no remote resource; its pictures are PNG
files beside it (linked by file name, so the folder can be moved or zipped whole).

Everything that comes from files or the user (names, identifiers, sidecar values) is escaped with
:func:`html.escape`; the page is filled from a :class:`string.Template`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from string import Template
from typing import Any
from urllib.parse import quote

from .change import baseline_text, change_counts, volume_sentence
from .data import ReportData
from .pictures import KEY_SLICE_ROLES, ReportPicture
from .sections import (
    DISCLAIMER,
    HEADINGS,
    TITLE,
    change_columns,
    identification,
    lesion_columns,
    level_columns,
    load_note,
    patient_text,
    totals,
)
from .tables import cell_text, column_label, is_numeric

PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1d1d1f;
       margin: 0 auto; max-width: 1080px; padding: 16px 24px 40px; }
h1 { font-size: 22px; margin: 8px 0 4px; }
h2 { font-size: 17px; border-bottom: 1px solid #ccc; padding-bottom: 3px; margin: 26px 0 10px; }
.disclaimer { border: 2px solid #a61b1b; color: #a61b1b; font-weight: 600; padding: 8px 12px; margin: 12px 0; }
dl.pairs { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dl.pairs dt { color: #555; } dl.pairs dd { margin: 0; overflow-wrap: anywhere; }
.totals { display: flex; gap: 14px; flex-wrap: wrap; margin: 6px 0 8px; }
.total { border: 1px solid #ccc; border-radius: 6px; padding: 8px 16px; min-width: 150px; }
.total .value { font-size: 24px; font-weight: 600; } .total .label { color: #555; font-size: 13px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; margin: 4px 0 8px; }
th, td { border: 1px solid #d0d0d0; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eef0f3; } tr:nth-child(even) td { background: #f8f9fa; } td.num { text-align: right; }
figure { margin: 0; } figcaption { font-size: 13px; font-weight: 600; margin-top: 4px; }
.pictures { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.pictures img { display: block; max-width: 100%; height: auto; border: 1px solid #444; background: #000; }
.pictures figure.overview img { width: 420px; } .pictures figure.axial img { width: 260px; }
img.chart { max-width: min(100%, 760px); height: auto; }
.note { color: #555; font-size: 13px; }
footer { margin-top: 32px; color: #555; font-size: 12px; border-top: 1px solid #ccc; padding-top: 8px; }
@media print { body { max-width: none; } h2 { break-after: avoid; } figure, table { break-inside: avoid; } }
</style>
</head>
<body>
<header>
<h1>$title</h1>
$identification
</header>
<p class="disclaimer">$disclaimer</p>
<section><h2>$h_load</h2>
<div class="totals">$totals</div>
<p>$load_note</p></section>
<section><h2>$h_levels</h2>
$levels
$chart</section>
$pictures
<section><h2>$h_lesions</h2>
$lesions</section>
$change
$prediction
<section><h2>$h_settings</h2>
$settings</section>
<footer>$footer</footer>
</body>
</html>
""")


def render_html(data: ReportData, pictures: Sequence[ReportPicture]) -> str:
    """The report page (UTF-8 text) for ``data``, linking ``pictures`` by their file names."""
    by_role = {picture.role: picture for picture in pictures}
    chart = by_role.get("levels")
    return PAGE.substitute(
        title=_e(f"{TITLE}: {patient_text(data)}"),
        identification=_pairs(identification(data)),
        disclaimer=_e(DISCLAIMER),
        totals="".join(f'<div class="total"><div class="value">{_e(value)}</div><div class="label">{_e(label)}'
                       "</div></div>" for label, value in totals(data)),
        load_note=_e(load_note(data)),
        levels=_table(data.level_rows, level_columns(data)),
        chart=(f'<figure><img class="chart" src="{_src(chart)}" alt="{_e(chart.title)}">'
               f'<p class="note">{_e(chart.caption)}</p></figure>' if chart else ""),
        pictures=_pictures([p for p in pictures if p.role in KEY_SLICE_ROLES]),
        lesions=(_table(data.lesion_rows, lesion_columns(data)) if data.lesion_rows
                 else "<p>No lesion in the mask.</p>"),
        change=_change(data.longitudinal, by_role.get("registration")) if data.longitudinal is not None else "",
        prediction=(f"<section><h2>{_e(HEADINGS['prediction'])}</h2>{_pairs(data.prediction)}</section>"
                    if data.prediction else ""),
        settings=_pairs(data.settings),
        footer=_e(f"{TITLE} · patient {patient_text(data)} · {data.created} · spinal-lesion-seg {data.version} · "
                  f"{DISCLAIMER}"),
        **{f"h_{key}": _e(text) for key, text in HEADINGS.items()},
    )


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _src(picture: ReportPicture) -> str:
    return _e(quote(picture.file_name))


def _pairs(pairs: Sequence[tuple[str, str]]) -> str:
    """A definition list of (label, text) pairs."""
    return '<dl class="pairs">' + "".join(f"<dt>{_e(label)}</dt><dd>{_e(text)}</dd>" for label, text in pairs) + \
        "</dl>"


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A table of ``rows`` with ``columns`` (labels and cell text from :mod:`.tables`), scrolling sideways when
    wider than the page."""
    opening = {key: '<td class="num">' if is_numeric(key, rows) else "<td>" for key in columns}
    head = "".join(f"<th>{_e(column_label(key))}</th>" for key in columns)
    body = "".join("<tr>" + "".join(f"{opening[key]}{_e(cell_text(key, row.get(key)))}</td>" for key in columns)
                   + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _pictures(pictures: Sequence[ReportPicture]) -> str:
    """The key-slice section: every picture with its title, then each distinct caption once."""
    if not pictures:
        return ""
    figures = "".join(
        f'<figure class="{"overview" if p.role == "overview" else "axial"}"><img src="{_src(p)}" '
        f'alt="{_e(p.title)}"><figcaption>{_e(p.title)}</figcaption></figure>' for p in pictures)
    notes = "".join(f'<p class="note">{_e(caption)}</p>' for caption in dict.fromkeys(p.caption for p in pictures))
    return f'<section><h2>{_e(HEADINGS["pictures"])}</h2><div class="pictures">{figures}</div>{notes}</section>'


def _change(longitudinal: dict[str, Any], registration: ReportPicture | None) -> str:
    """The longitudinal section: the baseline, the count of each change class, the volume change, the events and
    the registration check."""
    counts = "".join(f'<div class="total"><div class="value">{count}</div><div class="label">{_e(label)}</div>'
                     "</div>" for label, count in change_counts(longitudinal))
    rows = longitudinal.get("rows") or []
    parts = [f"<p>{_e(baseline_text(longitudinal))}</p>" if baseline_text(longitudinal) else "",
             f'<div class="totals">{counts}</div>', f"<p>{_e(volume_sentence(longitudinal))}</p>",
             _table(rows, change_columns(longitudinal)) if rows else "",
             f'<figure><img class="chart" src="{_src(registration)}" alt="{_e(registration.title)}">'
             f'<figcaption>{_e(registration.title)}</figcaption><p class="note">{_e(registration.caption)}</p>'
             "</figure>" if registration else ""]
    return f'<section><h2>{_e(HEADINGS["change"])}</h2>{"".join(parts)}</section>'
