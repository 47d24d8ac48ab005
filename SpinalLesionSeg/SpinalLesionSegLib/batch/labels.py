"""Manual lesion masks of a BIDS dataset: where a correction goes, what it changed, its sidecar, and the rule that
never replaces a mask someone else wrote without asking. Pure file logic (SimpleITK, numpy); the Slicer case list
(:mod:`..mrml.case_list`) hands it a mask and nothing here knows about MRML.

* **Where.** ``ROOT/derivatives/labels/<sub-XX/[ses-YY/]anat>/S_lesion-manual.nii.gz`` and its sidecar
  ``S_lesion-manual.json`` (:meth:`..bids.BidsImage.manual_lesion`, as in the ivadomed/SCT datasets): a uint8 0/1
  mask on the raw image's own voxel grid, its header copied from the image (:func:`on_image_grid`), so that every
  BIDS tool reads it voxel for voxel with the image.
* **What changed.** Measured against the pre-label mask ``batch`` wrote (:func:`find_prelabel`; an empty mask when
  there is none): voxels added and removed, and lesions added and removed, a lesion being a connected component
  (:data:`..defaults.CONNECTIVITY`) of one mask that shares no voxel with the other (:func:`compare_masks`).
* **Sidecar.** BIDS-style provenance (:func:`manual_sidecar`): the model that pre-labelled the image (name and
  weights fingerprint from the pre-label sidecar), then the person, with the date, then the change counts and the
  seconds spent.
* **Save rule.** Mask and sidecar are published together, atomically (:class:`..result_set.ResultSet`). An existing
  mask is replaced silently only when this session wrote it (its sha256 is what we last wrote there); any other
  (another annotator's, an older session's, a file edited since) raises :class:`ManualMaskExists` until the caller
  passes ``overwrite=True`` after asking the user (:class:`LabelWriter`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from .. import __version__, safe_json
from ..analysis.lesions import label_components
from ..bids import BidsImage
from ..defaults import CONNECTIVITY
from ..errors import InputError
from ..image_io import same_grid, sha256_file
from ..inference.case import output_paths
from ..outputs import writable_folder
from ..result_set import ResultSet

#: The ResultSet role of the manual mask (its sidecar is the set's manifest).
MANUAL_ROLE = "lesion_manual"
#: The sidecar's date format (local time), as in the SCT/ivadomed label sidecars.
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
#: Largest pre-label or manual sidecar read (bytes): real ones are a few kilobytes.
SIDECAR_MAX_BYTES = 1 << 20


class ManualMaskExists(InputError):
    """A manual mask exists that this session did not write: replaced only when the caller, having asked the
    user, saves again with ``overwrite=True``. ``path`` is the mask."""


@dataclass(frozen=True)
class Prelabel:
    """What ``batch`` wrote for one image: the mask, the soft map and cord mask when present, the sidecar, and
    what the sidecar says about the model (None for anything it does not record)."""

    mask: Path
    soft: Path | None
    cord: Path | None
    sidecar: Path
    model: str | None
    fingerprint: str | None
    version: str | None
    threshold: float | None


@dataclass(frozen=True)
class Correction:
    """What a correction changed relative to the pre-label: lesions (connected components) and voxels added and
    removed, and the time spent on the case (s)."""

    lesions_added: int
    lesions_removed: int
    voxels_added: int
    voxels_removed: int
    seconds_spent: float


def manual_sidecar_path(mask: Path) -> Path:
    """``S_lesion-manual.json`` beside ``S_lesion-manual.nii.gz``."""
    return mask.with_name(mask.name.removesuffix(".nii.gz") + ".json")


def find_prelabel(image: BidsImage) -> Prelabel | None:
    """The image's pre-label, or None when ``batch`` has not published one (the sidecar, written last, is what
    makes a set complete). An unreadable sidecar still counts; its model fields are then None."""
    paths = output_paths(image.output_dir(), image.stem)
    if not (paths["sidecar"].is_file() and paths["lesion_seg"].is_file()):
        return None
    record = _read_json(paths["sidecar"])
    model = record.get("model") if isinstance(record.get("model"), dict) else {}
    ours = [e for e in record.get("GeneratedBy", []) if isinstance(e, dict) and e.get("Name") == "SpinalLesionSeg"] \
        if isinstance(record.get("GeneratedBy"), list) else []
    threshold = record.get("threshold")
    return Prelabel(mask=paths["lesion_seg"], soft=_existing(paths["lesion_soft"]), cord=_existing(paths["sc_seg"]),
                    sidecar=paths["sidecar"], model=_text(model.get("name")),
                    fingerprint=_text(model.get("fingerprint")),
                    version=_text(ours[0].get("Version")) if ours else None,
                    threshold=float(threshold) if isinstance(threshold, (int, float)) else None)


def recorded_seconds(mask: Path) -> float:
    """The ``Correction.seconds_spent`` a manual mask's sidecar records (0 when it records none): a case corrected
    over several sessions reports the total time."""
    correction = _read_json(manual_sidecar_path(mask)).get("Correction")
    seconds = correction.get("seconds_spent") if isinstance(correction, dict) else None
    return float(seconds) if isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0 else 0.0


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; empty when the file is missing, unreadable or not an object (sidecars are
    provenance: a damaged one must not stop an annotator)."""
    try:
        record = safe_json.load_file(path, max_bytes=SIDECAR_MAX_BYTES)
    except (InputError, OSError):
        return {}
    return record if isinstance(record, dict) else {}


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def empty_like(image: sitk.Image) -> sitk.Image:
    """An empty (all 0) uint8 image with ``image``'s geometry: a mask's grid without the image's voxels."""
    grid = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    grid.CopyInformation(image)
    return grid


