"""sha256 checksums of model files: hashing, SHA256SUMS files, the model fingerprint, and comparing against them.

Every installed file is hashed at install and re-hashed before the predictor may load it, so a corrupted or
tampered checkpoint is refused with the file's name. Hashing itself is :func:`..image_io.sha256_file`, the one
sha256 helper of the package.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..image_io import sha256_file
from .layout import model_files
from .manifests import ModelManifest
from .progress import ProgressCallback, byte_counter

#: Checksum list shipped with a bundled model, in ``sha256sum`` format (``<hex>  <relative path>``).
SUMS_NAME = "SHA256SUMS"

_SUMS_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


@dataclass(frozen=True)
class Mismatch:
    """One verification problem, naming the file."""

    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def hash_files(folder: Path, relative: Iterable[str], progress: ProgressCallback | None) -> dict[str, str]:
    """sha256 per relative path under ``folder``, reporting the bytes hashed so far as the "checksums" stage."""
    relative = list(relative)
    on_bytes = byte_counter(progress, "checksums", sum((folder / rel).stat().st_size for rel in relative))
    return {rel: sha256_file(folder / rel, on_bytes) for rel in relative}


def _sums_text(digests: Mapping[str, str]) -> str:
    """``sha256sum`` lines (``<sha256>  <path>``), sorted by path so that the text names the set of files."""
    return "".join(f"{digests[rel]}  {rel}\n" for rel in sorted(digests))


def fingerprint(digests: Mapping[str, str]) -> str:
    """One sha256 naming a whole model: the hash of its sorted ``<sha256>  <path>`` lines (as in SHA256SUMS).

    Recorded by the predictor in each output's sidecar, so a result can be traced to the exact weights.
    """
    return hashlib.sha256(_sums_text(digests).encode()).hexdigest()


def write_sha256sums(folder: str | os.PathLike[str]) -> Path:
    """Write ``SHA256SUMS`` for the model files of a trainer folder (used to ship the bundled demo model).

    The format is ``sha256sum``'s, so ``sha256sum -c SHA256SUMS`` checks it too.
    """
    root = Path(folder)
    sums = root / SUMS_NAME
    sums.write_text(_sums_text(hash_files(root, model_files(root), None)))
    return sums


def read_sha256sums(file: Path) -> dict[str, str]:
    """sha256 (lower case) per relative path from a ``sha256sum`` file; InputError naming a malformed line."""
    digests: dict[str, str] = {}
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        match = _SUMS_LINE.match(line)
        if match is None:
            raise InputError(file, f"line {number} is not '<sha256>  <file>'")
        digests[match.group(2)] = match.group(1).lower()
    return digests


def compare(folder: Path, expected: Mapping[str, str], progress: ProgressCallback | None) -> list[Mismatch]:
    """Re-hash a trainer folder: every expected file missing or changed, and every model file not expected."""
    present = [rel for rel in sorted(expected) if (folder / rel).is_file()]
    problems = [Mismatch(folder / rel, "missing") for rel in sorted(expected) if rel not in present]
    found = hash_files(folder, present, progress)
    for rel in present:
        if found[rel] != expected[rel].lower():
            problems.append(Mismatch(folder / rel, f"sha256 mismatch (expected {expected[rel]}, found {found[rel]})"))
    for rel in model_files(folder):
        if rel not in expected:
            problems.append(Mismatch(folder / rel, "not part of the installed model (no recorded checksum)"))
    return problems


def pin_problems(manifest: ModelManifest | None, sources: Sequence[Mapping[str, Any]]) -> list[str]:
    """Problems where a source archive's sha256 differs from the one pinned in the manifest (the pin wins).

    ``sources`` are install-record entries (``location`` and ``sha256`` of each archive or folder installed).
    """
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
