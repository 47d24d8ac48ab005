"""``batch`` over a folder tree of DICOM studies: every image series becomes one image of the batch.

A PACS or CD export has no BIDS names, so each series is named from its headers: the subject is the Patient ID, the
session the study (date and a short hash of its UID, so two studies on one day stay apart), and the stem the series'
readable name (:meth:`..dicom_series.DicomSeries.stem`). Outputs go, one folder per series, to
``ROOT/derivatives/spinal-lesion-seg/<subject>/<session>/<stem>/`` (the files ``predict`` writes, DICOM outputs
included), so the resume, parts, records and QC page rules of a BIDS batch hold unchanged. Nothing under
``ROOT/derivatives`` is read as input (our own DICOM outputs live there).

Series that are not one regular volume (localisers with three orientations, a series with missing slices) are left
out with their one-line reason: they cannot be segmented, and a batch should not fail on a scout.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..bids import LABELS, MANUAL_LESION, pipeline_dir
from ..contrasts import contrast_from_description
from ..dicom_series import DicomSeries, check_geometry, find_series
from ..errors import InputError

#: Modalities a lesion model may take (CT and PET series of the same study are left out).
MODALITIES = ("MR",)


@dataclass(frozen=True)
class DicomImage:
    """One DICOM series of the tree, with the interface of :class:`..bids.BidsImage` that the batch uses."""

    root: Path
    relative: Path
    subject: str
    session: str
    stem: str
    suffix: str
    series_uid: str
    description: str

    @property
    def path(self) -> Path:
        return self.root / self.relative

    @property
    def folder(self) -> Path:
        """``<subject>/<session>/<stem>``: the series' own folder under the derivatives."""
        return Path(self.subject) / self.session / self.stem

    @property
    def key(self) -> str:
        """Unique in the tree: subject, session and stem (series of different patients share descriptions)."""
        return f"{self.subject}_{self.session}_{self.stem}"

    @property
    def series_uids(self) -> tuple[str, ...]:
        return (self.series_uid,)

    def output_dir(self) -> Path:
        return pipeline_dir(self.root) / self.folder

    def label(self, name: str) -> Path:
        """A manual label of this series (``ROOT/derivatives/labels/<folder>/<stem>_<name>.nii.gz``)."""
        return self.root / "derivatives" / LABELS / self.folder / f"{self.stem}_{name}.nii.gz"

    def manual_lesion(self) -> Path:
        return self.label(MANUAL_LESION)

    def digest(self) -> str:
        """The sha256 over the series' files in slice order."""
        return check_geometry(self._series()).digest()

    def matches(self, token: str) -> bool:
        """Whether a selection token names this series: subject, session, key, stem or series UID."""
        return token.strip() in (self.subject, self.session, self.key, self.stem, self.series_uid)

    def _series(self) -> DicomSeries:
        return next(s for s in find_series(self.path) if s.uid == self.series_uid)


def find_dicom_images(root: str | os.PathLike[str], suffixes: Sequence[str] | None = None
                      ) -> tuple[list[DicomImage], list[str]]:
    """The MR series of a DICOM tree (those whose description names one of ``suffixes``, when given), sorted by
    key; and one line for each series left out because it is not a regular volume."""
    base = Path(root)
    images, skipped = [], []
    for series in find_series(base):
        if series.modality not in MODALITIES or _under_derivatives(base, series):
            continue
        try:
            check_geometry(series)
        except InputError as error:
            skipped.append(f"{error.problem} ({series.description or 'no description'})")
            continue
        image = _image(base, series)
        if not suffixes or any(s.lower() in (image.suffix.lower(), *series.description.lower().split())
                               for s in suffixes):
            images.append(image)
    if not images and not skipped:
        raise InputError(base, "holds neither sub-* folders (BIDS) nor DICOM MR image series")
    return sorted(images, key=lambda image: image.key), skipped


def _under_derivatives(base: Path, series: DicomSeries) -> bool:
    return any(path.relative_to(base).parts[0] == "derivatives" for path in series.files)


def _image(base: Path, series: DicomSeries) -> DicomImage:
    """The batch image of a checked series (its folder: the files' deepest common folder)."""
    folder = Path(os.path.commonpath([path.parent for path in series.files]))
    first = series.headers[0]
    patient = _safe(str(first.get("PatientID") or "")) or "unknown"
    study = str(first.get("StudyInstanceUID") or series.uid)
    date = _safe(str(first.get("StudyDate") or "")) or "nodate"
    session = f"{date}-{hashlib.sha1(study.encode()).hexdigest()[:6]}"
    contrast = contrast_from_description(series.description) or ""
    return DicomImage(root=base, relative=folder.relative_to(base), subject=patient, session=session,
                      stem=series.stem(), suffix=contrast, series_uid=series.uid, description=series.description)


def _safe(text: str) -> str:
    """``text`` as a file-name part: letters, digits, dots and dashes."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-.")