def on_image_grid(mask: sitk.Image, image: sitk.Image) -> sitk.Image:
    """``mask`` as a uint8 0/1 image on ``image``'s voxel grid, header (origin, spacing, direction) copied from it.

    ``mask`` is the same physical grid, possibly with k reversed: Slicer holds left-handed files (NIfTI LAS, PSR) on
    a k-flipped grid (:func:`..geometry.to_right_handed`), and the file must be on the image's own. A pure axis flip
    moves no voxel centre, so no value is interpolated. InputError for any other grid."""
    for candidate in (mask, sitk.Flip(mask, [False, False, True])):
        if same_grid(candidate, image):
            result = sitk.Cast(candidate != 0, sitk.sitkUInt8)
            result.CopyInformation(image)
            return result
    raise InputError(None, f"the mask ({mask.GetSize()} voxels) is not on the image's voxel grid "
                           f"({image.GetSize()} voxels)")


def compare_masks(before: np.ndarray, after: np.ndarray, seconds_spent: float,
                  connectivity: int = CONNECTIVITY) -> Correction:
    """What turned ``before`` (the pre-label) into ``after`` (the correction), two boolean arrays of one grid.

    A lesion counts as added when its component in ``after`` shares no voxel with ``before``, and as removed when
    its component in ``before`` shares none with ``after``; a lesion grown, shrunk, split or merged is neither
    (its voxels are counted)."""
    if before.shape != after.shape:
        raise ValueError(f"masks of different shapes: {before.shape} and {after.shape}")
    before, after = before.astype(bool), after.astype(bool)
    return Correction(lesions_added=_untouched(after, before, connectivity),
                      lesions_removed=_untouched(before, after, connectivity),
                      voxels_added=int(np.count_nonzero(after & ~before)),
                      voxels_removed=int(np.count_nonzero(before & ~after)),
                      seconds_spent=round(float(seconds_spent), 1))


def _untouched(mask: np.ndarray, other: np.ndarray, connectivity: int) -> int:
    """Components of ``mask`` that share no voxel with ``other``."""
    labels, count = label_components(mask, connectivity)
    touched = np.unique(labels[mask & other])
    return count - int(np.count_nonzero(touched))


def manual_sidecar(prelabel: Prelabel | None, author: str, when: datetime, correction: Correction) -> dict[str, Any]:
    """The ``S_lesion-manual.json`` record. Without a pre-label (the image was painted from scratch) only the
    person appears under ``GeneratedBy``. InputError when ``author`` is empty: every manual mask says who made it."""
    if not author.strip():
        raise InputError(None, "no author: type your name in the Author field (each manual mask records who made it)")
    made_by: list[dict[str, Any]] = []
    if prelabel is not None:
        made_by.append({"Name": "SpinalLesionSeg", "Version": prelabel.version or __version__,
                        "Model": prelabel.model, "ModelSHA256": prelabel.fingerprint})
    made_by.append({"Name": "Manual", "Author": author.strip(), "Date": when.strftime(DATE_FORMAT)})
    return {"SpatialReference": "orig", "GeneratedBy": made_by, "Correction": asdict(correction)}


class LabelWriter:
    """Publishes manual masks under the save rule (module docstring), remembering the sha256 of each mask it
    wrote: one writer per Slicer session, so a correction saved twice is replaced without a question."""

    def __init__(self) -> None:
        self._written: dict[Path, str] = {}

    def wrote(self, mask: Path) -> bool:
        """Whether ``mask`` holds exactly what this writer last wrote there."""
        digest = self._written.get(mask.resolve())
        return digest is not None and mask.is_file() and sha256_file(mask) == digest

    def save(self, image: BidsImage, mask: sitk.Image, sidecar: dict[str, Any], *, overwrite: bool = False) -> Path:
        """Write ``mask`` (on the image's grid, :func:`on_image_grid`) and ``sidecar`` as the image's manual
        lesion mask, together; return the mask's path. ManualMaskExists when another mask is there and
        ``overwrite`` is False; InputError when the labels folder cannot be written."""
        path = image.manual_lesion()
        if path.exists() and not overwrite and not self.wrote(path):
            raise ManualMaskExists(path, "exists and was not written in this session (another annotator's mask, "
                                         "or one edited since): replace it only after confirming")
        writable_folder(path.parent)
        with ResultSet(manual_sidecar_path(path), {MANUAL_ROLE: path}, overwrite=True) as result_set:  # rule above
            result_set.stage_image(MANUAL_ROLE, mask)
            digest = result_set.sha256()[MANUAL_ROLE]
            result_set.publish(json.dumps(sidecar, indent=2) + "\n")
        self._written[path.resolve()] = digest
        return path
