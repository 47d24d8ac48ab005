"""The QC page's follow-up timeline (``batch --compare-sessions``): per subject and series, the scans in time order
with their lesion count and volume, the change between each consecutive pair, and baseline-to-last.

Built from the pair records (:mod:`.pair_runs`), as an HTML fragment the page inserts below its image table. Each
change links the comparison's registration figure and ``lesion_changes.csv``, so a reviewer checks the alignment
before trusting a "new" lesion. Every value is escaped.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import quote

from ..analysis.longitudinal import CLASSES, FIGURE, FILES
from ..defaults import PROG
from .pair_runs import PairRecord
from .pairs import BASELINE_TO_LAST, MANUAL, session_order

#: Chart size (CSS px) of the lesion-volume sparkline under each series.
CHART_WIDTH, CHART_HEIGHT = 260, 70
CSS = """
#timeline { margin: 0 16px 40px; }
#timeline h2 { font-size: 16px; margin: 0 0 4px; }
#timeline h3 { font-size: 14px; margin: 16px 0 6px; }
.line { display: flex; flex-wrap: wrap; align-items: stretch; gap: 6px; }
.tp { border: 1px solid #5a606a; border-radius: 6px; padding: 6px 10px; min-width: 110px; background: #25282e; }
.tp b { display: block; }
.chg { padding: 6px 8px; max-width: 240px; font-size: 12.5px; color: #a4abb5; }
.chg .arrow { font-size: 18px; color: #dde1e6; }
.tag { color: #c9a0ff; font-size: 12px; }
.c-new { color: #ff5c5c; } .c-enlarged { color: #ffb347; } .c-disappeared, .c-shrunk { color: #6fb8ff; }
.c-merged, .c-split { color: #c9a0ff; } .c-stable { color: #a4abb5; }
.overall { margin: 6px 0 0; font-size: 13px; }
svg.chart { display: block; margin-top: 6px; }
"""
#: The timeline's explanation (HTML).
HELP = ("Each subject's scans in time order (lesion count and volume in mm&sup3;, measured on each scan's own grid; "
        '<span class="tag">corrected</span> = the manual correction was compared, not the prediction), and the '
        f"lesion changes between them ({PROG} compare; the rules: docs/conventions.md, 'Longitudinal change'). "
        "Check the registration figure before trusting a new or disappeared lesion.")


def timeline_html(root: Path, records: Sequence[PairRecord]) -> str:
    """The ``<section>`` of the timeline ("" without pair records)."""
    if not records:
        return ""
    series: dict[tuple[str, str], list[PairRecord]] = defaultdict(list)
    for record in records:
        series[(record.subject, record.series)].append(record)
    parts = [_series(root, subject, name, group) for (subject, name), group in sorted(series.items())]
    return (f"<style>{CSS}</style>\n" '<section id="timeline"><h2>Follow-up timeline</h2>\n'
            f'<p class="help">{HELP}</p>\n' + "\n".join(parts) + "</section>")


def _series(root: Path, subject: str, name: str, records: list[PairRecord]) -> str:
    """One subject's series: the chain of scans and changes, baseline-to-last, and the volume chart."""
    consecutive = {r.baseline_session: r for r in records if r.kind != BASELINE_TO_LAST}
    sessions = session_order(root, subject, {s for r in consecutive.values()
                                             for s in (r.baseline_session, r.followup_session)})
    scans = _scan_numbers(consecutive.values())
    items = []
    for session in sessions:
        items.append(_scan(session, scans.get(session)))
        if session in consecutive:
            items.append(_change(consecutive[session]))
    overall = [r for r in records if r.kind == BASELINE_TO_LAST]
    extra = "".join(f'<p class="overall"><b>{escape(r.baseline_session)} &rarr; {escape(r.followup_session)}</b> '
                    f"(baseline to last): {_change_text(r)}</p>" for r in overall)
    volumes = [(s, scans[s][1]) for s in sessions if s in scans and scans[s][1] is not None]
    return (f"<div class=\"series\"><h3>{escape(subject)} &middot; {escape(name)}</h3><div class=\"line\">"
            + "".join(items) + "</div>" + extra + _chart(volumes) + "</div>")


def _scan_numbers(records: Iterable[PairRecord]) -> dict[str, tuple[int | None, float | None, bool]]:
    """session -> (lesion count, volume mm3, mask corrected by hand), from the pairs each scan took part in."""
    numbers: dict[str, tuple[int | None, float | None, bool]] = {}
    for record in records:
        for scan, session in (("baseline", record.baseline_session), ("followup", record.followup_session)):
            count = record.summary.get(f"{scan}_lesion_count")
            if count is not None or session not in numbers:
                numbers[session] = (count, record.summary.get(f"{scan}_volume_mm3"),
                                    record.sources.get(scan) == MANUAL)
    return numbers


def _scan(session: str, numbers: tuple[int | None, float | None, bool] | None) -> str:
    count, volume, corrected = numbers or (None, None, False)
    lesions = "&ndash;" if count is None else f"{count} lesion{'s' if count != 1 else ''}"
    size = "" if volume is None else f"<br>{volume:.1f} mm&sup3;"
    tag = '<br><span class="tag">corrected</span>' if corrected else ""
    return f'<div class="tp"><b>{escape(session)}</b>{lesions}{size}{tag}</div>'


def _change(record: PairRecord) -> str:
    arrow = '<span class="arrow">&rarr;</span>'
    return f'<div class="chg st-{escape(record.status)}">{arrow} {_change_text(record)}</div>'


def _change_text(record: PairRecord) -> str:
    """The change counts with links to the comparison's files, or why there are none."""
    if record.status in ("failed", "waiting"):
        return f'<span class="st-failed">{escape(record.status)}</span>: {escape(record.error or "")}'
    counts = [f'<span class="c-{c}">{record.summary.get(c) or 0} {c}</span>' for c in CLASSES
              if record.summary.get(c) or c == "stable"]
    folder = "../" + quote(record.folder)
    links = (f' &middot; <a href="{escape(folder)}/{FIGURE}">registration</a> &middot; '
             f'<a href="{escape(folder)}/{FILES["changes_csv"]}">changes</a>')
    return ", ".join(counts) + links


def _chart(volumes: list[tuple[str, float]]) -> str:
    """An SVG line of total lesion volume per session (nothing with fewer than two values)."""
    if len(volumes) < 2:
        return ""
    top = max(v for _, v in volumes) or 1.0
    step = (CHART_WIDTH - 40) / (len(volumes) - 1)
    points = [(20 + n * step, CHART_HEIGHT - 18 - (CHART_HEIGHT - 40) * v / top)
              for n, (_, v) in enumerate(volumes)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    labels = "".join(f'<text x="{x:.1f}" y="{CHART_HEIGHT - 4}" text-anchor="middle">{escape(s)}</text>'
                     for (x, _), (s, _) in zip(points, volumes))
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{v:.1f} mm3</title></circle>'
                   for (x, y), (_, v) in zip(points, volumes))
    return (f'<svg class="chart" width="{CHART_WIDTH}" height="{CHART_HEIGHT}" role="img" '
            f'aria-label="lesion volume per session" font-size="10" fill="#a4abb5">'
            f'<text x="0" y="9">lesion volume (max {top:.1f} mm&#179;)</text>'
            f'<polyline points="{line}" fill="none" stroke="#4da3ff" stroke-width="2"/>'
            f'<g fill="#4da3ff">{dots}</g>{labels}</svg>')


def escape(value: str) -> str:
    """``value`` safe in HTML text and in quoted attributes (the QC page's one escaping rule)."""
    return html.escape(value, quote=True)
