"""Install and remove models: download or open the sources, merge them into one trainer folder, publish atomically.

Only what prediction needs is installed: ``dataset.json``, ``plans.json``, ``crop_metadata.json`` when the release
has one, and ``fold_N/checkpoint_final.pth`` / ``checkpoint_best.pth``. Everything else in an archive (training
logs, validation outputs, the ``trainer_class.py`` SCT executes) is left out: no code from a model archive is ever
imported or run. A model is built in a temporary folder inside the cache and renamed into place only when complete
and hashed, so a failure leaves nothing behind (and the folders of killed installs are cleaned by the next one,
see :mod:`.workspace`).

Nothing hostile gets in: archive sizes are checked before anything is unpacked (:func:`.archive.check_unpacked`),
dataset.json and plans.json values are checked (:mod:`.model_values`), and every checkpoint is loaded with the safe
loader (no code, only tensors) before the model is published, so a bad model is refused at install rather than at
its first prediction.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from .. import __version__, safe_json
from ..errors import InputError
from ..image_io import sha256_file
from . import manifests, registry
from .archive import (
    DEFAULT_MAX_UNPACKED_BYTES,
    ModelSource,
    check_unpacked,
    open_source,
)
from .checksums import fingerprint, hash_files, pin_problems
from .download import download
from .layout import (
    CHECKPOINT_NAMES,
    MODEL_JSON_FILES,
    Fold,
    check_trainer_folder,
    choose_trainer,
    fold_key,
    load_json_object,
    model_files,
)
from .manifests import ModelManifest
from .model_values import check_configuration
from .progress import ProgressCallback, byte_counter
from .safe_checkpoint import check_checkpoint
from .workspace import clean_stale, make_work_folder, release

#: What ``install`` takes as a source: one zip or folder, or several to merge.
Sources = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def install(name: str, source: Sources | None = None, progress: ProgressCallback | None = None, *,
            force: bool = False) -> Path:
    """Install model ``name`` and return its trainer folder.

    Without ``source``, a known model is downloaded from its release (resuming partial downloads). With
    ``source`` (a zip, an unzipped nnU-Net folder, or several of them to merge), it is installed offline; for a
    name no manifest knows this registers a custom model. The model is built in a temporary folder inside the
    cache and renamed into place only when complete and hashed, so a failure leaves nothing behind. An already
    installed model is returned as is unless ``force`` (then it is replaced, again atomically).
    """
    registry.check_name(name)
    manifest = manifests.MANIFESTS.get(name)
    sources = [] if source is None else [source] if isinstance(source, (str, os.PathLike)) else list(source)
    existing = _existing_install(name, manifest, bool(sources), force)
    if existing is not None:
        return existing
    root = registry.models_dir()
    root.mkdir(parents=True, exist_ok=True)
    clean_stale(root)
    downloads = None  # kept between attempts (to resume) until the install succeeds; offline installs have none
    if not sources:
        assert manifest is not None  # _existing_install refused an unknown name without sources
        downloads = root / ".downloads" / f"{name}-{manifest.release}"
    build = make_work_folder(root, f".tmp-{name}-")
    try:
        located = _locate_sources(manifest, sources, downloads, progress)
        trainer_name = _build(name, manifest, located, build, downloads, progress)
        release(build)
        _publish(build, root / name)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    if downloads is not None:
        shutil.rmtree(downloads, ignore_errors=True)
    return root / name / trainer_name


def _existing_install(name: str, manifest: ModelManifest | None, offline: bool, force: bool) -> Path | None:
    """The trainer folder to return without installing anything (bundled, or installed and not ``force``)."""
    if manifest is not None and manifest.bundled:
        if offline:
            raise InputError(None, f"'{name}' is bundled with SpinalLesionSeg; install your model under another "
                                   "name")
        return registry.bundled_folder(manifest)
    if manifest is None and not offline:
        raise registry.unknown(name)
    record = registry.read_record(name)
    return registry.installed_folder(name, record) if record is not None and not force else None


def _locate_sources(manifest: ModelManifest | None, sources: Sequence[str | os.PathLike[str]],
                    downloads: Path | None, progress: ProgressCallback | None) -> list[dict[str, Any]]:
    """Each source as ``path`` on disk plus its install-record entry (``kind``, ``location``, ``sha256``).

    Offline sources are the given zips or folders; otherwise the release archives are downloaded into
    ``downloads`` first and recorded by URL.
    """
    if downloads is None:
        paths = [Path(location).expanduser().resolve() for location in sources]
        origins = [str(path) for path in paths]
    else:
        assert manifest is not None
        paths = [download(archive.url, downloads / archive.filename, progress, manifest.max_download_bytes)
                 for archive in manifest.archives]
        origins = [archive.url for archive in manifest.archives]
    located = []
    for path, origin in zip(paths, origins):
        digest = sha256_file(path) if path.is_file() else None
        kind = "url" if downloads is not None else "zip" if digest is not None else "folder"
        located.append({"path": path, "kind": kind, "location": origin, "sha256": digest})
    return located


def _build(name: str, manifest: ModelManifest | None, located: Sequence[Mapping[str, Any]], build: Path,
           downloads: Path | None, progress: ProgressCallback | None) -> str:
    """Check the sources' pins, merge them into ``build``, check and hash the result and write its install record;
    return the trainer folder's name."""
    source_records = [{key: value for key, value in entry.items() if key != "path"} for entry in located]
    problems = pin_problems(manifest, source_records)
    if problems:
        if downloads is not None:
            shutil.rmtree(downloads, ignore_errors=True)  # a wrong download must not be resumed
        raise InputError(None, f"model '{name}': {problems[0]}")
    opened = [open_source(entry["path"]) for entry in located]
    try:
        trainer_name = _merge(name, opened, manifest, build, progress)
    finally:
        for handle in opened:
            handle.close()
    folder = build / trainer_name
    checkpoints = check_trainer_folder(folder, manifest, name)
    _check_checkpoints(folder)
    digests = hash_files(folder, model_files(folder), progress)
    record = _record(name, manifest, trainer_name, checkpoints, source_records, digests)
    (build / registry.RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
    return trainer_name


def _record(name: str, manifest: ModelManifest | None, trainer_name: str, checkpoints: Mapping[Fold, Path],
            sources: list[dict[str, Any]], digests: Mapping[str, str]) -> dict[str, Any]:
    """The install record: where the model came from and the sha256 of every installed file."""
    return {
        "format": registry.RECORD_FORMAT,
        "name": name,
        "custom": manifest is None,
        "release": manifest.release if manifest is not None else None,
        "trainer_folder": trainer_name,
        "folds": list(checkpoints),
        "installed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "software_version": __version__,
        "sources": sources,
        "files": dict(digests),
        "fingerprint": fingerprint(digests),
    }


def _members_to_install(source: ModelSource, trainer: PurePosixPath) -> dict[PurePosixPath, str]:
    """Source member -> path inside the installed trainer folder, for the files prediction needs only."""
    wanted: dict[PurePosixPath, str] = {}
    for member in source.files:
        if member.parent == trainer and member.name in MODEL_JSON_FILES:
            wanted[member] = member.name
        elif member.name == "crop_metadata.json" and (member.parent in trainer.parents):
            # SCT's cropped retrain keeps crop_metadata.json at the zip root, beside the trainer folder.
            wanted.setdefault(member, member.name)
        elif (member.parent.parent == trainer and fold_key(member.parent.name) is not None
              and member.name in CHECKPOINT_NAMES):
            wanted[member] = f"{member.parent.name}/{member.name}"
    return wanted


def _merge(name: str, sources: Sequence[ModelSource], manifest: ModelManifest | None, build: Path,
           progress: ProgressCallback | None) -> str:
    """Copy the model files of every source into one trainer folder under ``build``; return its name.

    Several sources are merged (SCT's releases ship one zip per fold): JSON files must agree between sources,
    and a checkpoint may come from one source only. Sizes are checked before anything is unpacked: the
    manifest's limit for a known model, :data:`.archive.DEFAULT_MAX_UNPACKED_BYTES` otherwise, and free space.
    """
    plans = [(source, _members_to_install(source, trainer), trainer)
             for source in sources for trainer in [choose_trainer(source, manifest)]]
    first_source, _, first_trainer = plans[0]
    if manifest is not None and manifest.trainer_folder:
        trainer_name = manifest.trainer_folder
    else:
        trainer_name = first_trainer.name or first_source.location.stem
    destination = build / trainer_name
    limit = manifest.max_unpacked_bytes if manifest is not None and manifest.max_unpacked_bytes else \
        DEFAULT_MAX_UNPACKED_BYTES
    total = check_unpacked(((source, member) for source, wanted, _ in plans for member in wanted), limit,
                           f"model '{name}'")
    _check_free_space(build, total)
    advance = byte_counter(progress, "installing", total)
    origin: dict[str, Path] = {}
    for source, wanted, _ in plans:
        for member, rel in sorted(wanted.items()):
            if rel in origin:
                _check_same_json(source, member, rel, destination / rel, origin[rel])
                advance(source.files[member])
            else:
                source.copy(member, destination / rel, advance)
                origin[rel] = source.location
    return trainer_name


def _check_free_space(build: Path, needed: int) -> None:
    """Refuse an install that would fill the disk, before unpacking anything."""
    free = shutil.disk_usage(build).free
    if needed > free:
        raise InputError(build.parent, f"not enough free disk space for this model ({needed / 1e6:.0f} MB needed, "
                                       f"{free / 1e6:.0f} MB free)")


def _check_checkpoints(folder: Path) -> None:
    """Load every installed checkpoint with the safe loader, so that one holding code or no weights is refused at
    install rather than at the first prediction, and check that plans.json has the configuration each one was
    trained with. Imports torch (only installs pay for it; resolving a model does not)."""
    plans = load_json_object(folder / "plans.json")
    for rel in model_files(folder):
        if "/" in rel:
            check_configuration(plans, check_checkpoint(folder / rel), folder / "plans.json")


def _check_same_json(source: ModelSource, member: PurePosixPath, rel: str, copied: Path, copied_from: Path) -> None:
    """``member`` goes to ``rel``, already ``copied`` from another source: only JSON files may repeat, and then
    they must agree."""
    if rel not in MODEL_JSON_FILES:
        raise InputError(source.location, f"{rel} is also in {copied_from}: cannot merge")
    try:
        theirs = safe_json.load_file(copied)
    except InputError as error:
        raise InputError(copied_from, f"{rel}: {error.problem}") from None
    try:
        ours = safe_json.loads(source.read(member))
    except InputError as error:
        raise InputError(source.location, f"{member}: {error.problem}") from None
    if ours != theirs:
        raise InputError(source.location, f"{member} differs from {rel} in {copied_from}: these archives are not "
                                          "parts of one model")


def _publish(build: Path, target: Path) -> None:
    """Rename the finished build into place, replacing an older install only once the new one is complete."""
    old = None
    if target.exists():
        old = make_work_folder(target.parent, f".tmp-old-{target.name}-")
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
    registry.check_name(name)
    manifest = manifests.MANIFESTS.get(name)
    if manifest is not None and manifest.bundled:
        raise InputError(None, f"'{name}' is bundled with SpinalLesionSeg and cannot be removed")
    registry.require_record(name, manifest)
    target = registry.models_dir() / name
    clean_stale(target.parent)
    # Rename first so that the model disappears at once, even if deleting its files takes a while or fails.
    trash = make_work_folder(target.parent, f".tmp-removed-{name}-")
    os.replace(target, trash / name)
    shutil.rmtree(trash, ignore_errors=True)
    for partial in (registry.models_dir() / ".downloads").glob(f"{name}-*"):
        shutil.rmtree(partial, ignore_errors=True)
    return target
