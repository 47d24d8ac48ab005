"""Model registry and installer: where models live, how they get there, and how the predictor finds them safely.

Layout of the cache (``~/.spinal-lesion-seg/models``, or ``$SPINAL_LESION_SEG_HOME/models``)::

    models/<name>/install.json            the install record: sources, folds, sha256 of every installed file
    models/<name>/<trainer folder>/       a plain nnU-Net v2 trainer folder (usable by nnUNetv2_predict too)
    models/.downloads/<name>-<release>/   archives being downloaded (``*.part``), deleted after the install
    models/.tmp-*                         installs in progress (renamed into place only when complete)

Only what prediction needs is installed: ``dataset.json``, ``plans.json``, ``crop_metadata.json`` when the release
has one, and ``fold_N/checkpoint_final.pth`` / ``checkpoint_best.pth``. Everything else in an archive (training
logs, validation outputs, the ``trainer_class.py`` SCT executes) is left out: no code from a model archive is ever
imported or run. Every installed file is hashed at install and re-hashed by :func:`resolve_model` before the
predictor may load it, so a corrupted or tampered checkpoint is refused with the file's name.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .. import __version__
from .archive import ModelSource, open_source
from .download import ProgressCallback, download
from ..errors import InputError
from ..geometry import sct_to_axcodes
from ..image_io import sha256_file as io_sha256_file
from .manifests import DEFAULT_ORIENTATION, MANIFESTS, ModelManifest

HOME_ENV = "SPINAL_LESION_SEG_HOME"
DEFAULT_HOME = Path("~/.spinal-lesion-seg")
RECORD_NAME = "install.json"
#: Checksum list shipped with a bundled model, in ``sha256sum`` format (``<hex>  <relative path>``).
SUMS_NAME = "SHA256SUMS"
#: Checkpoint names in order of preference, as SCT and nnU-Net's own predictor choose them.
CHECKPOINT_NAMES = ("checkpoint_final.pth", "checkpoint_best.pth")
#: Files of a trainer folder that prediction reads (besides the fold checkpoints).
MODEL_JSON_FILES = ("dataset.json", "plans.json", "crop_metadata.json")
#: Label names taken as the spinal cord when a model has no manifest.
CORD_LABEL_NAMES = ("sc", "cord", "spinal_cord", "spinalcord")

#: A fold: nnU-Net's ``fold_N`` (int) or ``fold_all`` (the string "all").
Fold = int | str

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_FOLD_DIR = re.compile(r"^fold_(\d+|all)$")
_RECORD_FORMAT = 1


# --------------------------------------------------------------------------------------------------------------
# Where things are


def home() -> Path:
    """The toolkit's data folder: ``$SPINAL_LESION_SEG_HOME`` when set, else ``~/.spinal-lesion-seg``."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def models_dir() -> Path:
    """The model cache, ``<home>/models``."""
    return home() / "models"


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise InputError(None, f"invalid model name {name!r}: use letters, digits, '_', '-' or '.', starting with "
                               "a letter or digit (at most 64 characters)")


def _fold_key(folder_name: str) -> Fold | None:
    match = _FOLD_DIR.match(folder_name)
    if match is None:
        return None
    return "all" if match.group(1) == "all" else int(match.group(1))


def _fold_sort_key(fold: Fold) -> tuple[int, int]:
    return (1, 0) if fold == "all" else (0, int(fold))


# --------------------------------------------------------------------------------------------------------------
# Checksums


def sha256_file(file: Path, progress: ProgressCallback | None = None, done: int = 0, total: int | None = None) -> str:
    """Hex sha256 of a file (:func:`.io.sha256_file`), reporting ``done`` bytes of ``total`` as it reads."""
    count = [done]

    def on_bytes(n: int) -> None:
        count[0] += n
        if progress:
            progress("checksums", count[0], total)

    return io_sha256_file(file, on_bytes)


