"""Run the comparisons of ``batch --compare-sessions``, resumably, with one record per pair.

A pair's comparison (``compare``'s files, published as one set: :func:`..analysis.scan_files.compare_files`) is
**current** when its ``summary.json`` names the same input files with the same sha256 and was made with the
default thresholds: it is then skipped. A corrected mask, a new prediction or a changed image makes it run again.
A pair whose scan has no lesion mask yet (its image failed, or another part of a split batch has not run it)
**waits**: a later run compares it. A refused registration fails that pair alone, with its one-line reason.

Records (``logs/longitudinal/<pair>.json``) are the truth on disk; ``longitudinal.tsv`` and the QC page's timeline
are rebuilt from them.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import safe_json
from ..analysis.longitudinal import CLASSES, SUMMARY
from ..analysis.scan_files import ScanFiles, compare_files
from ..bids import pipeline_dir
from ..defaults import CONNECTIVITY, LESION_CHANGE_PERCENT, LESION_MIN_CHANGE_MM3, TOUCH_TOLERANCE_MM
from ..errors import InputError
from ..image_io import sha256_file, write_text
from ..result_set import recover
from .pairs import Pair, scan_files
from .records import logs_dir, tsv_cell
from .runner import now

#: What happened to a pair: compared now, skipped (current), failed (the error says why), waiting (a scan has no
#: lesion mask yet).
PAIR_STATUSES = ("done", "skipped", "failed", "waiting")
#: The thresholds a batch uses (compare's defaults): a summary made with others is not current.
THRESHOLDS = {"change_percent": LESION_CHANGE_PERCENT, "min_change_mm3": LESION_MIN_CHANGE_MM3,
              "touch_tolerance_mm": TOUCH_TOLERANCE_MM, "connectivity": CONNECTIVITY}
TSV_COLUMNS = ("subject series baseline_session followup_session kind status".split() + list(CLASSES)
               + "baseline_lesion_count followup_lesion_count baseline_volume_mm3 followup_volume_mm3 folder error"
               .split())


@dataclass
class PairRecord:
    """The outcome for one pair. ``folder`` (the comparison's files) is relative to the pipeline folder;
    ``sources`` says whether each scan's mask was the manual correction or the prediction; ``summary`` holds the
    event counts per class and each scan's lesion count and volume (mm3, own grid)."""

    name: str
    subject: str
    series: str
    baseline_session: str
    followup_session: str
    kind: str
    status: str
    folder: str
    sources: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    finished: str | None = None

    @classmethod
    def for_pair(cls, pair: Pair, status: str, **values: Any) -> PairRecord:
        folder = pair.output_dir().relative_to(pipeline_dir(pair.followup.root)).as_posix()
        return cls(name=pair.name, subject=pair.subject, series=pair.series,
                   baseline_session=str(pair.baseline.session), followup_session=str(pair.followup.session),
                   kind=pair.kind, status=status, folder=folder, finished=now(), **values)


def pair_logs(root: str | os.PathLike[str]) -> Path:
    return logs_dir(root) / "longitudinal"


def compare_pair(pair: Pair, roi_label: str | None) -> PairRecord:
    """Compare one pair unless its comparison is current; write and return its record."""
    scans = {"baseline": scan_files(pair.baseline, roi_label), "followup": scan_files(pair.followup, roi_label)}
    if missing := [pair.baseline if scan == "baseline" else pair.followup for scan, f in scans.items() if f is None]:
        record = PairRecord.for_pair(pair, "waiting", error=f"no lesion mask yet for {missing[0].relative}")
        return _write(pair.followup.root, record)
    (before, before_source), (after, after_source) = scans["baseline"], scans["followup"]
    sources = {"baseline": before_source, "followup": after_source}
    summary_path = pair.output_dir() / SUMMARY
    recover(summary_path)
    try:
        current = _current_summary(summary_path, before, after)
        status = "skipped" if current else "done"
        summary = current or compare_files(before, after, pair.output_dir()).summary
    except (InputError, OSError, ValueError) as error:
        reason = error.problem if isinstance(error, InputError) else str(error)
        return _write(pair.followup.root, PairRecord.for_pair(pair, "failed", sources=sources, error=reason))
    record = PairRecord.for_pair(pair, status, sources=sources, summary=_numbers(summary))
    return _write(pair.followup.root, record)


def _current_summary(path: Path, baseline: ScanFiles, followup: ScanFiles) -> dict[str, Any] | None:
    """The summary at ``path`` when it was made from these very files with the batch's thresholds, else None."""
    try:
        summary = safe_json.load_file(path) if path.is_file() else None
    except InputError:
        return None
    if not isinstance(summary, dict) or summary.get("thresholds") != THRESHOLDS:
        return None
    wanted = baseline.roles("baseline") | followup.roles("followup")
    recorded = summary.get("inputs")
    if not isinstance(recorded, dict) or set(recorded) != set(wanted):
        return None
    for role, path_text in wanted.items():
        entry = recorded[role]
        if not isinstance(entry, dict) or entry.get("path") != path_text or entry.get("sha256") != \
                sha256_file(path_text):
            return None
    return summary


def _numbers(summary: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a summary kept in the record."""
    keys = (*CLASSES, "baseline_lesion_count", "followup_lesion_count", "baseline_volume_mm3", "followup_volume_mm3")
    return {key: summary.get(key) for key in keys}


def _write(root: Path, record: PairRecord) -> PairRecord:
    write_text(json.dumps(dataclasses.asdict(record), indent=2) + "\n", pair_logs(root) / f"{record.name}.json")
    return record


def read_pair_records(root: str | os.PathLike[str]) -> list[PairRecord]:
    """Every pair record on disk, by subject, series and sessions (unreadable ones are skipped: a view)."""
    names = {f.name for f in dataclasses.fields(PairRecord)}
    records = []
    for path in sorted(pair_logs(root).glob("*.json")) if pair_logs(root).is_dir() else []:
        try:
            raw = safe_json.load_file(path, max_bytes=1 << 20)
        except InputError:
            continue
        if isinstance(raw, dict) and set(raw) <= names and raw.get("status") in PAIR_STATUSES and "name" in raw:
            try:
                records.append(PairRecord(**raw))
            except TypeError:
                continue
    return sorted(records, key=lambda r: (r.subject, r.series, r.kind != "consecutive", r.name))


def write_pair_tsv(root: str | os.PathLike[str], records: list[PairRecord]) -> Path:
    """``longitudinal.tsv``: one row per pair with its status, event counts and each scan's count and volume."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(TSV_COLUMNS)
    for record in records:
        values = {**dataclasses.asdict(record), **record.summary}
        writer.writerow([tsv_cell(values.get(column)) for column in TSV_COLUMNS])
    return write_text(buffer.getvalue(), pipeline_dir(root) / "longitudinal.tsv")

