"""Atomic result sets: a case's files are published together, so a kill at any instant leaves the old complete set
or the new complete set, never a new mask beside an old soft map and sidecar.

A set is the files one case writes plus its *manifest* (the prediction sidecar, a report's summary.json), which
records the sha256 of each file and is written last: a set exists exactly when its manifest does, and then every
file it lists matches.

Publishing, in four steps:

1. **Stage.** Every file is written under a hidden temporary name beside its final name (the writer's pid in it,
   :func:`..image_io.temporary_beside`); nothing under a final name changes. A kill here leaves the old set.
2. **Journal.** The list of renames is written to a hidden journal, ``.<manifest>.publish``, created exclusively:
   it is also the lock that keeps two concurrent runs from interleaving their renames.
3. **Swap.** The old manifest is removed first (so a reader that ignores journals sees no set rather than a mixed
   one), files the new set no longer has are removed, the staged files are renamed onto their names, the manifest last.
4. **Done.** The journal is removed.

A run killed between 2 and 4 leaves its journal; the next run, or any reader calling :func:`recover`, rolls it
forward (the renames are idempotent), giving the new complete set. Journals of live publishers are waited for.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import SimpleITK as sitk

from . import safe_json
from .errors import InputError
from .image_io import (
    move_into_place,
    remove_stale_temporaries,
    sha256_file,
    split_image_suffix,
    temporary_beside,
    writer_alive,
)
from .outputs import check_not_corrected

#: How long (s) a publisher waits for a concurrent one's swap (renames only: milliseconds) before giving up.
PUBLISH_WAIT_S = 120.0
_POLL_S = 0.02
#: An unreadable journal younger than this (s) is one being written, not a broken one.
YOUNG_JOURNAL_S = 10.0


def journal_path(manifest: Path) -> Path:
    """The hidden journal (and lock) of the set whose manifest is ``manifest``."""
    return manifest.with_name(f".{manifest.name}.publish")


class ResultSet:
    """Stage a case's files, then publish them with their manifest in one step (see the module docstring).

    ``roles`` maps every role the case may write (``"sidecar"`` excluded) to its final path: staged roles replace
    their files, the others are removed at publication, so a set never keeps a file of an older, different run.
    Used as a context manager, staged temporaries are removed when the block fails. Unless ``overwrite``, the
    publication is refused when a file of the old set was edited meanwhile (a person corrected a mask while the
    new result was being computed): the check is repeated under the journal's lock, just before the swap."""

    def __init__(self, manifest: Path, roles: Mapping[str, Path], *, overwrite: bool = False) -> None:
        self.manifest = Path(manifest)
        self.roles = {role: Path(path) for role, path in roles.items()}
        self.overwrite = overwrite
        self.staged: dict[str, Path] = {}

    def __enter__(self) -> ResultSet:
        recover(self.manifest)
        for path in (*self.roles.values(), self.manifest, journal_path(self.manifest)):  # the journal's draft too
            remove_stale_temporaries(path)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for temporary in self.staged.values():
            temporary.unlink(missing_ok=True)

    def stage_image(self, role: str, image: sitk.Image) -> None:
        """Write ``image`` (compressed) under a temporary name for ``role``'s file."""
        tmp = temporary_beside(self.roles[role], suffix=".partial" + split_image_suffix(self.roles[role])[1])
        self.staged[role] = tmp
        sitk.WriteImage(image, str(tmp), useCompression=True)

    def stage_text(self, role: str, text: str) -> None:
        """Write ``text`` (UTF-8: CSV, JSON) under a temporary name for ``role``'s file."""
        self.stage_bytes(role, text.encode("utf-8"))

    def stage_bytes(self, role: str, data: bytes) -> None:
        """Write ``data`` (a PNG figure, a text file's bytes) under a temporary name for ``role``'s file."""
        tmp = temporary_beside(self.roles[role])
        self.staged[role] = tmp
        tmp.write_bytes(data)

    def sha256(self) -> dict[str, str]:
        """The sha256 of each staged file by role: what the manifest records."""
        return {role: sha256_file(path) for role, path in self.staged.items()}

    def publish(self, manifest_text: str) -> dict[str, Path]:
        """Publish the staged files and ``manifest_text`` as the manifest; return the final paths by role."""
        tmp = temporary_beside(self.manifest)
        self.staged["sidecar"] = tmp
        tmp.write_text(manifest_text, encoding="utf-8")
        moves = [(self.staged[r], self.roles[r]) for r in self.staged if r != "sidecar"] + [(tmp, self.manifest)]
        obsolete = [path for role, path in self.roles.items() if role not in self.staged]
        journal = _take_journal(self.manifest, moves, obsolete)
        try:
            check_not_corrected(self.roles, self.manifest, self.overwrite)
            _swap(self.manifest, moves, obsolete)
        finally:  # a refusal or a failed rename must not leave a journal that blocks the case
            journal.unlink(missing_ok=True)
        published = {role: self.roles.get(role, self.manifest) for role in self.staged}
        self.staged.clear()
        return published


