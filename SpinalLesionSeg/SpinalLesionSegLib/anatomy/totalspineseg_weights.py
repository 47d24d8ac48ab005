"""Install TotalSpineSeg's weights offline: ``spinal-lesion-seg models install totalspineseg --from ZIP --from ZIP``.

TotalSpineSeg downloads its two release zips from GitHub on its first run (``init_inference.py`` ->
``utils/install_weights.py``: ``urlretrieve`` into ``<data>/nnUNet/exports``, then ``ZipFile.extractall`` into
``<data>/nnUNet/results/<release>``). Where GitHub cannot be reached (hospital networks), the zips are carried in and
installed here, into the same place, so the tool finds them and never tries to download:

* each ``--from`` zip must be one the installed TotalSpineSeg expects (its file name, from the tool's metadata:
  ``Dataset101_TotalSpineSeg_step1_<release>.zip`` and ``Dataset102_TotalSpineSeg_step2_<release>.zip``);
* its sha256 is computed and, when a ``SHA256SUMS`` file (``sha256sum`` format) lies beside it, must match the
  line for its name: a mismatch is refused before anything is unpacked (GitHub shows each release asset's sha256);
* it is opened with the model installer's safe reader (:mod:`..models.archive`: no ``..`` paths, links, special
  files or zip bombs; sizes checked before unpacking), must hold ``<dataset>/<trainer>/fold_0/checkpoint_*.pth``
  with its ``plans.json`` and ``dataset.json``, and is unpacked into a work folder renamed into place when complete
  (a failure leaves nothing behind);
* what was installed (zip, sha256, file count) is recorded in ``<results>/<release>/spinal-lesion-seg-install.json``.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from .. import safe_json
from ..errors import InputError
from ..image_io import sha256_file
from ..models.archive import DEFAULT_MAX_UNPACKED_BYTES, ModelSource, check_unpacked, open_source
from ..models.checksums import SUMS_NAME, read_sha256sums
from ..models.progress import ProgressCallback, byte_counter
from ..models.workspace import clean_stale, make_work_folder, release
from .totalspineseg_tool import Tool, missing_weights, weight_zips

RECORD_NAME = "spinal-lesion-seg-install.json"
_CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_best.pth")


def install_weights(tool: Tool, sources: Sequence[str | os.PathLike[str]], data_dir: Path, *,
                    force: bool = False, progress: ProgressCallback | None = None) -> list[Path]:
    """Install the release zips ``sources`` for ``tool`` into ``data_dir``; return the dataset folders installed
    (or already there). InputError for a zip the tool does not expect, a checksum mismatch, an unsafe or
    incomplete archive."""
    expected = {zip_name: dataset for dataset, (zip_name, _) in weight_zips(tool).items()}
    if not expected:
        raise InputError(None, f"TotalSpineSeg {tool.version} names no weights release in its metadata")
    target = data_dir / "nnUNet" / "results" / tool.release
    target.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    installed = []
    for source in sources:
        path = Path(source).expanduser()
        dataset = expected.get(path.name)
        if dataset is None:
            raise InputError(path, f"is not a weights zip of TotalSpineSeg {tool.version}: expected "
                                   f"{' or '.join(sorted(expected))}")
        installed.append(_install_one(path, dataset, target, force, progress))
    return installed


def _install_one(path: Path, dataset: str, target: Path, force: bool, progress: ProgressCallback | None) -> Path:
    """Verify one zip and unpack its dataset folder into ``target`` (atomically; kept unless ``force``)."""
    final = target / dataset
    if final.is_dir() and not force:
        return final
    digest = _checked_sha256(path)
    with open_source(path) as source:
        members = _dataset_members(source, dataset)
        total = check_unpacked(((source, member) for member in members), DEFAULT_MAX_UNPACKED_BYTES,
                               f"TotalSpineSeg weights {path.name}")
        work = make_work_folder(target, f".tmp-{dataset}-")
        try:
            advance = byte_counter(progress, f"installing {path.name}", total)
            for member in members:
                source.copy(member, work / member, advance)
            release(work)
            _replace(work / dataset, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    _record(target, dataset, path, digest, len(members))
    return final


def _checked_sha256(path: Path) -> str:
    """The zip's sha256, refused when a ``SHA256SUMS`` beside it lists another one for its name."""
    if not path.is_file():
        raise InputError(path, "no such file")
    digest = sha256_file(path)
    sums = path.parent / SUMS_NAME
    if sums.is_file():
        pinned = read_sha256sums(sums).get(path.name)
        if pinned is not None and pinned != digest:
            raise InputError(path, f"sha256 mismatch: {SUMS_NAME} says {pinned}, the file has {digest}; it is "
                                   "damaged or not the release file")
    return digest


def _dataset_members(source: ModelSource, dataset: str) -> list[PurePosixPath]:
    """The members under ``<dataset>/``, checked to hold a fold-0 checkpoint with its plans and dataset files."""
    members = sorted(member for member in source.files if member.parts[0] == dataset)
    checkpoints = [m for m in members if m.name in _CHECKPOINTS and m.parent.name == "fold_0" and len(m.parts) == 4]
    if not checkpoints:
        raise InputError(source.location, f"holds no {dataset}/<trainer>/fold_0/checkpoint_final.pth (or "
                                          "checkpoint_best.pth): not TotalSpineSeg's weights zip")
    trainer = checkpoints[0].parent.parent
    for name in ("plans.json", "dataset.json"):
        if trainer / name not in source.files:
            raise InputError(source.location, f"lacks {trainer / name}: an incomplete weights zip")
    return members


def _replace(built: Path, final: Path) -> None:
    """Rename ``built`` onto ``final``, the old folder (``force``) moved aside first and deleted after."""
    old = final.with_name(f".tmp-old-{final.name}")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.rename(built, final)
    shutil.rmtree(old, ignore_errors=True)


def _record(target: Path, dataset: str, zip_path: Path, digest: str, count: int) -> None:
    """Add this dataset's entry to the install record of the release folder."""
    record_path = target / RECORD_NAME
    try:
        record = safe_json.load_file(record_path) if record_path.is_file() else {}
    except InputError:
        record = {}
    record = record if isinstance(record, dict) else {}
    record[dataset] = {"zip": str(zip_path.resolve()), "sha256": digest, "files": count,
                       "installed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    record_path.write_text(json.dumps(record, indent=2) + "\n")


def install_summary(tool: Tool, data_dir: Path) -> str:
    """One line: where the weights are and whether TotalSpineSeg now finds every dataset it needs."""
    missing = missing_weights(tool, data_dir)
    state = "complete" if not missing else f"still missing {', '.join(missing)}"
    return f"totalspineseg weights {tool.release} in {data_dir / 'nnUNet' / 'results' / tool.release}: {state}"
