"""Multi-sequence inputs on one grid (issue 16, point 2): every sequence brought onto the reference sequence's grid.

A model with several input channels sees one voxel grid. The reference sequence (the model manifest's
``reference_channel``; channel 0 for a model without a manifest) defines it: the outputs are on its grid and named
after its file. Each other sequence is registered to it rigidly with the longitudinal comparison's registration
(:func:`..analysis.registration.align`: Euler3D, Mattes mutual information, which works across contrasts; only the
cord and its surroundings count when a cord mask is given with ``--roi-mask``, since the neck moves between
sequences more than the cord does; refused in one line when implausible: beyond 15 degrees or 30 mm, or too little
mutual information), then resampled onto the reference grid (linear). With ``--no-register`` the sequences are
taken as aligned in scanner space (one exam, nobody moved) and only resampled. Each registration is saved as an ITK
``.tfm`` beside the outputs (:func:`transform_names`; ITK's resampling direction: reference points to the
sequence's points) and recorded in the sidecar with its checks. A sequence missing from the inputs, where the
model's policy allows it, is fed as zeros on the reference grid (``zeros``, and ``impute``, whose network reads a
zero channel as missing; :mod:`.channels`); the sidecar says so.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from ..analysis.longitudinal import transform_text
from ..analysis.registration import align
from ..errors import InputError
from ..image_io import image_to_array, resample_to_grid
from .channels import REFUSE


@dataclass(frozen=True)
class AlignedSequences:
    """The sequences in channel order, each on the reference's grid; per registered channel its sidecar record
    (:meth:`..analysis.registration.Registration.to_json`) and its ``.tfm`` text (none with ``--no-register``)."""

    images: list[sitk.Image]
    records: dict[str, dict]
    transforms: dict[str, str]
    #: The channels without an image, and the policy that filled them in.
    missing: list[str]
    policy: str

    def record(self, reference: str, registered: bool) -> dict:
        """The sidecar's ``sequences`` entry: the reference channel, whether the others were registered, each
        registration's record, and which sequences were missing and how they were filled in."""
        return {"reference": reference, "registered": registered, "to_reference": self.records,
                "missing": self.missing, "missing_policy": self.policy}


def transform_names(stem: str, channels: Sequence[str], reference: int,
                    missing: Collection[str] = ()) -> dict[str, str]:
    """Channel name -> file name of its transform (``<stem>_STIR_to_T2w.tfm``) for every channel but the reference
    and the ``missing`` ones (none for a single-channel model)."""
    def safe(name: str) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "", name.replace("*", "star")) or "channel"

    return {name: f"{stem}_{safe(name)}_to_{safe(channels[reference])}.tfm"
            for number, name in enumerate(channels) if number != reference and name not in missing}


def align_sequences(images: Sequence[sitk.Image | None], paths: Sequence[Path | None], channels: Sequence[str],
                    reference: int, *, cord: sitk.Image | None = None, register: bool = True,
                    policy: str = REFUSE) -> AlignedSequences:
    """Every sequence on ``images[reference]``'s grid: registered to it (unless ``register`` is False) inside the
    cord mask ``cord`` dilated (any grid; None: the whole image), then resampled; a missing sequence (None, as the
    model's ``policy`` allowed) becomes zeros on that grid. InputError naming the sequence's file when
    its registration fails or is implausible."""
    fixed = sitk.Cast(images[reference], sitk.sitkFloat32)
    cord_kji = None
    if cord is not None:
        cord_kji = image_to_array(resample_to_grid(cord, fixed, None, "the reference sequence", allow=True)) > 0
    target = f"the reference sequence ({channels[reference]})"
    aligned, records, transforms = [], {}, {}
    for number, (image, path, name) in enumerate(zip(images, paths, channels)):
        if number == reference:
            aligned.append(fixed)
            continue
        if image is None:
            blank = sitk.Image(fixed.GetSize(), sitk.sitkFloat32)  # zero-filled
            blank.CopyInformation(fixed)
            aligned.append(blank)
            continue
        try:
            result = align(fixed, image, baseline_cord=cord_kji, register=register, target=target)
        except InputError as error:
            raise InputError(path, f"({name}) {error.problem}") from None
        aligned.append(sitk.Resample(image, fixed, result.transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
        records[name] = result.to_json()
        if register:
            transforms[name] = transform_text(result.transform)
    missing = [name for name, image in zip(channels, images) if image is None]
    return AlignedSequences(aligned, records, transforms, missing, policy)

