"""The model cache: where models live, their install records, what is installed, and verifying installed files.

Layout of the cache (``~/.spinal-lesion-seg/models``, or ``$SPINAL_LESION_SEG_HOME/models``)::

    models/<name>/install.json            the install record: sources, folds, sha256 of every installed file
    models/<name>/<trainer folder>/       a plain nnU-Net v2 trainer folder (usable by nnUNetv2_predict too)
    models/.downloads/<name>-<release>/   archives being downloaded (``*.part``), deleted after the install
    models/.tmp-*                         installs in progress (renamed into place only when complete; those of
                                          killed installs are deleted by the next install, see :mod:`.workspace`)

Models get there through :mod:`.installer`; :mod:`.resolve` hands them to the predictor. Manifests are read as
``manifests.MANIFESTS`` at call time, so that tests can replace them.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..defaults import PROG
from ..errors import InputError
from . import manifests
from .checksums import SUMS_NAME, Mismatch, compare, pin_problems, read_sha256sums
from .layout import load_json_object
from .manifests import ModelManifest
from .progress import ProgressCallback

HOME_ENV = "SPINAL_LESION_SEG_HOME"
DEFAULT_HOME = Path("~/.spinal-lesion-seg")
#: The install record inside ``models/<name>/``.
RECORD_NAME = "install.json"
#: Version of the install record's layout; a record of another version is refused rather than misread.
RECORD_FORMAT = 1

#: Model names: safe as folder names on every platform, and never a path.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ModelStatus:
    """One line of ``models list``."""

    name: str
    title: str
    kind: str  # "published", "bundled" or "custom"
    installed: bool
    folder: Path | None
    release: str | None
    #: Approximate download size in MB (``None`` when unknown, and for custom models).
    size_mb: float | None


@dataclass(frozen=True)
class Verification:
    """Outcome of :func:`verify`: a registered model's folder, what its files should hash to, and every problem."""

    folder: Path
    #: sha256 per relative path, from the install record or the bundled SHA256SUMS.
    expected: Mapping[str, str]
    manifest: ModelManifest | None
    problems: tuple[Mismatch, ...]
    #: The model's name, and where an installed model came from (install record ``sources``: paths or URLs).
    name: str = ""
    sources: tuple[str, ...] = ()

    @property
    def advice(self) -> str:
        """How to repair the model, fitting how it came: a custom model can only be reinstalled from the user's own
        folder or zip (the registry has nothing to download), a published one from its release, a bundled one
        with SpinalLesionSeg itself."""
        if self.manifest is not None and self.manifest.bundled:
            return "reinstall SpinalLesionSeg"
        if self.manifest is not None:
            return f"reinstall it with '{PROG} models install {self.name} --force'"
        froms = " ".join(f"--from {shlex.quote(source)}" for source in self.sources) or "--from FOLDER_OR_ZIP"
        return f"reinstall it from your folder or zip with '{PROG} models install {self.name} --force {froms}'"

    @property
    def files_checked(self) -> int:
        """How many files were re-hashed."""
        return len(self.expected)

    @property
    def ok(self) -> bool:
        """True when no file is missing, changed or unexpected and no archive pin is violated."""
        return not self.problems


# --------------------------------------------------------------------------------------------------------------
# Where things are


