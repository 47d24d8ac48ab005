"""Find a model by name or folder, verify it, and describe it for the predictor (:class:`ResolvedModel`).

A registered model's files are re-hashed before the predictor may load them, so a corrupted or tampered checkpoint
is refused with the file's name. No Python file of a model folder is ever imported or run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..geometry import sct_to_axcodes
from . import manifests, registry
from .archive import open_source
from .checksums import fingerprint, hash_files
from .layout import Fold, check_trainer_folder, choose_trainer, load_json_object, model_files
from .manifests import DEFAULT_ORIENTATION, ModelManifest
from .progress import ProgressCallback

#: Label names taken as the spinal cord when a model has no manifest.
CORD_LABEL_NAMES = ("sc", "cord", "spinal_cord", "spinalcord")


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready for the predictor: its trainer folder checked, its files verified when it is registered."""

    #: Registry name, or the folder name for a plain path.
    name: str
    #: The nnU-Net trainer folder (holds dataset.json, plans.json and fold_N/).
    folder: Path
    #: The manifest of a known model; ``None`` for custom models and plain paths.
    manifest: ModelManifest | None
    #: Folds with a checkpoint, sorted (ints, then "all").
    folds: tuple[Fold, ...]
    #: Checkpoint per fold, ``checkpoint_final.pth`` preferred over ``checkpoint_best.pth``.
    checkpoints: Mapping[Fold, Path]
    #: Parsed dataset.json and plans.json.
    dataset: Mapping[str, Any]
    plans: Mapping[str, Any]
    #: Orientation to run the model in (SCT-style "from" letters, e.g. "RPI") and where it came from:
    #: "dataset.json" (its ``image_orientation``), "manifest", or "default" (LPI, as SCT does).
    orientation: str
    orientation_source: str
    #: dataset.json label (or region) name for lesions (None for a cord-only model), and for the spinal cord when
    #: the model segments it.
    lesion_label: str | None
    cord_label: str | None
    #: Parsed crop_metadata.json (``pad_*`` margins in mm) when the model has one.
    crop_metadata: Mapping[str, Any] | None
    #: True when every file was checked against the install record or the bundled SHA256SUMS.
    verified: bool
    #: sha256 naming the exact weights (see :func:`.checksums.fingerprint`).
    fingerprint: str
    #: Release tag of a known model ("bundled" for the demo); ``None`` for custom models.
    release: str | None

    @property
    def axcodes(self) -> str:
        """:attr:`orientation` as axcodes ("to" letters, what :func:`..geometry.reorient` takes)."""
        return sct_to_axcodes(self.orientation)

    @property
    def task(self) -> str:
        """"lesion", or "cord" for a cord-only model (no lesion label; its output is the cord)."""
        return "cord" if self.lesion_label is None else "lesion"

    @property
    def region_based(self) -> bool:
        """True when nnU-Net predicts overlapping regions (one sigmoid per region) instead of softmax classes."""
        return "regions_class_order" in self.dataset


def resolve_model(name_or_path: str | os.PathLike[str], progress: ProgressCallback | None = None) -> ResolvedModel:
    """Find a model by registry name or folder, check it, and describe it for the predictor.

    A registered model (known, custom or bundled) is verified first: every file is re-hashed and compared with
    its install record (or SHA256SUMS), and any missing, changed or unrecorded file raises InputError naming it,
    so the predictor never loads weights that are not the ones installed. A path to an nnU-Net trainer folder (or
    a folder holding exactly one) that is not registered resolves too, unverified (``verified=False``).
    No Python file of the model folder is imported or run.
    """
    text = os.fspath(name_or_path)
    if registry.NAME.match(text) and (text in manifests.MANIFESTS or registry.read_record(text) is not None):
        return _resolve_registered(text, progress)
    candidate = Path(text).expanduser()
    if candidate.is_dir():
        registered = registry.registered_name_of(candidate)
        if registered is not None:
            return _resolve_registered(registered, progress)
        with open_source(candidate) as source:
            trainer = choose_trainer(source, None)
        folder = (candidate / trainer).resolve()
        check_trainer_folder(folder, None, folder.name)  # fail on a bad folder before hashing its checkpoints
        digests = hash_files(folder, model_files(folder), progress)
        return _resolved(folder.name, folder, None, digests, verified=False)
    if registry.NAME.match(text):
        raise registry.unknown(text)
    raise InputError(candidate, "no such model folder")


