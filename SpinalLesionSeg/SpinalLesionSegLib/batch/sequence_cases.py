"""Multi-sequence models in ``batch`` (issue 16): one case per exam, each image on the channel its suffix names.

For a model with several input channels (``dataset.json`` ``channel_names``: T2w, STIR...), the images of one
``sub-XX/[ses-YY/]anat`` folder whose BIDS suffix names a channel make one case, matched as ``predict --input``
names are (:func:`..inference.channels.same_channel`: case-insensitive, ``T2*w`` = ``T2starw``). When a folder holds
several images of one sequence (``acq-sag_T2w`` and ``acq-ax_T2w``), its images are grouped by the rest of their
names (the entities before the suffix), and a sequence with one image in the folder joins every group (not the
reference sequence's: the cases would share its name, so they are left out with a note). A case is
named after its reference sequence's image (the manifest's ``reference_channel``; the first sequence present when
that one is missing), as ``predict`` names its outputs. A sequence without an image is left missing when the
model's policy allows it (:data:`..inference.channels.POLICIES`); otherwise the case is left out with a one-line
note. Resume (:mod:`.plan`) compares the sha256 of every image of a case (:func:`source_digests`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..bids import BidsImage
from ..contrasts import contrast_label
from ..inference.channels import REFUSE, same_channel

#: One exam's images by model channel (None: no image of that sequence).
Group = dict[str, BidsImage | None]


@dataclass(frozen=True)
class SequenceCase(BidsImage):
    """A multi-sequence case. The :class:`..bids.BidsImage` fields are its reference sequence's image (output names,
    records, labels, selection); ``sequences`` are its images by channel name, in the model's channel order, the
    missing ones left out."""

    sequences: tuple[tuple[str, BidsImage], ...] = ()

    def matches(self, token: str) -> bool:
        """A selection token names the case when it names any of its images."""
        return any(image.matches(token) for _, image in self.sequences)


def job_inputs(image: BidsImage) -> tuple[list[str], list[str] | None]:
    """(the worker job's ``inputs``, its ``channels``): a case's images named by channel; a plain image alone."""
    if isinstance(image, SequenceCase):
        return [str(source.path) for _, source in image.sequences], [name for name, _ in image.sequences]
    return [str(image.path)], None


def source_digests(image: BidsImage) -> list[str]:
    """The sha256 of each input, in the order a result's sidecar lists its ``Sources``."""
    if isinstance(image, SequenceCase):
        return [source.digest() for _, source in image.sequences]
    return [image.digest()]


def group_sequences(images: Sequence[BidsImage], channels: Sequence[str], reference: int, policy: str,
                    model: str) -> tuple[list[SequenceCase], list[str]]:
    """(the cases of ``images`` for a model with ``channels``, one note per exam left out). ``reference`` is the
    index of the reference channel, ``policy`` the model's missing-sequence policy, ``model`` its name (notes)."""
    by_folder: dict[Path, list[BidsImage]] = defaultdict(list)
    for image in images:
        if any(same_channel(image.suffix, channel) for channel in channels):
            by_folder[image.folder].append(image)
    cases, notes = [], []
    for folder in sorted(by_folder):
        for group in _groups(by_folder[folder], channels):
            missing = [contrast_label(channel) for channel, image in group.items() if image is None]
            if missing and policy == REFUSE:
                given = ", ".join(image.relative.name for image in group.values() if image)
                notes.append(f"{folder.as_posix()}: {given} has no {' or '.join(missing)} beside it (model {model} "
                             f"needs every sequence: {', '.join(contrast_label(c) for c in channels)})")
                continue
            cases.append(_case(group, channels[reference]))
    return _unique_names(cases, notes)


def _unique_names(cases: list[SequenceCase], notes: list[str]) -> tuple[list[SequenceCase], list[str]]:
    """The cases whose name (their outputs') no other case has; the others left out with a note: a reference
    image that pairs with several images of another sequence would have every pairing write the same files."""
    counts = Counter(case.stem for case in cases)
    for case in {case.stem: case for case in cases if counts[case.stem] > 1}.values():
        notes.append(f"{case.folder.as_posix()}: {case.relative.name} pairs with several images of another "
                     "sequence (one case per image of the reference sequence): choose with --suffix or --exclude")
    return [case for case in cases if counts[case.stem] == 1], notes


def _prefix(image: BidsImage) -> str:
    """The name before the suffix (``sub-01_ses-01_acq-sag``): what the images of one group share."""
    return image.stem.rsplit("_", 1)[0]


def _groups(images: Sequence[BidsImage], channels: Sequence[str]) -> list[Group]:
    """One folder's images by channel: one group, or one per name prefix when a sequence has several images."""
    found = {channel: [i for i in images if same_channel(i.suffix, channel)] for channel in channels}
    prefixes = sorted({_prefix(i) for candidates in found.values() if len(candidates) > 1 for i in candidates})
    if not prefixes:
        return [{channel: next(iter(candidates), None) for channel, candidates in found.items()}]
    return [{channel: next((i for i in candidates if _prefix(i) == prefix),
                           candidates[0] if len(candidates) == 1 else None)
             for channel, candidates in found.items()} for prefix in prefixes]


def _case(group: Group, reference: str) -> SequenceCase:
    """The case of one group, named after its reference sequence's image (else the first one present)."""
    named = group[reference] or next(image for image in group.values() if image is not None)
    return SequenceCase(named.root, named.relative, named.subject, named.session, named.stem, named.suffix,
                        sequences=tuple((channel, image) for channel, image in group.items() if image))
