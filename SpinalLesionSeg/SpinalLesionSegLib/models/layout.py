"""The nnU-Net v2 trainer folder layout: which files prediction reads, and checks that a folder is a usable model.

A trainer folder (``Trainer__Plans__configuration``) holds ``dataset.json``, ``plans.json``, an optional
``crop_metadata.json`` and ``fold_N/checkpoint_final.pth`` (or ``checkpoint_best.pth``). Only these files are ever
installed, hashed or read; nothing else of a model folder (training logs, ``trainer_class.py``) is used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from .. import safe_json
from ..errors import InputError
from ..geometry import sct_to_axcodes
from .archive import ModelSource
from .manifests import ModelManifest
from .model_values import check_dataset, check_plans

#: Checkpoint names in order of preference, as SCT and nnU-Net's own predictor choose them.
CHECKPOINT_NAMES = ("checkpoint_final.pth", "checkpoint_best.pth")
#: Files of a trainer folder that prediction reads (besides the fold checkpoints).
MODEL_JSON_FILES = ("dataset.json", "plans.json", "crop_metadata.json")

#: A fold: nnU-Net's ``fold_N`` (int) or ``fold_all`` (the string "all").
Fold = int | str

_FOLD_DIR = re.compile(r"^fold_(\d+|all)$")


def fold_key(folder_name: str) -> Fold | None:
    """The fold of a ``fold_N`` / ``fold_all`` folder name; ``None`` for any other name."""
    match = _FOLD_DIR.match(folder_name)
    if match is None:
        return None
    return "all" if match.group(1) == "all" else int(match.group(1))


def model_files(folder: Path) -> list[str]:
    """Relative POSIX paths of the files prediction reads in a trainer folder: JSON files and fold checkpoints."""
    found = [name for name in MODEL_JSON_FILES if (folder / name).is_file()]
    for fold_dir in sorted(folder.iterdir()) if folder.is_dir() else []:
        if fold_dir.is_dir() and fold_key(fold_dir.name) is not None:
            found += [f"{fold_dir.name}/{name}" for name in CHECKPOINT_NAMES if (fold_dir / name).is_file()]
    return found


def load_json_object(file: Path) -> dict[str, Any]:
    """A JSON file that must hold an object (dataset.json, plans.json, an install record); InputError otherwise.

    Parsed by :mod:`..safe_json`, so a huge or absurdly nested file is refused instead of crashing the parser.
    """
    if not file.is_file():
        raise InputError(file, "missing: an nnU-Net trainer folder needs dataset.json and plans.json")
    data = safe_json.load_file(file)
    if not isinstance(data, dict):
        raise InputError(file, "not a JSON object")
    return data


def _checkpoints(folder: Path) -> dict[Fold, Path]:
    """Checkpoint per fold, final preferred over best, sorted by fold (numbers first, then "all")."""
    found: dict[Fold, Path] = {}
    for rel in model_files(folder):
        if "/" in rel:
            fold_name, checkpoint = rel.split("/")
            fold = fold_key(fold_name)
            assert fold is not None  # model_files only lists fold_* folders
            if fold not in found or checkpoint == CHECKPOINT_NAMES[0]:
                found[fold] = folder / rel
    return dict(sorted(found.items(), key=lambda item: (1, 0) if item[0] == "all" else (0, int(item[0]))))


def numbered_folds(folder: Path) -> list[int]:
    """The numbered folds of a trainer folder that have a checkpoint, sorted ("all" left out)."""
    return [int(fold) for fold in _checkpoints(folder) if fold != "all"]


def _normalised_labels(labels: Any) -> Any:
    """dataset.json labels with lists as tuples, to compare with a manifest."""
    if isinstance(labels, Mapping):
        return {key: tuple(value) if isinstance(value, list) else value for key, value in labels.items()}
    return labels


def check_trainer_folder(folder: Path, manifest: ModelManifest | None, name: str) -> dict[Fold, Path]:
    """Check a trainer folder against nnU-Net's layout, the values nnU-Net will use (:mod:`.model_values`) and the
    manifest; return its checkpoints per fold."""
    dataset = load_json_object(folder / "dataset.json")
    plans = load_json_object(folder / "plans.json")
    checkpoints = _checkpoints(folder)
    if not checkpoints:
        raise InputError(folder, "no fold_N/checkpoint_final.pth or checkpoint_best.pth: not a trained nnU-Net "
                                 "model folder")
    if "labels" not in dataset or not isinstance(dataset["labels"], Mapping):
        raise InputError(folder / "dataset.json", "has no 'labels' mapping")
    check_dataset(dataset, folder / "dataset.json")
    check_plans(plans, folder / "plans.json")
    if "image_orientation" in dataset:
        try:
            sct_to_axcodes(str(dataset["image_orientation"]))
        except ValueError as error:
            raise InputError(folder / "dataset.json", f"image_orientation: {error}") from None
    if manifest is not None:
        _check_against_manifest(folder, dataset, checkpoints, manifest, name)
    return checkpoints


def _check_against_manifest(folder: Path, dataset: Mapping[str, Any], checkpoints: Mapping[Fold, Path],
                            manifest: ModelManifest, name: str) -> None:
    """Refuse a folder that lacks folds the release ships, has other labels, or lacks its crop metadata."""
    missing = [fold for fold in manifest.folds or () if fold not in checkpoints]
    if missing:
        raise InputError(folder, f"model '{name}' needs folds {list(manifest.folds or ())} but "
                                 f"{', '.join(f'fold_{fold}' for fold in missing)} missing; install a partial model "
                                 "under another name (custom model)")
    if manifest.labels is not None and _normalised_labels(dataset["labels"]) != dict(manifest.labels):
        raise InputError(folder / "dataset.json", f"labels {dataset['labels']} differ from those of model '{name}' "
                                                  f"({dict(manifest.labels)}): wrong archive?")
    if manifest.crop and manifest.crop.metadata_file:
        load_json_object(folder / manifest.crop.metadata_file)


def _trainer_candidates(files: Iterable[PurePosixPath]) -> list[PurePosixPath]:
    """Folders of a source that look like nnU-Net trainer folders (fold checkpoints, or dataset + plans)."""
    names = set(files)
    candidates = set()
    for file in names:
        if file.name in CHECKPOINT_NAMES and fold_key(file.parent.name) is not None:
            candidates.add(file.parent.parent)
        if file.name == "dataset.json" and file.parent / "plans.json" in names:
            candidates.add(file.parent)
    return sorted(candidates)


def choose_trainer(source: ModelSource, manifest: ModelManifest | None) -> PurePosixPath:
    """The one trainer folder inside a zip or folder (the manifest's by name when there are several)."""
    candidates = _trainer_candidates(source.files)
    if manifest is not None and manifest.trainer_folder:
        named = [candidate for candidate in candidates if candidate.name == manifest.trainer_folder]
        if len(named) == 1:
            return named[0]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InputError(source.location, "no nnU-Net trainer folder found (expected dataset.json, plans.json and "
                                          "fold_N/checkpoint_final.pth or checkpoint_best.pth)")
    listed = ", ".join(str(candidate) for candidate in candidates)
    raise InputError(source.location, f"holds several nnU-Net trainer folders ({listed}); give the one to install")
