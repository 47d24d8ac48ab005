"""Read model archives (zip files) and unzipped model folders safely, as one list of regular files.

A model archive comes from the internet or a USB stick, so nothing in it is trusted: a member named
``../../.bashrc`` or ``/etc/x``, a symbolic link that later redirects a write, a device file or an encrypted
member is refused, and the whole archive with it, before anything is written. Files are then copied one by one
to paths we compute (never ``ZipFile.extractall``), and a folder source is read the same way, links refused too.
Nothing read here is ever imported or executed.

Sizes are checked before anything is unpacked (:func:`check_unpacked`): a member that would unpack to more than
:data:`MAX_RATIO` times its packed size (weights barely compress, zip bombs compress a thousandfold) is refused, and
so is a model whose files would unpack to more than its manifest's size allows, or than
:data:`DEFAULT_MAX_UNPACKED_BYTES` for a model of unknown size. Copies stop at the size the archive declared.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ..errors import InputError

#: Largest total size the installed files of a model may unpack to when its manifest gives no size (custom models):
#: 8 GiB, several times the largest published model (lesion_ms: about 0.8 GB).
DEFAULT_MAX_UNPACKED_BYTES = 8 * 1024 ** 3
#: Largest unpacked / packed size ratio of one member; trained weights compress by a few percent only.
MAX_RATIO = 100
#: Members smaller than this are exempt from the ratio check (a small JSON file may compress well).
RATIO_EXEMPT_BYTES = 1 << 20
#: Archive clutter that is skipped rather than refused (macOS resource forks, Finder files).
_IGNORED_PARTS = {"__MACOSX", ".DS_Store"}
_DRIVE = re.compile(r"^[A-Za-z]:")


class ModelSource:
    """The regular files of a zip archive or a folder, by relative POSIX path, after every safety check."""

    def __init__(self, location: Path, files: dict[PurePosixPath, int], opener: Callable[[PurePosixPath], BinaryIO],
                 closer: Callable[[], None] = lambda: None, packed: dict[PurePosixPath, int] | None = None) -> None:
        self.location = location
        #: relative path -> size in bytes (unpacked, as the zip's central directory declares it)
        self.files = files
        #: relative path -> size in bytes inside the archive (the same as ``files`` for a folder)
        self.packed = files if packed is None else packed
        self._open = opener
        self._close = closer

    def copy(self, member: PurePosixPath, target: Path, chunk_done: Callable[[int], None] | None = None) -> None:
        """Copy one member to ``target`` (parents created), calling ``chunk_done(n)`` as bytes are written.

        The copy stops with InputError once it exceeds the member's declared size, so the sizes checked by
        :func:`check_unpacked` bound what is written even when a crafted archive lies about them.
        """
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        try:
            with self._open(member) as src, target.open("xb") as dst:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > self.files[member]:
                        raise InputError(self.location, f"member {member} is larger than the archive declares")
                    dst.write(chunk)
                    if chunk_done:
                        chunk_done(len(chunk))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
            raise InputError(self.location, f"corrupt member {member} ({error})") from None

    def read(self, member: PurePosixPath) -> bytes:
        """The whole content of a small member (the JSON files)."""
        try:
            with self._open(member) as src:
                return src.read()
        except (zipfile.BadZipFile, EOFError) as error:
            raise InputError(self.location, f"corrupt member {member} ({error})") from None

    def close(self) -> None:
        self._close()

    def __enter__(self) -> ModelSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(location: str | os.PathLike[str]) -> ModelSource:
    """Open a zip file or a folder as a :class:`ModelSource`; InputError for anything unsafe or unreadable."""
    path = Path(location).expanduser()
    if path.is_dir():
        return _open_folder(path)
    if not path.is_file():
        raise InputError(path, "no such file or folder")
    return _open_zip(path)


def _safe_member_path(raw: str) -> PurePosixPath | None:
    """The relative path of an archive member, ``None`` for clutter; raises ValueError when the name is unsafe."""
    if raw.startswith(("/", "\\")) or _DRIVE.match(raw):
        raise ValueError("absolute path")
    parts = [part for part in re.split(r"[/\\]", raw) if part not in ("", ".")]
    if ".." in parts:
        raise ValueError("path goes outside the archive ('..')")
    if not parts or _IGNORED_PARTS.intersection(parts):
        return None
    return PurePosixPath(*parts)


def _open_zip(path: Path) -> ModelSource:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise InputError(path, f"not a readable zip archive ({error})") from None
    files: dict[PurePosixPath, int] = {}
    names: dict[PurePosixPath, zipfile.ZipInfo] = {}
    try:
        for info in archive.infolist():
            try:
                member = _safe_member_path(info.filename)
            except ValueError as why:
                raise InputError(path, f"refusing unsafe archive member {info.filename!r}: {why}") from None
            mode = info.external_attr >> 16
            file_type = stat.S_IFMT(mode)
            if stat.S_ISLNK(mode):
                raise InputError(path, f"refusing archive member {info.filename!r}: symbolic link")
            if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise InputError(path, f"refusing archive member {info.filename!r}: special file (not a regular "
                                       "file or folder)")
            if info.flag_bits & 0x1:
                raise InputError(path, f"refusing archive member {info.filename!r}: encrypted")
            if member is None or info.is_dir():
                continue
            if member in files:
                raise InputError(path, f"refusing archive: member {member} appears twice")
            files[member] = info.file_size
            names[member] = info
    except InputError:
        archive.close()
        raise
    packed = {member: info.compress_size for member, info in names.items()}
    return ModelSource(path, files, lambda member: archive.open(names[member]), archive.close, packed)


def check_unpacked(members: Iterable[tuple[ModelSource, PurePosixPath]], limit: int, what: str) -> int:
    """Refuse, before anything is unpacked, a zip bomb member and a total size over ``limit`` bytes; return the
    total. ``what`` names the model in the message ("model 'lesion_ms'")."""
    total = 0
    for source, member in members:
        size, packed = source.files[member], source.packed[member]
        if size > RATIO_EXEMPT_BYTES and size > MAX_RATIO * packed:
            raise InputError(source.location, f"refusing archive member {member}: it would unpack to {size} bytes "
                                              f"from {packed} ({size // max(packed, 1)}:1, more than {MAX_RATIO}:1; "
                                              "a zip bomb?)")
        total += size
    if total > limit:
        raise InputError(None, f"refusing {what}: its files would unpack to {total / 1e6:.0f} MB, more than the "
                               f"{limit / 1e6:.0f} MB allowed for it; nothing was unpacked")
    return total


def _open_folder(root: Path) -> ModelSource:
    files: dict[PurePosixPath, int] = {}
    for folder, subfolders, filenames in os.walk(root):
        here = Path(folder)
        for name in [*subfolders, *filenames]:
            entry = here / name
            if name in _IGNORED_PARTS:
                continue
            info = entry.lstat()
            if stat.S_ISLNK(info.st_mode):
                raise InputError(entry, "refusing a symbolic link inside a model folder; copy the real file there")
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                raise InputError(entry, "refusing a special file (not a regular file or folder) in a model folder")
            if stat.S_ISREG(info.st_mode):
                files[PurePosixPath(entry.relative_to(root).as_posix())] = info.st_size
        subfolders[:] = [name for name in subfolders if name not in _IGNORED_PARTS]
    return ModelSource(root, files, lambda member: (root / member).open("rb"))