def model_files(folder: Path) -> list[str]:
    """Relative POSIX paths of the files prediction reads in a trainer folder: JSON files and fold checkpoints."""
    found = [name for name in MODEL_JSON_FILES if (folder / name).is_file()]
    for fold_dir in sorted(folder.iterdir()) if folder.is_dir() else []:
        if fold_dir.is_dir() and _fold_key(fold_dir.name) is not None:
            found += [f"{fold_dir.name}/{name}" for name in CHECKPOINT_NAMES if (fold_dir / name).is_file()]
    return found


def _hash_files(folder: Path, relative: Iterable[str], progress: ProgressCallback | None) -> dict[str, str]:
    relative = list(relative)
    total = sum((folder / rel).stat().st_size for rel in relative)
    digests: dict[str, str] = {}
    done = 0
    for rel in relative:
        digests[rel] = sha256_file(folder / rel, progress, done, total)
        done += (folder / rel).stat().st_size
    return digests


def fingerprint(digests: Mapping[str, str]) -> str:
    """One sha256 naming a whole model: the hash of its sorted ``<sha256>  <path>`` lines (as in SHA256SUMS).

    Recorded by the predictor in each output's sidecar, so a result can be traced to the exact weights.
    """
    lines = "".join(f"{digests[rel]}  {rel}\n" for rel in sorted(digests))
    return hashlib.sha256(lines.encode()).hexdigest()


def write_sha256sums(folder: str | os.PathLike[str]) -> Path:
    """Write ``SHA256SUMS`` for the model files of a trainer folder (used to ship the bundled demo model).

    The format is ``sha256sum``'s, so ``sha256sum -c SHA256SUMS`` checks it too.
    """
    root = Path(folder)
    digests = _hash_files(root, model_files(root), None)
    sums = root / SUMS_NAME
    sums.write_text("".join(f"{digests[rel]}  {rel}\n" for rel in sorted(digests)))
    return sums


def _read_sums(file: Path) -> dict[str, str]:
    digests: dict[str, str] = {}
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        match = re.match(r"^([0-9a-fA-F]{64}) [ *](.+)$", line)
        if match is None:
            raise InputError(file, f"line {number} is not '<sha256>  <file>'")
        digests[match.group(2)] = match.group(1).lower()
    return digests


# --------------------------------------------------------------------------------------------------------------
# Results


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
    #: dataset.json label (or region) name for lesions, and for the spinal cord when the model segments it.
    lesion_label: str
    cord_label: str | None
    #: Parsed crop_metadata.json (``pad_*`` margins in mm) when the model has one.
    crop_metadata: Mapping[str, Any] | None
    #: True when every file was checked against the install record or the bundled SHA256SUMS.
    verified: bool
    #: sha256 naming the exact weights (see :func:`fingerprint`).
    fingerprint: str
    #: Release tag of a known model ("bundled" for the demo); ``None`` for custom models.
    release: str | None

    @property
    def axcodes(self) -> str:
        """:attr:`orientation` as axcodes ("to" letters, what :func:`.geometry.reorient` takes)."""
        return sct_to_axcodes(self.orientation)

    @property
    def region_based(self) -> bool:
        """True when nnU-Net predicts overlapping regions (one sigmoid per region) instead of softmax classes."""
        return "regions_class_order" in self.dataset


@dataclass(frozen=True)
class Mismatch:
    """One verification problem, naming the file."""

    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass(frozen=True)
