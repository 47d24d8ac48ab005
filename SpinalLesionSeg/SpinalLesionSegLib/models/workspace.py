"""Work folders inside the model cache (``models/.tmp-*``), and cleaning up those that dead installs left behind.

An install builds its model in ``.tmp-<name>-XXXX`` and renames it into place when complete; replacing or
removing a model passes the old one through ``.tmp-old-*`` or ``.tmp-removed-*``. A process killed meanwhile
(``kill -9``, a power cut, Slicer closed during a download) leaves its folder behind, hundreds of MB each, that
nothing would ever delete. So every work folder holds an owner file naming its process (pid and host), and each
install or removal first deletes the work folders whose owner process is gone; folders without a usable owner
(written by another host sharing the cache, by an older version, or on Windows, where a pid cannot be checked
safely) once older than :data:`STALE_AFTER_S`. A folder whose owner still runs is never touched, however old.
A dead ``.tmp-old-*`` still holding the only copy of a model (killed mid-replacement) is moved back into place.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from .. import safe_json
from ..errors import InputError

#: The owner file inside each work folder.
OWNER_NAME = ".owner.json"
#: Age (seconds since the folder last changed) after which a work folder without a checkable owner is stale.
STALE_AFTER_S = 24 * 3600


def make_work_folder(root: Path, prefix: str) -> Path:
    """A new empty work folder ``root/<prefix>XXXX`` holding only its owner file (this process)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    owner = {"pid": os.getpid(), "host": socket.gethostname(),
             "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    (folder / OWNER_NAME).write_text(json.dumps(owner) + "\n")
    return folder


def release(folder: Path) -> None:
    """Remove the owner file before ``folder`` is published as a model (a young owner-less folder is kept)."""
    (folder / OWNER_NAME).unlink(missing_ok=True)


def _owner_alive(folder: Path) -> bool | None:
    """Whether the process owning ``folder`` still runs; ``None`` when that cannot be told (no readable owner
    file, another host, not POSIX: ``os.kill(pid, 0)`` would terminate the process on Windows)."""
    try:
        owner = safe_json.load_file(folder / OWNER_NAME, max_bytes=4096)
    except InputError:
        return None
    pid = owner.get("pid") if isinstance(owner, dict) else None
    if os.name != "posix" or owner.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return None
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, under another user
        return True
    return True


def _is_stale(folder: Path, now: float) -> bool:
    """A dead owner's folder, or an owner-less one unchanged for :data:`STALE_AFTER_S`."""
    alive = _owner_alive(folder)
    if alive is not None:
        return not alive
    try:
        changed = max(entry.stat().st_mtime for entry in (folder, *folder.iterdir()))
    except OSError:
        return False
    return now - changed > STALE_AFTER_S


def _restore_orphan(folder: Path) -> None:
    """A dead replacement's ``.tmp-old-*`` holding a model that is no longer in place: move the model back."""
    models = [entry for entry in folder.iterdir() if entry.is_dir() and not entry.is_symlink()]
    if folder.name.startswith(".tmp-old-") and len(models) == 1 and not (folder.parent / models[0].name).exists():
        os.replace(models[0], folder.parent / models[0].name)


def clean_stale(root: Path) -> list[Path]:
    """Delete the stale work folders of ``root`` (see the module's description); return those deleted."""
    removed = []
    now = time.time()
    for folder in sorted(root.glob(".tmp-*")) if root.is_dir() else []:
        if folder.is_symlink() or not folder.is_dir() or not _is_stale(folder, now):
            continue
        try:
            _restore_orphan(folder)
        except OSError:
            continue  # keep it: it may hold the only copy of a model
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed
