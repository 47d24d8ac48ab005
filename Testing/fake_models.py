"""Tiny fake nnU-Net results folders and archives for the model installer tests.

The installer never loads weights, so checkpoints are small ``torch.save`` dicts; everything else is the real
nnU-Net v2 layout (``dataset.json``, ``plans.json``, ``fold_N/checkpoint_*.pth``) as SCT's releases ship it.
"""

from __future__ import annotations

import functools
import io
import json
import os
import stat
import struct
import zipfile
from pathlib import Path

LESION_MS_TRAINER = ("nnUNetTrainerDiceCELoss_noSmooth_4000epochs_fromScratch__"
                     "nnUNetResEncUNetL1x1x1_Model2_Plans__3d_fullres")

#: A trainer_class.py as SCT ships it; if anything ever imported it, the marker file would appear.
TRAINER_CLASS_PY = "from pathlib import Path\nPath(__file__).with_name('IMPORTED').write_text('executed')\n"


@functools.lru_cache(maxsize=None)
def checkpoint_bytes(fold: int | str, kind: str = "final") -> bytes:
    """A small real torch checkpoint (distinct per fold and kind)."""
    import torch

    buffer = io.BytesIO()
    torch.save({"network_weights": {"w": torch.zeros(4)},
                "trainer_name": "nnUNetTrainer", "fold": str(fold), "kind": kind}, buffer)
    return buffer.getvalue()


def dataset_json(labels: dict | None = None, orientation: str | None = "RPI", **extra: object) -> str:
    data: dict = {"channel_names": {"0": "T2w"}, "labels": labels or {"background": 0, "lesion": 1},
                  "numTraining": 10, "file_ending": ".nii.gz"}
    if orientation:
        data["image_orientation"] = orientation
    data.update(extra)
    return json.dumps(data)


PLANS_JSON = json.dumps({"dataset_name": "Dataset101_Fake", "plans_name": "nnUNetPlans",
                         "configurations": {"3d_fullres": {"patch_size": [32, 32, 32]}}})


