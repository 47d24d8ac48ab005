"""``batch --compare-sessions``: which scans of a BIDS dataset are compared with which.

A subject's **series** is what its images share across sessions: the image name without the ``sub-`` and ``ses-``
entities (``T2w``, ``acq-sag_T2w``), so a sagittal T2w is compared with the sagittal T2w of the other sessions,
never with an axial one. Sessions are put in time order by the ``acq_time`` column of the subject's
``sub-XX_sessions.tsv`` (BIDS) when it dates every session, else by their labels in natural order (``ses-2`` before
``ses-10``). With time points t1 < t2 < ... < tn, each consecutive pair (t1->t2, t2->t3, ...) is compared and, from
three time points on, also the baseline with the last scan (t1->tn), the change a clinician asks about first.

Each scan's lesion mask is the person's correction when one exists
(``derivatives/labels/.../S_lesion-manual.nii.gz``, what the Slicer case list saves), else our prediction; the soft
map is the prediction's; the cord is the ``--roi-label`` manual cord mask, else the model's cord output, when either
exists (registration then looks at the cord).
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..analysis.scan_files import ScanFiles
from ..bids import BidsImage, pipeline_dir
from ..inference.case import output_paths

CONSECUTIVE, BASELINE_TO_LAST = "consecutive", "baseline-to-last"
#: Where a scan's lesion mask came from.
MANUAL, PREDICTED = "manual", "predicted"


@dataclass(frozen=True)
class Pair:
    """Two time points of one subject's series: the ``baseline`` scan (earlier) and the ``followup`` scan."""

    subject: str
    series: str
    baseline: BidsImage
    followup: BidsImage
    kind: str

    @property
    def name(self) -> str:
        """``sub-01_T2w_ses-01_to_ses-03``: unique in the dataset (the record's file name)."""
        return f"{self.subject}_{self.series}_{self.baseline.session}_to_{self.followup.session}"

    def output_dir(self) -> Path:
        """``derivatives/spinal-lesion-seg/sub-XX/longitudinal/SERIES/ses-A_to_ses-B``: the comparison's files."""
        root = self.followup.root
        return pipeline_dir(root) / self.subject / "longitudinal" / self.series / \
            f"{self.baseline.session}_to_{self.followup.session}"


def series_of(image: BidsImage) -> str:
    """The image's name without its subject and session entities: ``sub-01_ses-02_acq-sag_T2w`` -> ``acq-sag_T2w``."""
    return "_".join(part for part in image.stem.split("_") if not part.startswith(("sub-", "ses-")))


def pairs_of(images: Iterable[BidsImage]) -> list[Pair]:
    """The pairs to compare among ``images`` (images without a session take no part), subject by subject."""
    series: dict[tuple[str, str], dict[str, BidsImage]] = defaultdict(dict)
    for image in images:
        if image.session is not None:
            series[(image.subject, series_of(image))][image.session] = image
    pairs = []
    for (subject, name), by_session in sorted(series.items()):
        order = [by_session[s] for s in session_order(next(iter(by_session.values())).root, subject, by_session)]
        pairs += [Pair(subject, name, a, b, CONSECUTIVE) for a, b in zip(order, order[1:])]
        if len(order) >= 3:
            pairs.append(Pair(subject, name, order[0], order[-1], BASELINE_TO_LAST))
    return pairs


def session_order(root: Path, subject: str, sessions: Iterable[str]) -> list[str]:
    """``sessions`` in time order: by ``acq_time`` in ``ROOT/sub-XX/sub-XX_sessions.tsv`` when it gives one for
    every session (ISO 8601 sorts as text), else by label in natural order."""
    labels = list(sessions)
    times = _acquisition_times(root / subject / f"{subject}_sessions.tsv")
    if all(times.get(label) for label in labels):
        return sorted(labels, key=lambda label: (times[label], _natural(label)))
    return sorted(labels, key=_natural)


def _acquisition_times(path: Path) -> dict[str, str]:
    """session_id -> acq_time from a BIDS sessions file ({} when it is missing or unreadable)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return {row["session_id"]: (row.get("acq_time") or "").strip()
                    for row in csv.DictReader(handle, delimiter="\t") if row.get("session_id")}
    except (OSError, UnicodeDecodeError, csv.Error, KeyError):
        return {}


def _natural(label: str) -> list[tuple[int, int | str]]:
    """A sort key that orders the digit runs of a label as numbers (``ses-2`` < ``ses-10``)."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", label) if part]


def scan_files(image: BidsImage, roi_label: str | None) -> tuple[ScanFiles, str] | None:
    """The files of ``image`` to compare and where its lesion mask came from (:data:`MANUAL` or
    :data:`PREDICTED`); None when it has no lesion mask yet."""
    predicted = output_paths(image.output_dir(), image.stem)
    if image.manual_lesion().is_file():
        lesion, source = image.manual_lesion(), MANUAL
    elif predicted["lesion_seg"].is_file():
        lesion, source = predicted["lesion_seg"], PREDICTED
    else:
        return None
    cords = [image.label(roi_label), predicted["sc_seg"]] if roi_label else [predicted["sc_seg"]]
    cord = next((path for path in cords if path.is_file()), None)
    soft = predicted["lesion_soft"] if predicted["lesion_soft"].is_file() else None
    return ScanFiles(image.path, lesion, soft, cord), source


def owned_pairs(candidates: Sequence[BidsImage], part: Sequence[BidsImage]) -> list[Pair]:
    """The pairs among ``candidates`` (every selected image) that this part runs: those whose follow-up image is
    in ``part``, so that the parts of a split batch compare each pair exactly once."""
    mine = set(part)
    return [pair for pair in pairs_of(candidates) if pair.followup in mine]