def _resolve_registered(name: str, progress: ProgressCallback | None) -> ResolvedModel:
    """Verify a registered model and describe it; InputError naming the first problem and the fix."""
    verification = registry.verify(name, progress)
    if verification.problems:
        first = verification.problems[0]
        more = f" ({len(verification.problems) - 1} more problem(s))" if len(verification.problems) > 1 else ""
        raise InputError(first.path, f"{first.problem}{more}; model '{name}' failed verification: "
                                     f"{verification.advice}")
    return _resolved(name, verification.folder, verification.manifest, verification.expected, verified=True)


def _orientation(dataset: Mapping[str, Any], manifest: ModelManifest | None) -> tuple[str, str]:
    """(orientation, where it came from): dataset.json's ``image_orientation``, else the manifest's, else LPI."""
    if "image_orientation" in dataset:
        return str(dataset["image_orientation"]).upper(), "dataset.json"
    if manifest is not None:
        return manifest.orientation, "manifest"
    return DEFAULT_ORIENTATION, "default"


def _label_names(dataset: Mapping[str, Any], manifest: ModelManifest | None, dataset_json: Path) \
        -> tuple[str | None, str | None]:
    """(lesion label or None, cord label or None): the manifest's names, else "lesion" and a usual cord name. A
    cord-only model (the manifest says so, or its only foreground label is a usual cord name such as "sc") has no
    lesion label."""
    labels = dataset["labels"]
    cord = next((label for label in CORD_LABEL_NAMES if label in labels), None)
    if manifest is not None and manifest.cord_label in labels:
        cord = manifest.cord_label
    foreground = [label for label in labels if label != "background"]
    if (manifest is not None and manifest.lesion_label is None) or (manifest is None and foreground == [cord]):
        if cord is None:
            raise InputError(dataset_json, f"a cord-only model needs a cord label ({', '.join(CORD_LABEL_NAMES)}) "
                                           f"among {foreground}")
        return None, cord
    if manifest is not None and manifest.lesion_label in labels:
        return manifest.lesion_label, cord
    if "lesion" in labels:
        return "lesion", cord
    if len(foreground) != 1:
        raise InputError(dataset_json, f"cannot tell which label is the lesion among {foreground}; name it 'lesion'")
    return foreground[0], cord


def _resolved(name: str, folder: Path, manifest: ModelManifest | None, digests: Mapping[str, str],
              verified: bool) -> ResolvedModel:
    """Check the trainer folder and read what the predictor needs from it."""
    checkpoints = check_trainer_folder(folder, manifest, name)
    dataset = load_json_object(folder / "dataset.json")
    orientation, source = _orientation(dataset, manifest)
    lesion, cord = _label_names(dataset, manifest, folder / "dataset.json")
    crop_file = folder / "crop_metadata.json"
    return ResolvedModel(
        name=name,
        folder=folder,
        manifest=manifest,
        folds=tuple(checkpoints),
        checkpoints=checkpoints,
        dataset=dataset,
        plans=load_json_object(folder / "plans.json"),
        orientation=orientation,
        orientation_source=source,
        lesion_label=lesion,
        cord_label=cord,
        crop_metadata=load_json_object(crop_file) if crop_file.is_file() else None,
        verified=verified,
        fingerprint=fingerprint(digests),
        release=manifest.release if manifest is not None else None,
    )
