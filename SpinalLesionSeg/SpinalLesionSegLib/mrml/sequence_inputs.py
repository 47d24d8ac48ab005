"""The panel's per-sequence inputs for a multi-sequence model (issue 16, point 5), headless.

A model with several input channels (T2w + STIR...) gets one volume per channel instead of the one input volume.
:func:`model_sequences` reads the channels and the model's rules from its files (no hashing, no torch: it runs
each time the model choice changes); :func:`prefill` picks, for each channel, the scene's volume whose name (a BIDS
suffix) or DICOM series description names that sequence; a channel may be left "missing" when the model's policy
allows it (:data:`..inference.channels.POLICIES`). :meth:`SequenceChoice.write` checks the choice and writes each
volume (its own grid) for the worker, which registers them onto the reference sequence's grid
(:mod:`..inference.sequences`) as ``predict --input NAME=IMAGE`` does. The results belong to the reference volume
(the first one chosen when the reference sequence is missing): :meth:`SequenceChoice.reference_volume`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import slicer

from ..contrasts import contrast_from_description, contrast_label
from ..errors import InputError
from ..inference.channels import REFUSE, model_channels, same_channel, sequence_rules
from ..models import manifests, registry
from ..models.layout import load_json_object

#: Writes a volume to a file named ``name`` in the panel's work folder; returns the file.
Writer = Callable[[slicer.vtkMRMLScalarVolumeNode, str], Path]


@dataclass(frozen=True)
class ModelSequences:
    """A multi-sequence model's inputs: its channel names (channel order), the reference channel's index and
    its missing-sequence policy."""

    model: str
    channels: tuple[str, ...]
    reference: int
    policy: str

    @property
    def may_miss(self) -> bool:
        """Whether a sequence may be left out (the panel's selectors then offer "missing")."""
        return self.policy != REFUSE


@dataclass
class SequenceChoice:
    """The volume chosen for each channel of ``sequences`` (None: missing)."""

    sequences: ModelSequences
    volumes: dict[str, slicer.vtkMRMLScalarVolumeNode | None] = field(default_factory=dict)

    def present(self) -> list[tuple[str, slicer.vtkMRMLScalarVolumeNode]]:
        """(channel, volume) of every chosen sequence, in channel order; InputError (one line) for a choice the
        model cannot run: nothing chosen, a missing sequence under the ``refuse`` policy, one volume twice."""
        spec = self.sequences
        chosen = [(name, volume) for name in spec.channels if (volume := self.volumes.get(name)) is not None]
        missing = [contrast_label(name) for name in spec.channels if self.volumes.get(name) is None]
        if not chosen:
            raise InputError(None, f"no volume chosen for model {spec.model}'s sequences "
                                   f"({', '.join(contrast_label(c) for c in spec.channels)})")
        if missing and not spec.may_miss:
            raise InputError(None, f"no volume chosen for {', '.join(missing)}: model {spec.model} needs every "
                                   "sequence")
        ids = [volume.GetID() for _, volume in chosen]
        if doubled := next((volume for _, volume in chosen if ids.count(volume.GetID()) > 1), None):
            raise InputError(None, f"the volume {doubled.GetName()!r} is chosen for two sequences")
        return chosen

    def reference_volume(self) -> slicer.vtkMRMLScalarVolumeNode:
        """The volume whose grid the results are on: the reference sequence's, else the first chosen."""
        reference = self.volumes.get(self.sequences.channels[self.sequences.reference])
        return reference if reference is not None else self.present()[0][1]

    def write(self, writer: Writer) -> tuple[list[str], list[str]]:
        """(the job's input files, their channel names): each chosen volume written by ``writer``."""
        chosen = self.present()
        return ([str(writer(volume, f"input_{_file_safe(name)}.nii.gz")) for name, volume in chosen],
                [name for name, _ in chosen])


def model_sequences(model: str) -> ModelSequences | None:
    """The inputs of an installed model when it has several channels, else None (one input volume). Read from
    its ``dataset.json`` and manifest, unverified: the worker verifies the files before it loads them."""
    try:
        folder = registry.path(model)
        channels = model_channels(load_json_object(folder / "dataset.json"))
    except (InputError, ValueError, KeyError, TypeError):  # not installed, unreadable: the worker will say why
        return None
    if len(channels) < 2:
        return None
    reference, policy = sequence_rules(manifests.MANIFESTS.get(model))
    return ModelSequences(model, tuple(channels), reference, policy)


def prefill(sequences: ModelSequences, volumes: Sequence[slicer.vtkMRMLScalarVolumeNode],
            descriptions: Mapping[str, str] | None = None) -> SequenceChoice:
    """For each channel, the first of ``volumes`` whose name (``sub-01_STIR``) or DICOM series description
    (``descriptions``, by volume ID: "sag STIR") names that sequence; None where no volume does."""
    descriptions = descriptions or {}
    choice = SequenceChoice(sequences)
    for channel in sequences.channels:
        choice.volumes[channel] = next(
            (volume for volume in volumes if any(named and same_channel(named, channel) for named in (
                contrast_from_description(volume.GetName()),
                contrast_from_description(descriptions.get(volume.GetID(), ""))))), None)
    return choice


def _file_safe(name: str) -> str:
    """A channel name as part of a file name (``T2*w`` -> ``T2_w``)."""
    return re.sub(r"[^\w-]+", "_", name).strip("_") or "channel"