def trainer_files(folds: tuple[int | str, ...] = (0, 1), *, dataset: str | None = None,
                  best_only: tuple[int | str, ...] = (), prefix: str = "", plans: str | None = None) -> dict[str, bytes]:
    """Files of a trainer folder (relative path -> bytes), with the clutter real results folders hold."""
    files = {
        f"{prefix}dataset.json": (dataset or dataset_json()).encode(),
        f"{prefix}plans.json": (plans or PLANS_JSON).encode(),
        f"{prefix}trainer_class.py": TRAINER_CLASS_PY.encode(),
        f"{prefix}dataset_fingerprint.json": b"{}",
    }
    for fold in folds:
        if fold not in best_only:
            files[f"{prefix}fold_{fold}/checkpoint_final.pth"] = checkpoint_bytes(fold, "final")
        files[f"{prefix}fold_{fold}/checkpoint_best.pth"] = checkpoint_bytes(fold, "best")
        files[f"{prefix}fold_{fold}/training_log.txt"] = b"epoch 1\n"
        files[f"{prefix}fold_{fold}/validation/case_000.nii.gz"] = b"\x1f\x8b not really"
    return files


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def write_zip(path: Path, files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    """A zip of ``files``; ``symlinks`` adds symbolic-link members (name -> target) as Unix zip tools store them."""
    with zipfile.ZipFile(path, "w") as archive:
        for rel, data in files.items():
            archive.writestr(rel, data)
        for rel, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(rel)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def fold_zip(path: Path, fold: int, *, dataset: str | None = None, root_files: dict[str, bytes] | None = None,
             trainer: str = LESION_MS_TRAINER) -> Path:
    """One SCT-style fold archive: the trainer folder with dataset.json, plans.json and a single fold."""
    files = trainer_files((fold,), dataset=dataset, prefix=f"{trainer}/")
    files.update(root_files or {})
    return write_zip(path, files)


class _RunsCode:
    """Pickles as a call of ``os.system(command)``: what a crafted checkpoint does to whoever unpickles it."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return os.system, (self.command,)


def malicious_checkpoint_bytes(marker: Path) -> bytes:
    """A torch checkpoint that creates ``marker`` if it is ever unpickled unsafely (weights included)."""
    import shlex

    import torch

    buffer = io.BytesIO()
    torch.save({"network_weights": {"w": torch.zeros(4)}, "extra": _RunsCode(f"touch {shlex.quote(str(marker))}")},
               buffer)
    return buffer.getvalue()


def claim_sizes(path: Path, sizes: dict[str, int]) -> Path:
    """Rewrite the central directory of zip ``path`` so that the named members claim ``size`` bytes, packed and
    unpacked (under 4 GiB each): what a crafted archive can declare, read before anything is unpacked."""
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    (count,) = struct.unpack_from("<H", data, end + 10)
    (offset,) = struct.unpack_from("<I", data, end + 16)
    for _ in range(count):
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", data, offset + 28)
        name = data[offset + 46:offset + 46 + name_length].decode()
        if name in sizes:
            struct.pack_into("<II", data, offset + 20, sizes[name], sizes[name])
        offset += 46 + name_length + extra_length + comment_length
    path.write_bytes(bytes(data))
    return path


#: The project's bundled demo model: a real nnU-Net v2 results folder (two folds, real weights).
DEMO_MODEL = Path(__file__).resolve().parents[1] / "SpinalLesionSeg" / "Resources" / "Models" / "demo"
#: SCT's padding keys of crop_metadata.json (mm), with made-up values.
CROP_PADS = {"pad_left": 4.0, "pad_right": 5.0, "pad_posterior": 6.0, "pad_anterior": 7.0, "pad_inferior": 8.0,
             "pad_superior": 9.0}


def cord_model_files(prefix: str = "", *, crop_pads: dict | None = None) -> dict[str, bytes]:
    """A real cord-only nnU-Net model (relative path -> bytes) made from the bundled demo model (region-based: sc,
    lesion): its cord region as a label model with one foreground label ``sc`` (as the contrast-agnostic cord
    model's dataset.json; :func:`_one_region_model`); with ``crop_pads`` a ``crop_metadata.json`` at the root, as
    SCT's cropped releases ship it. What it calls cord is what the demo finds, so the tests check the two-stage
    plumbing, not cord quality."""
    files = _one_region_model(prefix, "sc", 0, "FakeCordOnly")
    if crop_pads is not None:
        files["crop_metadata.json"] = json.dumps(crop_pads).encode()
    return files


def lesion_model_files(prefix: str = "") -> dict[str, bytes]:
    """A real lesion-only nnU-Net model (no cord output, as ``lesion_ms``) made from the bundled demo model: its
    lesion region as a label model with one foreground label ``lesion`` (:func:`_one_region_model`), whose lesion
    probability is exactly the demo's."""
    return _one_region_model(prefix, "lesion", 1, "FakeLesionOnly")


def _one_region_model(prefix: str, label: str, region: int, name: str) -> dict[str, bytes]:
    """The demo model's plans and weights as a label model (softmax over background and ``label``) whose
    foreground probability is its region number ``region`` (0 = sc, 1 = lesion: regions_class_order [1, 2])."""
    dataset = json.loads((DEMO_MODEL / "dataset.json").read_text())
    dataset.pop("regions_class_order")
    dataset.update(labels={"background": 0, label: 1}, name=name)
    files = {f"{prefix}dataset.json": json.dumps(dataset).encode(),
             f"{prefix}plans.json": (DEMO_MODEL / "plans.json").read_bytes()}
    for checkpoint in sorted(DEMO_MODEL.glob("fold_*/checkpoint_final.pth")):
        files[f"{prefix}{checkpoint.parent.name}/checkpoint_final.pth"] = _one_region_checkpoint(checkpoint, region)
    return files


@functools.lru_cache(maxsize=None)
def _one_region_checkpoint(path: Path, region: int) -> bytes:
    """The region demo's checkpoint with softmax outputs (background, foreground): background logit 0, foreground
    logit the region's, so that softmax(foreground) = sigmoid(region logit), the demo's own region probability."""
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    weights = checkpoint["network_weights"]
    for name in [n for n in weights if ".seg_layers." in n]:
        logit = weights[name][region]
        weights[name] = torch.stack([torch.zeros_like(logit), logit])
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def two_channel_model_files(channels: tuple[str, str] = ("T2w", "STIR"), live: int = 0) -> dict[str, bytes]:
    """A real two-channel nnU-Net model (relative path -> bytes) made from the bundled demo model: channel ``live``
    feeds the demo's network as its one channel did, the other is wired in with zero weights. So its output is
    exactly the demo's on the live channel's image whatever the other holds: a test can tell which image went
    where, and (``live=1``) see the second sequence after it was brought onto the first one's grid."""
    dataset = json.loads((DEMO_MODEL / "dataset.json").read_text())
    dataset.update(channel_names={"0": channels[0], "1": channels[1]}, name="FakeTwoChannel")
    plans = json.loads((DEMO_MODEL / "plans.json").read_text())
    configuration = plans["configurations"]["3d_fullres"]
    for key in ("normalization_schemes", "use_mask_for_norm"):
        configuration[key] = configuration[key] * 2
    properties = plans["foreground_intensity_properties_per_channel"]
    properties["1"] = properties["0"]
    files = {"dataset.json": json.dumps(dataset).encode(), "plans.json": json.dumps(plans).encode()}
    for checkpoint in sorted(DEMO_MODEL.glob("fold_*/checkpoint_final.pth")):
        files[f"{checkpoint.parent.name}/checkpoint_final.pth"] = _two_channel_checkpoint(checkpoint, dataset, plans,
                                                                                          live)
    return files


def _two_channel_checkpoint(path: Path, dataset: dict, plans: dict, live: int) -> bytes:
    """The demo's checkpoint with its first convolution given a second input channel; the one not ``live`` has
    zero weights."""
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    weights = checkpoint["network_weights"]
    for name, value in list(weights.items()):
        if value.dim() == 5 and value.shape[1] == 1:  # the first convolution (its aliases in the state dict too)
            pair = [value, torch.zeros_like(value)]
            weights[name] = torch.cat(pair if live == 0 else pair[::-1], dim=1)
    checkpoint["init_args"].update(dataset_json=dataset, plans=plans)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()