def recover(manifest: Path) -> bool:
    """Roll forward the publication of ``manifest``'s set that a killed run left half done (its journal remains and
    its writer is dead); True when there was one. A live publisher's journal is left alone."""
    manifest = Path(manifest)
    journal = journal_path(manifest)
    try:
        record = _read_journal(journal)
    except InputError:
        if _age_s(journal) < YOUNG_JOURNAL_S:  # being written by an exclusive create: its writer lives
            return False
        raise
    if record is None or writer_alive(record["pid"], journal):
        return False
    folder = manifest.parent
    _swap(manifest, [(folder / a, folder / b) for a, b in record["moves"]], [folder / n for n in record["remove"]])
    journal.unlink(missing_ok=True)
    return True


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _swap(manifest: Path, moves: list[tuple[Path, Path]], obsolete: list[Path]) -> None:
    """Step 3: old manifest out, obsolete files out, staged files in, the new manifest (the last move) last.
    Idempotent, for recovery: a move whose temporary is gone was done already, and once the new manifest is in
    place the swap is complete and nothing is touched."""
    if not moves or not moves[-1][0].exists():
        return
    manifest.unlink(missing_ok=True)
    for path in obsolete:
        path.unlink(missing_ok=True)
    for temporary, final in moves:
        if temporary.exists():
            move_into_place(temporary, final)


def _take_journal(manifest: Path, moves: list[tuple[Path, Path]], obsolete: list[Path]) -> Path:
    """Create the journal exclusively (a hard link of a complete temporary: it never exists half written), waiting
    while a live publisher holds it and rolling forward a dead one's."""
    journal = journal_path(manifest)
    record = {"pid": os.getpid(), "moves": [[a.name, b.name] for a, b in moves], "remove": [p.name for p in obsolete]}
    draft = temporary_beside(journal)
    try:
        draft.write_text(json.dumps(record), encoding="utf-8")
        deadline = time.monotonic() + PUBLISH_WAIT_S
        while True:
            try:
                _create_exclusively(draft, journal)
                return journal
            except FileExistsError:
                if not recover(manifest) and time.monotonic() > deadline:
                    raise InputError(journal, "another run has been publishing this case's results for "
                                              f"{PUBLISH_WAIT_S:.0f} s; is it stuck? Remove the file if not") from None
                time.sleep(_POLL_S)
    finally:
        draft.unlink(missing_ok=True)


def _create_exclusively(draft: Path, journal: Path) -> None:
    """Make ``journal`` a copy of ``draft``, failing with FileExistsError when it exists: a hard link (never seen
    half written), or on file systems without hard links (FAT, some network and FUSE mounts) an exclusive create."""
    try:
        os.link(draft, journal)
    except FileExistsError:
        raise
    except OSError:
        fd = os.open(journal, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(draft.read_bytes())


def _read_journal(journal: Path) -> dict[str, Any] | None:
    """The journal's record, or None when there is none (or it vanished as we looked: its publisher finished).
    Its names must be plain file names in the set's folder, each move a hidden temporary of the file it becomes:
    a planted journal cannot move or delete anything elsewhere."""
    if not journal.exists():
        return None
    try:
        record = safe_json.load_file(journal, max_bytes=64 * 1024)
    except InputError:
        if not journal.exists():
            return None
        raise
    names = [*(n for pair in record.get("moves", []) for n in pair), *record.get("remove", [])] \
        if isinstance(record, dict) and _well_formed(record) else None
    if names is None or any(not _plain_name(n) for n in names) \
            or any(not a.startswith(f".{b}.") or ".partial" not in a for a, b in record["moves"]):
        raise InputError(journal, "is not a valid publication journal; remove it")
    return record


def _well_formed(record: dict[str, Any]) -> bool:
    moves, remove = record.get("moves"), record.get("remove")
    return (isinstance(record.get("pid"), int) and isinstance(moves, list) and isinstance(remove, list)
            and all(isinstance(m, list) and len(m) == 2 and all(isinstance(n, str) for n in m) for m in moves)
            and all(isinstance(n, str) for n in remove))


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name