def home() -> Path:
    """The toolkit's data folder: ``$SPINAL_LESION_SEG_HOME`` when set, else ``~/.spinal-lesion-seg``."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def models_dir() -> Path:
    """The model cache, ``<home>/models``."""
    return home() / "models"


def check_name(name: str) -> None:
    """Refuse a model name that could not be a folder of the cache (or would be a path)."""
    if not NAME.match(name):
        raise InputError(None, f"invalid model name {name!r}: use letters, digits, '_', '-' or '.', starting with "
                               "a letter or digit (at most 64 characters)")


def read_record(name: str) -> dict[str, Any] | None:
    """The install record of ``name``, or None when it is not installed."""
    file = models_dir() / name / RECORD_NAME
    if not file.is_file():
        return None
    record = load_json_object(file)
    if record.get("format") != RECORD_FORMAT or not isinstance(record.get("files"), dict):
        raise InputError(file, "unknown install record format; remove and reinstall the model")
    return record


def require_record(name: str, manifest: ModelManifest | None) -> dict[str, Any]:
    """The install record of ``name``; InputError saying how to install it when there is none."""
    record = read_record(name)
    if record is None:
        raise not_installed(name) if manifest is not None else unknown(name)
    return record


def bundled_folder(manifest: ModelManifest) -> Path:
    """The trainer folder of a model shipped with the package; InputError when this installation lacks it."""
    folder = manifest.bundled_folder
    assert folder is not None
    if not (folder / "dataset.json").is_file():
        raise InputError(folder, f"the bundled '{manifest.name}' model is missing from this installation "
                                 "(a development checkout must build it first)")
    return folder


def installed_folder(name: str, record: Mapping[str, Any]) -> Path:
    """The trainer folder of an installed model, as its install record names it."""
    return models_dir() / name / str(record["trainer_folder"])


def unknown(name: str) -> InputError:
    """The error for a name that is neither a known model nor an installed custom one."""
    known = ", ".join(sorted({*manifests.MANIFESTS, *(status.name for status in list_models())}))
    return InputError(None, f"unknown model '{name}' (known: {known}); register an nnU-Net folder with "
                            f"'spinal-lesion-seg models install {name} --from FOLDER_OR_ZIP'")


def not_installed(name: str) -> InputError:
    """The error for a known model that is not installed yet, with the command that installs it."""
    return InputError(None, f"model '{name}' is not installed; run 'spinal-lesion-seg models install {name}'")


# --------------------------------------------------------------------------------------------------------------
# What is installed


def path(name: str) -> Path:
    """The trainer folder of an installed (or bundled) model; InputError when it is not there."""
    check_name(name)
    manifest = manifests.MANIFESTS.get(name)
    if manifest is not None and manifest.bundled:
        return bundled_folder(manifest)
    return installed_folder(name, require_record(name, manifest))


def is_installed(name: str) -> bool:
    """True when ``name`` is installed in the cache or is a bundled model present in this installation."""
    check_name(name)
    manifest = manifests.MANIFESTS.get(name)
    if manifest is not None and manifest.bundled_folder is not None:
        return (manifest.bundled_folder / "dataset.json").is_file()
    return read_record(name) is not None


def _known_status(name: str, manifest: ModelManifest) -> ModelStatus:
    """The ``models list`` line of a model that has a manifest."""
    if manifest.bundled:
        folder = manifest.bundled_folder
        installed = folder is not None and (folder / "dataset.json").is_file()
        kind = "bundled"
    else:
        record = read_record(name)
        installed = record is not None
        folder = installed_folder(name, record) if record is not None else None
        kind = "published"
    return ModelStatus(name, manifest.title, kind, installed, folder if installed else None, manifest.release,
                       manifest.size_mb)


def list_models() -> list[ModelStatus]:
    """Every known model (installed or not) followed by the custom models installed in the cache."""
    statuses = [_known_status(name, manifest) for name, manifest in manifests.MANIFESTS.items()]
    root = models_dir()
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        if entry.name in manifests.MANIFESTS or not NAME.match(entry.name):
            continue
        record = read_record(entry.name)
        if record is not None:
            sources = ", ".join(str(source["location"]) for source in record.get("sources", []))
            statuses.append(ModelStatus(entry.name, f"custom model from {sources}", "custom", True,
                                        installed_folder(entry.name, record), None, None))
    return statuses


def registered_name_of(folder: Path) -> str | None:
    """The registry name when ``folder`` is (or holds) the trainer folder of an installed or bundled model."""
    resolved = folder.resolve()
    for name, manifest in manifests.MANIFESTS.items():
        if manifest.bundled_folder is not None and resolved == manifest.bundled_folder.resolve():
            return name
    root = models_dir().resolve()
    if resolved.parent == root or resolved.parent.parent == root:
        name = resolved.name if resolved.parent == root else resolved.parent.name
        record = read_record(name) if NAME.match(name) else None
        if record is not None and resolved in (root / name, (root / name / str(record["trainer_folder"]))):
            return name
    return None


# --------------------------------------------------------------------------------------------------------------
# Verify


def verify(name: str, progress: ProgressCallback | None = None) -> Verification:
    """Re-hash every file of a registered model and report each file that is missing, changed or unexpected.

    Installed models are checked against their install record, the bundled demo against its SHA256SUMS; when the
    manifest pins an archive checksum, an install from a different archive is reported too (the pin wins).
    """
    check_name(name)
    manifest = manifests.MANIFESTS.get(name)
    if manifest is not None and manifest.bundled:
        folder = bundled_folder(manifest)
        sums = folder / SUMS_NAME
        if not sums.is_file():
            raise InputError(sums, f"missing: the bundled '{name}' model cannot be verified")
        expected, pins, sources = read_sha256sums(sums), [], ()
    else:
        record = require_record(name, manifest)
        folder, expected = installed_folder(name, record), dict(record["files"])
        pins = pin_problems(manifest, record.get("sources", []))
        sources = tuple(str(source.get("location")) for source in record.get("sources", [])
                        if isinstance(source, Mapping))
    problems = [Mismatch(folder, problem) for problem in pins] + compare(folder, expected, progress)
    return Verification(folder, expected, manifest, tuple(problems), name, sources)
