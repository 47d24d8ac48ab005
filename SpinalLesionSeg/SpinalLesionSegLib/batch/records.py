"""One record per image of a batch (``logs/<stem>.json``): what happened to it, and its headline numbers.

The records are the batch's truth on disk; ``batch.tsv`` and the QC page are rebuilt from them (every part of a
split run writes its own images' records, so the last part to finish sees them all).
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
from ..bids import BidsImage, pipeline_dir
from ..errors import InputError
from ..image_io import write_text

#: What happened to an image: predicted now, skipped (up to date), failed (the error says why), or kept (its
#: prediction was edited by hand and --overwrite was not given).
STATUSES = ("done", "skipped", "failed", "kept")
TSV_COLUMNS = tuple("image status seconds lesion_count volume_mm3 mean_probability error".split())


@dataclass
class ImageRecord:
    """The outcome for one image. Paths are relative: ``image`` to the BIDS root, ``outputs`` (role -> file, as
    ``predict`` names the roles: lesion_seg, lesion_soft, sc_seg, sidecar) to the pipeline folder, so a dataset
    can move."""

    image: str
    stem: str
    subject: str
    session: str | None
    status: str
    seconds: float | None = None
    lesion_count: int | None = None
    volume_mm3: float | None = None
    mean_probability: float | None = None
    error: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    finished: str | None = None
    #: The image's unique name (:attr:`..bids.BidsImage.key`; None in older records: the stem) and, for a DICOM
    #: series, its UID (the image path is then the folder holding it).
    key: str | None = None
    series_uids: list[str] = field(default_factory=list)

    @classmethod
    def for_image(cls, image: BidsImage, status: str, **values: Any) -> ImageRecord:
        return cls(image=image.relative.as_posix(), stem=image.stem, subject=image.subject, session=image.session,
                   status=status, key=image.key, series_uids=list(image.series_uids), **values)

    @property
    def name(self) -> str:
        """The record's file name stem (logs/<name>.json) and its QC pictures' prefix."""
        return self.key or self.stem


def logs_dir(root: str | os.PathLike[str]) -> Path:
    return pipeline_dir(root) / "logs"


def record_path(root: str | os.PathLike[str], name: str) -> Path:
    """``logs/<name>.json``, ``name`` the image's key."""
    return logs_dir(root) / f"{name}.json"


def write_record(root: str | os.PathLike[str], record: ImageRecord) -> Path:
    """Write (atomically) the record of one image."""
    return write_text(json.dumps(dataclasses.asdict(record), indent=2) + "\n", record_path(root, record.name))


def read_record(path: Path) -> ImageRecord:
    """One record; InputError naming the file when it is not one."""
    raw = safe_json.load_file(path, max_bytes=1 << 20)
    names = {f.name for f in dataclasses.fields(ImageRecord)}
    if not isinstance(raw, dict) or not {"image", "stem", "subject", "status"} <= set(raw) or set(raw) - names \
            or raw["status"] not in STATUSES:
        raise InputError(path, "is not a batch record")
    return ImageRecord(**raw)


def read_records(root: str | os.PathLike[str]) -> list[ImageRecord]:
    """Every image record on disk, sorted by image path (unreadable ones are skipped: a record is a view)."""
    records = []
    for path in sorted(logs_dir(root).glob("*.json")) if logs_dir(root).is_dir() else []:
        try:
            records.append(read_record(path))
        except InputError:
            continue
    return sorted(records, key=lambda record: record.image)


def write_tsv(root: str | os.PathLike[str], records: list[ImageRecord]) -> Path:
    """``batch.tsv``: one row per image (image, status, seconds, lesion count, volume mm3, mean probability,
    error), tab-separated, written atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(TSV_COLUMNS)
    for record in records:
        writer.writerow([tsv_cell(getattr(record, column)) for column in TSV_COLUMNS])
    return write_text(buffer.getvalue(), pipeline_dir(root) / "batch.tsv")


def tsv_cell(value: Any) -> str:
    """A TSV cell: empty for None, floats to 6 significant digits, text on one line without tabs."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return " ".join(str(value).split())  # one line, no tabs
