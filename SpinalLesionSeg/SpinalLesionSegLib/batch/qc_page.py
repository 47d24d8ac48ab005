"""The QC page of a batch: ``ROOT/derivatives/spinal-lesion-seg/qc/index.html``, one row per image with its
numbers and pictures, reviewed from the keyboard as in SCT's QC report (the page's script: :mod:`.qc_template`).

The page is a view rebuilt from the image records (:mod:`.records`), so a split run's last part shows every
image. Its pictures (``qc/img/<stem>_{sag,ax}[_bg].png``, :mod:`..analysis.overlay_pictures`, shared with the
clinical report) are remade only when a prediction is newer than them, so rebuilding the page after a resumed run
costs seconds, not minutes.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from .. import __version__
from ..analysis.overlay_pictures import picture_paths, render_case_pictures
from ..bids import pipeline_dir
from ..defaults import CANDIDATE_THRESHOLD, PROG
from ..errors import InputError
from ..image_io import read_image, write_text
from .qc_template import PAGE
from .pair_runs import PairRecord
from .records import STATUSES, ImageRecord
from .timeline import escape as _text
from .timeline import timeline_html

_LOG = logging.getLogger(__name__)


def qc_dir(root: str | os.PathLike[str]) -> Path:
    """``ROOT/derivatives/spinal-lesion-seg/qc``: the page (``index.html``) and its pictures (``img/``)."""
    return pipeline_dir(root) / "qc"


def build_qc(root: str | os.PathLike[str], records: list[ImageRecord], pairs: Sequence[PairRecord] = ()) -> Path:
    """Make the pictures of every record with a lesion mask (failed images have none), then write the page;
    return its path.

    Pictures newer than every file they show are kept. An image whose pictures cannot be made (a prediction
    deleted or damaged since) keeps its row, with the reason instead of pictures: one bad file must not cost the
    reviewers the whole page.
    """
    problems: dict[str, str] = {}
    for record in records:
        if record.status == "failed" or "lesion_seg" not in record.outputs:
            continue
        try:
            _render_if_stale(root, record)
        except InputError as error:
            _LOG.warning("QC pictures of %s: %s", record.image, error)
            problems[record.image] = str(error)
            for picture in picture_paths(qc_dir(root) / "img", record.name).values():
                picture.unlink(missing_ok=True)
    return write_qc_page(root, records, problems=problems, pairs=pairs)


def _render_if_stale(root: str | os.PathLike[str], record: ImageRecord) -> None:
    """Render the record's pictures unless all exist and are newer than the prediction files they show."""
    outputs = {role: pipeline_dir(root) / path for role, path in record.outputs.items()}
    shown = [outputs[role] for role in ("lesion_seg", "lesion_soft", "sc_seg") if role in outputs]
    pictures = picture_paths(qc_dir(root) / "img", record.name).values()
    try:
        if min(p.stat().st_mtime_ns for p in pictures) > max(p.stat().st_mtime_ns for p in shown):
            return
    except FileNotFoundError:  # a picture not made yet (or a prediction gone: the reader below names it)
        pass
    image = read_image(Path(root) / record.image, record.series_uids)
    render_case_pictures(image, outputs["lesion_seg"], qc_dir(root) / "img", record.name,
                         soft_path=outputs.get("lesion_soft"), cord_path=outputs.get("sc_seg"))


def write_qc_page(root: str | os.PathLike[str], records: list[ImageRecord], *,
                  problems: Mapping[str, str] | None = None, pairs: Sequence[PairRecord] = ()) -> Path:
    """Write ``qc/index.html`` (atomically) for ``records``, in their order, and return its path.

    Pictures are linked when all four exist in ``qc/img``; ``problems`` (image -> why its pictures could not be
    made) is shown in their place; ``pairs`` (``--compare-sessions``) add the follow-up timeline. The review is
    kept in the browser under a key naming this pipeline folder, so two datasets reviewed in one browser never mix
    their marks.
    """
    root_path = Path(root)
    page = qc_dir(root_path) / "index.html"
    folder = os.path.abspath(pipeline_dir(root_path))
    rows = "\n".join(_row(record, page.parent, (problems or {}).get(record.image)) for record in records)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    values = {
        "TITLE": _text(f"Lesion QC: {root_path.resolve().name}"),
        "KEY": _text(folder),
        "STATUS_OPTIONS": "".join(f'<option value="{s}">{s}</option>' for s in STATUSES),
        "CANDIDATE": _text(f"{CANDIDATE_THRESHOLD:g}"),
        "ROWS": rows,
        "TIMELINE": timeline_html(root_path, pairs),
        "FOOTER": _text(f"{PROG} {__version__}, {generated}; {len(records)} images of {root_path.resolve()}. "
                        "The review is saved in this browser only: export the lists to keep or share it."),
    }
    # One pass, so that a placeholder spelled inside a record's text (an error message) is left as it is.
    return write_text(re.sub(r"@@([A-Z_]+)@@", lambda match: values[match.group(1)], PAGE), page)


def _row(record: ImageRecord, qc_folder: Path, problem: str | None) -> str:
    """One ``<tr>``: the record's columns and pictures (or why there are none). Every value is escaped."""
    lesions = record.lesion_count or 0
    cells = [
        '<td class="qc"></td>',
        f"<td>{_text(record.subject)}</td>",
        f"<td>{_text(record.session or '')}</td>",
        f'<td class="name" title="{_text(record.image)}">{_text(Path(record.image).name)}</td>',
        f'<td class="st-{_text(record.status)}">{_text(record.status)}</td>',
        f'<td class="num">{_number(record.lesion_count, "d")}</td>',
        f'<td class="num">{_number(record.volume_mm3, ".1f")}</td>',
        f'<td class="num">{_number(record.mean_probability, ".2f")}</td>',
        _pictures_cell(record, qc_folder, problem),
    ]
    return (f'<tr data-image="{_text(record.image)}" data-status="{_text(record.status)}" '
            f'data-lesions="{lesions}">' + "".join(cells) + "</tr>")


def _pictures_cell(record: ImageRecord, qc_folder: Path, problem: str | None) -> str:
    """The pictures (overlay shown, background for the toggle), the error of a failed image, or a note."""
    if record.status == "failed":
        return f'<td class="pics"><pre class="error">{_text(record.error or "failed (no error recorded)")}</pre></td>'
    if problem:
        return f'<td class="pics"><span class="note">no pictures: {_text(problem)}</span></td>'
    pictures = picture_paths(qc_folder / "img", record.name)
    if not all(path.is_file() for path in pictures.values()):
        return '<td class="pics"><span class="note">no pictures (no lesion mask)</span></td>'
    images = []
    for view, name in (("sag", "sagittal"), ("ax", "axial")):
        overlay, background = (_text("img/" + quote(pictures[key].name)) for key in (view, f"{view}_bg"))
        images.append(f'<img src="{overlay}" data-ov="{overlay}" data-bg="{background}" alt="{name}" '
                      f'title="{name}" loading="lazy">')
    return '<td class="pics">' + "".join(images) + "</td>"


def _number(value: float | int | None, spec: str) -> str:
    return "&ndash;" if value is None else format(value, spec)


