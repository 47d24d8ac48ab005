"""Named inputs: which image feeds which input channel of a multi-sequence model (issue 16, point 1).

``predict --input T2w=sag_t2.nii.gz --input STIR=sag_stir.nii.gz`` (and a worker :class:`.protocol.Job` with
``channels``) names each image by its sequence instead of relying on the order of the files; a sequence may be
left out when the model's missing-sequence policy allows it (:data:`POLICIES`). A name matches a
model channel (``dataset.json`` ``channel_names``) when both spell the same thing, ignoring case, and with the
project's contrast spellings as equal (``T2*w`` = ``T2starw``, :func:`..contrasts.contrast_label`): nnU-Net's
channel names are free text, so nothing looser is guessed. The images are put in the model's channel order; a name
the model does not have, a name given twice, or a channel left without an image is refused in one line that lists
the model's channels. Order-based grouping (positional images, consecutive per case) stays as it was.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..contrasts import contrast_label
from ..errors import InputError

if TYPE_CHECKING:
    from ..models.manifests import ModelManifest


#: Missing-sequence policies a model declares (its manifest's ``missing_sequences``): ``refuse`` (every channel
#: needs an image), ``zeros`` (a missing one is fed as zeros, at the input; for stock nnU-Net multi-channel models
#: trained with such inputs), ``impute`` (fed as zeros too, which this project's mean-imputation network reads as
#: "missing" and replaces by the mean of the available sequences' features, :mod:`.imputation_net`).
REFUSE, ZEROS, IMPUTE = "refuse", "zeros", "impute"
POLICIES = (REFUSE, ZEROS, IMPUTE)


def model_channels(dataset: Mapping[str, object]) -> list[str]:
    """A model's channel names in channel order, from its ``dataset.json`` (``channel_names``, or the older
    ``modality``; one unnamed channel when neither is there)."""
    names = dataset.get("channel_names", dataset.get("modality")) or {"0": "image"}
    assert isinstance(names, Mapping)
    return [str(value) for _, value in sorted(names.items(), key=lambda item: int(item[0]))]


def sequence_rules(manifest: ModelManifest | None) -> tuple[int, str]:
    """(the reference channel, the missing-sequence policy) of a model: its manifest's, else channel 0 and
    :data:`REFUSE` (a custom model says nothing about missing sequences, so none may be missing)."""
    return (manifest.reference_channel, manifest.missing_sequences) if manifest else (0, REFUSE)


def same_channel(name: str, channel: str) -> bool:
    """Whether ``name`` (a BIDS suffix, an ``--input`` name) spells the model channel ``channel``."""
    return _key(name) == _key(channel)


def parse_named_input(text: str) -> tuple[str, Path]:
    """``NAME=PATH`` -> (name, path) for ``--input``; InputError (one line) for anything else."""
    name, separator, path = text.partition("=")
    if not separator or not name.strip() or not path.strip():
        raise InputError(None, f"--input takes NAME=IMAGE (a channel name such as T2w, then the image), got {text!r}")
    return name.strip(), Path(path.strip())


def _key(name: str) -> str:
    """The form two names are compared in: lower case, ``*`` spelled ``star``."""
    return name.strip().replace("*", "star").lower()


def order_by_channel(names: Sequence[str], paths: Sequence[str | os.PathLike[str]], channels: Sequence[str],
                     policy: str = REFUSE) -> list[Path | None]:
    """``paths`` (the image of each name in ``names``) in the order of the model's ``channels`` (its channel
    names, channel 0 first); a channel without an image is None when the model's missing-sequence ``policy``
    allows it (:data:`POLICIES`), else refused."""
    listed = ", ".join(contrast_label(c) for c in channels)
    if len(names) != len(paths):
        raise InputError(None, f"{len(names)} channel name(s) for {len(paths)} image(s)")
    by_key: dict[str, Path] = {}
    for name, path in zip(names, paths):
        key = _key(name)
        if key not in {_key(c) for c in channels}:
            raise InputError(path, f"is given as {name!r}, a channel the model does not have (its channels: {listed})")
        if key in by_key:
            raise InputError(path, f"is a second image for channel {name!r} (already {by_key[key]})")
        by_key[key] = Path(path)
    missing = [contrast_label(c) for c in channels if _key(c) not in by_key]
    if missing and policy == REFUSE:
        raise InputError(None, f"no image for channel(s) {', '.join(missing)} (the model's channels: {listed}; it "
                               "needs every one: give each as --input NAME=IMAGE)")
    return [by_key.get(_key(c)) for c in channels]
