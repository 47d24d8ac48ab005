"""BIDS datasets as the spinal cord community lays them out: raw images, our derivatives, manual labels.

* Raw anatomical images: ``ROOT/sub-XX/[ses-YY/]anat/sub-XX[_ses-YY][_entity-value...]_SUFFIX.nii[.gz]``.
* Our predictions (``batch``): ``ROOT/derivatives/spinal-lesion-seg/<the same sub-XX/[ses-YY/]anat>/`` with the files
  ``predict`` writes (``S_lesion_seg.nii.gz``, ``S_lesion_soft.nii.gz``, ``S_lesion_seg.json``; S = the image's stem).
* Manual labels: ``ROOT/derivatives/labels/<the same folders>/S_lesion-manual.nii.gz`` (+ ``.json``), as in the
  ivadomed/SCT datasets.

Nothing under ``derivatives/`` (or any folder that is not ``sub-*``) is ever taken as an input image. One module for
these conventions: the batch runner, the QC page, the Slicer case list and ``sweep --bids`` all import it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .image_io import sha256_file, split_image_suffix

#: Our derivatives folder name under ``ROOT/derivatives``.
PIPELINE = "spinal-lesion-seg"
#: The manual labels' derivatives folder and the suffix of a manual lesion mask.
LABELS = "labels"
MANUAL_LESION = "lesion-manual"
#: BIDS suffixes of anatomical images that may hold MS lesions (the contrasts the models know, and others a user
#: may name with ``--suffix``). Masks and maps (``_seg``, ``_mask``...) are never inputs.
_NOT_IMAGES = re.compile(r"_(seg|mask|label|labels|dseg|probseg|lesion|roi)(-[A-Za-z0-9]+)?$", re.IGNORECASE)
#: What follows an image's stem in the names of the files made from it (fails lists may name those).
OUTPUT_NAMES = ("lesion_seg", "lesion_soft", "sc_seg", MANUAL_LESION)
_SUBJECT = re.compile(r"^sub-[A-Za-z0-9]+$")
_SESSION = re.compile(r"^ses-[A-Za-z0-9]+$")


@dataclass(frozen=True)
class BidsImage:
    """One raw image of a BIDS dataset."""

    #: The BIDS root and the image's path relative to it (``sub-01/ses-01/anat/sub-01_ses-01_T2w.nii.gz``).
    root: Path
    relative: Path
    #: ``sub-01``, ``ses-01`` (None without sessions), the file name without extension and its BIDS suffix.
    subject: str
    session: str | None
    stem: str
    suffix: str

    @property
    def path(self) -> Path:
        return self.root / self.relative

    @property
    def folder(self) -> Path:
        """``sub-XX/[ses-YY/]anat``: mirrored under each derivatives folder."""
        return self.relative.parent

    def output_dir(self) -> Path:
        """Where ``batch`` writes this image's predictions."""
        return pipeline_dir(self.root) / self.folder

    def label(self, name: str) -> Path:
        """This image's manual label ``name`` (``seg-manual``, ``lesion-manual``), existing or not:
        ``ROOT/derivatives/labels/<folder>/<stem>_<name>.nii.gz``."""
        return self.root / "derivatives" / LABELS / self.folder / f"{self.stem}_{name}.nii.gz"

    def manual_lesion(self) -> Path:
        """The manual (corrected) lesion mask of this image, existing or not."""
        return self.label(MANUAL_LESION)

    @property
    def key(self) -> str:
        """The image's name in the batch's records, logs and QC pictures: its stem (unique in a BIDS dataset)."""
        return self.stem

    @property
    def series_uids(self) -> tuple[str, ...]:
        """The DICOM series to read from :attr:`path` (none: a file)."""
        return ()

    def digest(self) -> str:
        """The sha256 of the image file (what a result's sidecar records of its input)."""
        return sha256_file(self.path)

    def matches(self, token: str) -> bool:
        """Whether a selection token names this image: its subject, session, ``sub-XX_ses-YY``, stem, file name,
        or (a fails list) a path ending with its file name or one of its stem's output names."""
        name = Path(token.strip()).name
        stem = next((name[:-len(ext)] for ext in (".nii.gz", ".nii", ".json") if name.endswith(ext)), name)
        pair = f"{self.subject}_{self.session}" if self.session else self.subject
        return token in (self.subject, self.session, pair) or stem == self.stem or \
            any(stem == f"{self.stem}_{name}" for name in OUTPUT_NAMES)