class Verification:
    """Outcome of :func:`verify`."""

    name: str
    folder: Path
    files_checked: int
    problems: tuple[Mismatch, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class ModelStatus:
    """One line of ``models list``."""

    name: str
    title: str
    kind: str  # "published", "bundled" or "custom"
    installed: bool
    folder: Path | None
    release: str | None
    size_mb: float | None


# --------------------------------------------------------------------------------------------------------------
# Reading a trainer folder


def _load_json_object(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise InputError(file, "missing: an nnU-Net trainer folder needs dataset.json and plans.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(file, f"not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise InputError(file, "not a JSON object")
    return data


def _checkpoints(folder: Path) -> dict[Fold, Path]:
    found: dict[Fold, Path] = {}
    for rel in model_files(folder):
        if "/" in rel:
            fold_name, checkpoint = rel.split("/")
            fold = _fold_key(fold_name)
            assert fold is not None  # model_files only lists fold_* folders
            if fold not in found or checkpoint == CHECKPOINT_NAMES[0]:
                found[fold] = folder / rel
    return dict(sorted(found.items(), key=lambda item: _fold_sort_key(item[0])))


def _normalised_labels(labels: Any) -> Any:
    """dataset.json labels with lists as tuples, to compare with a manifest."""
    if isinstance(labels, Mapping):
        return {key: tuple(value) if isinstance(value, list) else value for key, value in labels.items()}
    return labels


def _check_trainer_folder(folder: Path, manifest: ModelManifest | None, name: str) -> dict[Fold, Path]:
    """Check a trainer folder against nnU-Net's layout and the manifest; return its checkpoints per fold."""
    dataset = _load_json_object(folder / "dataset.json")
    _load_json_object(folder / "plans.json")
    checkpoints = _checkpoints(folder)
    if not checkpoints:
        raise InputError(folder, "no fold_N/checkpoint_final.pth or checkpoint_best.pth: not a trained nnU-Net "
                                 "model folder")
    if "labels" not in dataset or not isinstance(dataset["labels"], Mapping):
        raise InputError(folder / "dataset.json", "has no 'labels' mapping")
    if "image_orientation" in dataset:
        try:
            sct_to_axcodes(str(dataset["image_orientation"]))
        except ValueError as error:
            raise InputError(folder / "dataset.json", f"image_orientation: {error}") from None
    if manifest is None:
        return checkpoints
    missing = [fold for fold in manifest.folds or () if fold not in checkpoints]
    if missing:
        raise InputError(folder, f"model '{name}' needs folds {list(manifest.folds or ())} but "
                                 f"{', '.join(f'fold_{fold}' for fold in missing)} missing; install a partial model "
                                 "under another name (custom model)")
    if manifest.labels is not None and _normalised_labels(dataset["labels"]) != dict(manifest.labels):
        raise InputError(folder / "dataset.json", f"labels {dataset['labels']} differ from those of model '{name}' "
                                                  f"({dict(manifest.labels)}): wrong archive?")
    if manifest.crop and manifest.crop.metadata_file:
        _load_json_object(folder / manifest.crop.metadata_file)
    return checkpoints


def _label_names(dataset: Mapping[str, Any], manifest: ModelManifest | None, dataset_json: Path) \
        -> tuple[str, str | None]:
    labels = dataset["labels"]
    if manifest is not None and manifest.lesion_label in labels:
        lesion = manifest.lesion_label
    elif "lesion" in labels:
        lesion = "lesion"
    else:
        foreground = [label for label in labels if label != "background"]
        if len(foreground) != 1:
            raise InputError(dataset_json, f"cannot tell which label is the lesion among {foreground}; name it "
                                           "'lesion'")
        lesion = foreground[0]
    if manifest is not None and manifest.cord_label in labels:
        return lesion, manifest.cord_label
    return lesion, next((label for label in CORD_LABEL_NAMES if label in labels), None)


def _resolved(name: str, folder: Path, manifest: ModelManifest | None, digests: Mapping[str, str],
              verified: bool) -> ResolvedModel:
    checkpoints = _check_trainer_folder(folder, manifest, name)
    dataset = _load_json_object(folder / "dataset.json")
    if "image_orientation" in dataset:
        orientation, source = str(dataset["image_orientation"]).upper(), "dataset.json"
    elif manifest is not None:
        orientation, source = manifest.orientation, "manifest"
    else:
        orientation, source = DEFAULT_ORIENTATION, "default"
    lesion, cord = _label_names(dataset, manifest, folder / "dataset.json")
    crop_file = folder / "crop_metadata.json"
    return ResolvedModel(
        name=name,
        folder=folder,
        manifest=manifest,
        folds=tuple(checkpoints),
        checkpoints=checkpoints,
        dataset=dataset,
        plans=_load_json_object(folder / "plans.json"),
        orientation=orientation,
        orientation_source=source,
        lesion_label=lesion,
        cord_label=cord,
        crop_metadata=_load_json_object(crop_file) if crop_file.is_file() else None,
        verified=verified,
        fingerprint=fingerprint(digests),
        release=manifest.release if manifest is not None else None,
    )


# --------------------------------------------------------------------------------------------------------------
# Install records


def _record_file(name: str) -> Path:
    return models_dir() / name / RECORD_NAME


def _read_record(name: str) -> dict[str, Any] | None:
    """The install record of ``name``, or None when it is not installed."""
    file = _record_file(name)
    if not file.is_file():
        return None
    record = _load_json_object(file)
    if record.get("format") != _RECORD_FORMAT or not isinstance(record.get("files"), dict):
        raise InputError(file, "unknown install record format; remove and reinstall the model")
    return record


def _bundled_folder(manifest: ModelManifest) -> Path:
    folder = manifest.bundled_folder
    assert folder is not None
    if not (folder / "dataset.json").is_file():
        raise InputError(folder, f"the bundled '{manifest.name}' model is missing from this installation "
                                 "(a development checkout must build it first)")
    return folder


def _installed_folder(name: str, record: Mapping[str, Any]) -> Path:
    return models_dir() / name / str(record["trainer_folder"])


def _unknown(name: str) -> InputError:
    known = ", ".join(sorted({*MANIFESTS, *(status.name for status in list_models())}))
    return InputError(None, f"unknown model '{name}' (known: {known}); register an nnU-Net folder with "
                            f"'spinal-lesion-seg models install {name} --from FOLDER_OR_ZIP'")


def _not_installed(name: str) -> InputError:
    return InputError(None, f"model '{name}' is not installed; run 'spinal-lesion-seg models install {name}'")


def path(name: str) -> Path:
    """The trainer folder of an installed (or bundled) model; InputError when it is not there."""
    _check_name(name)
    manifest = MANIFESTS.get(name)
    if manifest is not None and manifest.bundled:
        return _bundled_folder(manifest)
    record = _read_record(name)
    if record is None:
        raise _not_installed(name) if manifest is not None else _unknown(name)
    return _installed_folder(name, record)


def is_installed(name: str) -> bool:
    """True when ``name`` is installed in the cache or is a bundled model present in this installation."""
    _check_name(name)
    manifest = MANIFESTS.get(name)
    if manifest is not None and manifest.bundled_folder is not None:
        return (manifest.bundled_folder / "dataset.json").is_file()
    return _read_record(name) is not None


def list_models() -> list[ModelStatus]:
    """Every known model (installed or not) followed by the custom models installed in the cache."""
    statuses = []
    for name, manifest in MANIFESTS.items():
        if manifest.bundled:
            folder = manifest.bundled_folder
            installed = folder is not None and (folder / "dataset.json").is_file()
            kind = "bundled"
        else:
            record = _read_record(name)
            installed = record is not None
            folder = _installed_folder(name, record) if record is not None else None
            kind = "published"
        statuses.append(ModelStatus(name, manifest.title, kind, installed, folder if installed else None,
                                    manifest.release, manifest.size_mb))
    root = models_dir()
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        if entry.name in MANIFESTS or not _NAME.match(entry.name):
            continue
        record = _read_record(entry.name)
        if record is not None:
            sources = ", ".join(str(source["location"]) for source in record.get("sources", []))
            statuses.append(ModelStatus(entry.name, f"custom model from {sources}", "custom", True,
                                        _installed_folder(entry.name, record), None, None))
    return statuses


# --------------------------------------------------------------------------------------------------------------
# Install


def _trainer_candidates(files: Iterable[PurePosixPath]) -> list[PurePosixPath]:
    """Folders of a source that look like nnU-Net trainer folders (fold checkpoints, or dataset + plans)."""
    names = set(files)
    candidates = set()
    for file in names:
        if file.name in CHECKPOINT_NAMES and _fold_key(file.parent.name) is not None:
            candidates.add(file.parent.parent)
        if file.name == "dataset.json" and file.parent / "plans.json" in names:
            candidates.add(file.parent)
    return sorted(candidates)


def _choose_trainer(source: ModelSource, manifest: ModelManifest | None) -> PurePosixPath:
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


def _members_to_install(source: ModelSource, trainer: PurePosixPath) -> dict[PurePosixPath, str]:
    """Source member -> path inside the installed trainer folder, for the files prediction needs only."""
    wanted: dict[PurePosixPath, str] = {}
    for member in source.files:
        if member.parent == trainer and member.name in MODEL_JSON_FILES:
            wanted[member] = member.name
        elif member.name == "crop_metadata.json" and (member.parent in trainer.parents):
            # SCT's cropped retrain keeps crop_metadata.json at the zip root, beside the trainer folder.
            wanted.setdefault(member, member.name)
        elif (member.parent.parent == trainer and _fold_key(member.parent.name) is not None
              and member.name in CHECKPOINT_NAMES):
            wanted[member] = f"{member.parent.name}/{member.name}"
    return wanted


def _merge(sources: Sequence[ModelSource], manifest: ModelManifest | None, build: Path,
           progress: ProgressCallback | None) -> str:
    """Copy the model files of every source into one trainer folder under ``build``; return its name.

    Several sources are merged (SCT's releases ship one zip per fold): JSON files must agree between sources,
    and a checkpoint may come from one source only.
    """
    plans = [(source, _members_to_install(source, trainer), trainer)
             for source in sources for trainer in [_choose_trainer(source, manifest)]]
    first_source, _, first_trainer = plans[0]
    if manifest is not None and manifest.trainer_folder:
        trainer_name = manifest.trainer_folder
    else:
        trainer_name = first_trainer.name or first_source.location.stem
    destination = build / trainer_name
    total = sum(source.files[member] for source, wanted, _ in plans for member in wanted)
    done = 0
    origin: dict[str, Path] = {}

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress:
            progress("installing", done, total)

    for source, wanted, _ in plans:
        for member, rel in sorted(wanted.items()):
            target = destination / rel
            if rel in origin:
                if rel not in MODEL_JSON_FILES:
                    raise InputError(source.location, f"{rel} is also in {origin[rel]}: cannot merge")
                theirs = json.loads(target.read_text())
                try:
                    ours = json.loads(source.read(member))
                except json.JSONDecodeError as error:
                    raise InputError(source.location, f"{member} is not valid JSON ({error})") from None
                if ours != theirs:
                    raise InputError(source.location, f"{member} differs from {rel} in {origin[rel]}: these "
                                                      "archives are not parts of one model")
                advance(source.files[member])
                continue
            source.copy(member, target, advance)
            origin[rel] = source.location
    return trainer_name


def _check_pins(manifest: ModelManifest | None, sources: Sequence[Mapping[str, Any]]) -> list[str]:
    """Problems where a source archive's sha256 differs from the one pinned in the manifest (the pin wins)."""
    if manifest is None:
        return []
    pins = {archive.filename: archive.sha256 for archive in manifest.archives if archive.sha256}
    problems = []
    for source in sources:
        filename = str(source["location"]).replace("\\", "/").rsplit("/", 1)[-1]
        pinned = pins.get(filename)
        if pinned and source.get("sha256") and source["sha256"] != pinned.lower():
            problems.append(f"archive {filename} has sha256 {source['sha256']} but the release pins {pinned}")
    return problems


def install(name: str, source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
            progress: ProgressCallback | None = None, *, force: bool = False) -> Path:
    """Install model ``name`` and return its trainer folder.

    Without ``source``, a known model is downloaded from its release (resuming partial downloads). With
    ``source`` (a zip, an unzipped nnU-Net folder, or several of them to merge), it is installed offline; for a
    name no manifest knows this registers a custom model. The model is built in a temporary folder inside the
    cache and renamed into place only when complete and hashed, so a failure leaves nothing behind. An already
    installed model is returned as is unless ``force`` (then it is replaced, again atomically).
    """
    _check_name(name)
    manifest = MANIFESTS.get(name)
    sources = ([] if source is None else [source] if isinstance(source, (str, os.PathLike)) else list(source))
    if manifest is not None and manifest.bundled:
        if sources:
            raise InputError(None, f"'{name}' is bundled with SpinalLesionSeg; install your model under another "
                                   "name")
        return _bundled_folder(manifest)
    if manifest is None and not sources:
        raise _unknown(name)
    root = models_dir()
    target = root / name
    record = _read_record(name)
    if record is not None and not force:
        return _installed_folder(name, record)

    root.mkdir(parents=True, exist_ok=True)
    downloads = root / ".downloads" / f"{name}-{manifest.release}" if manifest is not None else None
    build = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    try:
        if sources:
            locations = [Path(location).expanduser().resolve() for location in sources]
            origins = [str(location) for location in locations]
        else:
            assert manifest is not None and downloads is not None
            locations = [download(archive.url, downloads / archive.filename, progress)
                         for archive in manifest.archives]
            origins = [archive.url for archive in manifest.archives]
        source_records: list[dict[str, Any]] = []
        for location, origin in zip(locations, origins):
            digest = sha256_file(location) if location.is_file() else None
            kind = "url" if not sources else "zip" if digest is not None else "folder"
            source_records.append({"kind": kind, "location": origin, "sha256": digest})
        pin_problems = _check_pins(manifest, source_records)
        if pin_problems:
            if not sources and downloads is not None:
                shutil.rmtree(downloads, ignore_errors=True)  # a wrong download must not be resumed
            raise InputError(None, f"model '{name}': {pin_problems[0]}")
        opened = [open_source(location) for location in locations]
        try:
            trainer_name = _merge(opened, manifest, build, progress)
        finally:
            for handle in opened:
                handle.close()
        folder = build / trainer_name
        checkpoints = _check_trainer_folder(folder, manifest, name)
        digests = _hash_files(folder, model_files(folder), progress)
        record = {
            "format": _RECORD_FORMAT,
            "name": name,
            "custom": manifest is None,
            "release": manifest.release if manifest is not None else None,
            "trainer_folder": trainer_name,
            "folds": [fold for fold in checkpoints],
            "installed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "software_version": __version__,
            "sources": source_records,
            "files": digests,
            "fingerprint": fingerprint(digests),
        }
        (build / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
        _publish(build, target)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    if downloads is not None and not sources:
        shutil.rmtree(downloads, ignore_errors=True)
    return target / trainer_name


def _publish(build: Path, target: Path) -> None:
    """Rename the finished build into place, replacing an older install only once the new one is complete."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".tmp-old-{target.name}-", dir=target.parent))
        os.replace(target, old / target.name)
    try:
        os.rename(build, target)
    except OSError as error:
        if old is not None:
            os.replace(old / target.name, target)
        raise InputError(target, f"cannot install here ({error.strerror}); was it installed meanwhile?") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove(name: str) -> Path:
    """Remove an installed model (and any partial download of it); return the folder that was removed."""
    _check_name(name)
    manifest = MANIFESTS.get(name)
    if manifest is not None and manifest.bundled:
        raise InputError(None, f"'{name}' is bundled with SpinalLesionSeg and cannot be removed")
    target = models_dir() / name
    if _read_record(name) is None:
        raise _not_installed(name) if manifest is not None else _unknown(name)
    # Rename first so that the model disappears at once, even if deleting its files takes a while or fails.
    trash = Path(tempfile.mkdtemp(prefix=f".tmp-removed-{name}-", dir=target.parent))
    os.replace(target, trash / name)
    shutil.rmtree(trash, ignore_errors=True)
    for partial in (models_dir() / ".downloads").glob(f"{name}-*"):
        shutil.rmtree(partial, ignore_errors=True)
    return target


# --------------------------------------------------------------------------------------------------------------
# Verify and resolve


def _compare(folder: Path, expected: Mapping[str, str], progress: ProgressCallback | None) -> list[Mismatch]:
    problems = []
    present = [rel for rel in sorted(expected) if (folder / rel).is_file()]
    problems += [Mismatch(folder / rel, "missing") for rel in sorted(expected) if rel not in present]
    found = _hash_files(folder, present, progress)
    for rel in present:
        if found[rel] != expected[rel].lower():
            problems.append(Mismatch(folder / rel, f"sha256 mismatch (expected {expected[rel]}, found {found[rel]})"))
    for rel in model_files(folder):
        if rel not in expected:
            problems.append(Mismatch(folder / rel, "not part of the installed model (no recorded checksum)"))
    return problems


def _expected_digests(name: str) -> tuple[Path, dict[str, str], ModelManifest | None, list[str]]:
    """(trainer folder, expected sha256 per file, manifest, pin problems) of a registered model."""
    manifest = MANIFESTS.get(name)
    if manifest is not None and manifest.bundled:
        folder = _bundled_folder(manifest)
        sums = folder / SUMS_NAME
        if not sums.is_file():
            raise InputError(sums, f"missing: the bundled '{name}' model cannot be verified")
        return folder, _read_sums(sums), manifest, []
    record = _read_record(name)
    if record is None:
        raise _not_installed(name) if manifest is not None else _unknown(name)
    return (_installed_folder(name, record), dict(record["files"]), manifest,
            _check_pins(manifest, record.get("sources", [])))


def verify(name: str, progress: ProgressCallback | None = None) -> Verification:
    """Re-hash every file of a registered model and report each file that is missing, changed or unexpected.

    Installed models are checked against their install record, the bundled demo against its SHA256SUMS; when the
    manifest pins an archive checksum, an install from a different archive is reported too (the pin wins).
    """
    _check_name(name)
    folder, expected, _, pin_problems = _expected_digests(name)
    problems = [Mismatch(folder, problem) for problem in pin_problems] + _compare(folder, expected, progress)
    return Verification(name, folder, len(expected), tuple(problems))


def _registered_name_of(folder: Path) -> str | None:
    """The registry name when ``folder`` is (or holds) the trainer folder of an installed or bundled model."""
    resolved = folder.resolve()
    for name, manifest in MANIFESTS.items():
        if manifest.bundled_folder is not None and resolved == manifest.bundled_folder.resolve():
            return name
    root = models_dir().resolve()
    if resolved.parent == root or resolved.parent.parent == root:
        name = resolved.name if resolved.parent == root else resolved.parent.name
        record = _read_record(name) if _NAME.match(name) else None
        if record is not None and resolved in (root / name, (root / name / str(record["trainer_folder"]))):
            return name
    return None


def _resolve_registered(name: str, progress: ProgressCallback | None) -> ResolvedModel:
    folder, expected, manifest, pin_problems = _expected_digests(name)
    problems = [Mismatch(folder, problem) for problem in pin_problems] + _compare(folder, expected, progress)
    if problems:
        first = problems[0]
        more = f" ({len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        fix = ("reinstall it with 'spinal-lesion-seg models install " + name + " --force'"
               if manifest is None or not manifest.bundled else "reinstall SpinalLesionSeg")
        raise InputError(first.path, f"{first.problem}{more}; model '{name}' failed verification: {fix}")
    return _resolved(name, folder, manifest, expected, verified=True)


def resolve_model(name_or_path: str | os.PathLike[str], progress: ProgressCallback | None = None) -> ResolvedModel:
    """Find a model by registry name or folder, check it, and describe it for the predictor.

    A registered model (known, custom or bundled) is verified first: every file is re-hashed and compared with
    its install record (or SHA256SUMS), and any missing, changed or unrecorded file raises InputError naming it,
    so the predictor never loads weights that are not the ones installed. A path to an nnU-Net trainer folder (or
    a folder holding exactly one) that is not registered resolves too, unverified (``verified=False``).
    No Python file of the model folder is imported or run.
    """
    text = os.fspath(name_or_path)
    if _NAME.match(text) and (text in MANIFESTS or _read_record(text) is not None):
        return _resolve_registered(text, progress)
    candidate = Path(text).expanduser()
    if candidate.is_dir():
        registered = _registered_name_of(candidate)
        if registered is not None:
            return _resolve_registered(registered, progress)
        with open_source(candidate) as source:
            trainer = _choose_trainer(source, None)
        folder = (candidate / trainer).resolve()
        _check_trainer_folder(folder, None, folder.name)  # fail on a bad folder before hashing its checkpoints
        digests = _hash_files(folder, model_files(folder), progress)
        return _resolved(folder.name, folder, None, digests, verified=False)
    if _NAME.match(text):
        raise _unknown(text)
    raise InputError(candidate, "no such model folder")
