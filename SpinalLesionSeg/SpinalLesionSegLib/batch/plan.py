"""Resume: which images of a batch must run, which are up to date, which hold a person's edits.

An image is **up to date** when its result set is complete (every file its sidecar lists has the sha256 recorded
there) and was made from the same input (sha256; every image of a multi-sequence case), the same model
(fingerprint) and the same settings (:func:`..inference.case.result_settings`). A changed model or threshold
re-runs what it affects; a deleted output re-runs only its image. An output that differs from what we wrote was
**edited by hand**: it is kept (never overwritten) unless ``--overwrite``. A set a killed run left half published
is completed first (:func:`..result_set.recover`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import safe_json
from ..bids import BidsImage
from ..errors import InputError
from ..image_io import sha256_file
from ..inference.case import output_paths
from ..outputs import WRITTEN_SHA256
from ..result_set import recover
from .sequence_cases import source_digests

RUN, SKIP, KEEP = "run", "skip", "keep"


@dataclass(frozen=True)
class Decision:
    """What to do with one image and why (shown by ``--dry-run`` and in the log)."""

    image: BidsImage
    action: str
    reason: str


def decide(image: BidsImage, settings: dict[str, Any], fingerprint: str, overwrite: bool, *,
           dry_run: bool = False) -> Decision:
    """The :class:`Decision` for ``image`` given the run's ``settings`` and the model's ``fingerprint``. A dry run
    changes nothing: a set a killed run left half published is then reported as to run, not completed."""
    paths = output_paths(image.output_dir(), image.stem)
    if not dry_run:
        recover(paths["sidecar"])
    if not paths["sidecar"].exists():
        return Decision(image, RUN, "no result yet")
    try:
        record = safe_json.load_file(paths["sidecar"])
    except InputError:
        record = None
    if not isinstance(record, dict) or not isinstance(record.get(WRITTEN_SHA256), dict) \
            or not isinstance(record.get("model") or {}, dict) or not isinstance(record.get("Sources") or [{}], list):
        return Decision(image, RUN, "its sidecar is unreadable")
    edited = _edited_outputs(record, paths)
    if edited:
        if overwrite:
            return Decision(image, RUN, f"{', '.join(edited)} edited by hand; replaced (--overwrite)")
        return Decision(image, KEEP, f"{', '.join(edited)} edited by hand: kept (--overwrite replaces it)")
    return Decision(image, RUN, why) if (why := _staleness(record, paths, image, settings, fingerprint)) \
        else Decision(image, SKIP, "up to date")


def _edited_outputs(record: Any, paths: dict[str, Path]) -> list[str]:
    """File names of existing outputs whose content is not what the sidecar says we wrote."""
    written = record[WRITTEN_SHA256]
    return [path.name for role, path in paths.items()
            if role != "sidecar" and path.exists() and written.get(role) != sha256_file(path)]


def _staleness(record: dict[str, Any], paths: dict[str, Path], image: BidsImage, settings: dict[str, Any],
               fingerprint: str) -> str | None:
    """Why an untouched result must be made again, or None when it is current."""
    written = record.get(WRITTEN_SHA256, {})
    missing = [paths[role].name for role in written if role in paths and not paths[role].exists()]
    if missing or not written:
        return f"{', '.join(missing) or 'outputs'} missing"
    if (record.get("model") or {}).get("fingerprint") != fingerprint:
        return "another model"
    recorded = record.get("settings")
    if recorded != settings:
        changed = sorted(k for k in settings if not isinstance(recorded, dict) or recorded.get(k) != settings[k])
        return f"settings changed ({', '.join(changed)})"
    sources = record.get("Sources") or [{}]
    if [source.get("sha256") if isinstance(source, dict) else None for source in sources] != source_digests(image):
        return "the image changed" if len(sources) == 1 else "an image of the case changed"
    return None