def pipeline_dir(root: str | os.PathLike[str]) -> Path:
    """``ROOT/derivatives/spinal-lesion-seg``: everything ``batch`` writes lives under it."""
    return Path(root) / "derivatives" / PIPELINE


def is_bids_root(root: str | os.PathLike[str]) -> bool:
    """Whether a folder holds ``sub-*`` folders (a BIDS dataset; else ``batch`` looks for DICOM series)."""
    path = Path(root)
    return path.is_dir() and any(_SUBJECT.match(p.name) and p.is_dir() for p in path.iterdir())


def check_root(root: str | os.PathLike[str]) -> Path:
    """The dataset root, or InputError when it is not a folder holding ``sub-*`` folders."""
    path = Path(root)
    if not path.is_dir():
        raise InputError(path, "is not a folder (give the root of a BIDS dataset)")
    if not any(_SUBJECT.match(p.name) and p.is_dir() for p in path.iterdir()):
        raise InputError(path, "has no sub-* folders: not the root of a BIDS dataset")
    return path


def find_images(root: str | os.PathLike[str], suffixes: Sequence[str] | None = None) -> list[BidsImage]:
    """Every anatomical image of the dataset (sorted by path), optionally only those whose name ends with one of
    ``suffixes`` (``T2w``, or ``acq-sag_T2w`` to match entities too). Masks and maps are skipped."""
    base = check_root(root)
    images = []
    for anat in sorted(base.glob("sub-*/anat")) + sorted(base.glob("sub-*/ses-*/anat")):
        for file in sorted(anat.iterdir()):
            image = _image(base, file)
            if image is not None and (not suffixes or any(image.stem.endswith("_" + s) for s in suffixes)):
                images.append(image)
    return sorted(images, key=lambda image: image.relative.as_posix())


def _image(root: Path, file: Path) -> BidsImage | None:
    """The image a file is, or None for what is not a raw image (sidecars, masks, hidden files)."""
    if not file.name.endswith((".nii.gz", ".nii")) or file.name.startswith("."):
        return None
    stem = split_image_suffix(file)[0]
    if _NOT_IMAGES.search(stem):
        return None
    parts = file.relative_to(root).parts
    subject, session = parts[0], parts[1] if len(parts) == 4 else None
    if not _SUBJECT.match(subject) or (session is not None and not _SESSION.match(session)):
        return None
    if not stem.startswith(subject + "_") or "_" not in stem:
        return None
    return BidsImage(root, file.relative_to(root), subject, session, stem, stem.rsplit("_", 1)[1])


def read_selection(tokens: Iterable[str]) -> list[str]:
    """Selection tokens from the command line: each is a label (``sub-02``, ``ses-01``), an image stem or file,
    or ``@FILE`` naming a list: one token per line, ``#`` comments, and YAML list items (``- path``) as in the QC
    page's ``qc_fail.yml`` (keys such as ``FILES_LESION:`` are skipped)."""
    selected: list[str] = []
    for token in tokens:
        if not token.startswith("@"):
            selected.append(token)
            continue
        path = Path(token[1:])
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(path, f"cannot be read as a list of subjects or images ({error})") from None
        for line in lines:
            text = line.split("#", 1)[0].strip()
            text = text[1:].strip() if text.startswith("-") else text
            if text and not text.endswith(":"):
                selected.append(text.strip("'\""))
    return selected


def select(images: Sequence[BidsImage], include: Sequence[str] = (), exclude: Sequence[str] = ()
           ) -> list[BidsImage]:
    """The images named by ``include`` (all when empty) and not by ``exclude``; InputError for a token that
    names no image (a typo would otherwise silently select nothing)."""
    for token in [*include, *exclude]:
        if not any(image.matches(token) for image in images):
            raise InputError(None, f"{token!r} matches no image of the dataset (give sub-XX, ses-YY, an image "
                                   "name, or @FILE)")
    chosen = [i for i in images if not include or any(i.matches(t) for t in include)]
    return [i for i in chosen if not any(i.matches(t) for t in exclude)]


def split_part(images: Sequence[BidsImage], num_parts: int, part_id: int) -> list[BidsImage]:
    """Part ``part_id`` of ``num_parts`` (nnU-Net's convention): every ``num_parts``-th image of the sorted list,
    starting at ``part_id``, so that parts run anywhere cover every image exactly once."""
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise InputError(None, f"--part-id must be in 0..{num_parts - 1} for --num-parts {num_parts}, got {part_id}")
    return sorted(images, key=lambda image: image.relative.as_posix())[part_id::num_parts]
