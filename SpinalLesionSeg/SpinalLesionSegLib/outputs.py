"""Where results go, checked before any work, and the rule that never loses a person's corrections.

* **Output location first.** Every command that writes checks its output folder before reading models or images:
  it creates the folder and writes (then removes) a hidden probe file there, because permission bits say nothing for
  root or for network shares. A path that is an existing file, or a folder we cannot write, is refused in one line
  within a second, not after minutes of prediction.
* **Never overwrite a correction.** The sidecar records the sha256 of every file a prediction wrote. A re-run may
  replace our own untouched outputs; an output whose content differs from what we wrote (someone corrected the
  mask), or that the sidecar does not vouch for, is refused in one line naming the file, unless the user asks to
  overwrite. Outputs without any sidecar are a killed run's leftovers (the sidecar is written last): replaced.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import InputError
from .image_io import input_stem, sha256_file

#: The sidecar key holding ``{role: sha256}`` of the files a prediction wrote.
WRITTEN_SHA256 = "written_sha256"


def writable_folder(path: str | os.PathLike[str]) -> Path:
    """The folder ``path``, created if needed, after proving a file can be written there; InputError otherwise."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputError(folder, "is a file, not a folder: choose another output folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise InputError(folder, f"cannot write here ({error.strerror or error})") from None
    return folder


def writable_file(path: str | os.PathLike[str]) -> Path:
    """``path`` for a file we will write: its folder writable (:func:`writable_folder`) and not a folder itself."""
    target = Path(path)
    if target.is_dir():
        raise InputError(target, "is a folder, not a file name")
    writable_folder(target.parent if str(target.parent) else ".")
    return target


def check_not_corrected(outputs: Mapping[str, Path], sidecar: Path, overwrite: bool) -> None:
    """Refuse (InputError naming the file) to replace an existing output that is not exactly what the last run
    wrote, as its sidecar records it: a person's corrected mask, or a file the sidecar does not vouch for.
    Without a sidecar the outputs are the leftovers of a run killed before it finished (the sidecar is written
    last) and are replaced. ``overwrite`` lifts the rule."""
    existing = {role: path for role, path in outputs.items() if role != "sidecar" and Path(path).exists()}
    if overwrite or not existing or not Path(sidecar).exists():
        return
    recorded = _recorded_sha256(sidecar)
    for role, path in existing.items():
        if recorded.get(role) != sha256_file(path):
            why = "differs from what spinal-lesion-seg wrote (corrected?)" if role in recorded else \
                f"is not vouched for by {Path(sidecar).name}"
            raise InputError(path, f"exists and {why}; it is kept: use --overwrite to replace it, or another "
                                   "output folder")


def _recorded_sha256(sidecar: Path) -> dict[str, str]:
    """The ``{role: sha256}`` the sidecar records; empty when there is no readable sidecar."""
    try:
        record = json.loads(sidecar.read_text()).get(WRITTEN_SHA256, {})
    except (OSError, ValueError, AttributeError, RecursionError):
        return {}
    return {str(k): str(v) for k, v in record.items()} if isinstance(record, dict) else {}


def check_distinct_names(inputs: list[str] | list[Path], series_uids: Sequence[str] = ()) -> None:
    """Outputs are named after input file names (a DICOM folder: its series' name): two inputs with the same name
    (from different folders) in one call would overwrite each other's results, so they are refused up front, naming
    both."""
    seen: dict[str, Path] = {}
    for path in map(Path, inputs):
        stem = input_stem(path, series_uids)
        if stem in seen and seen[stem] != path:
            raise InputError(path, f"has the same name as {seen[stem]}: their outputs would overwrite each other; "
                                   "run them in separate calls or rename one")
        seen[stem] = path
