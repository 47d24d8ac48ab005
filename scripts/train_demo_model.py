"""Train the bundled demo model: a small nnU-Net on synthetic spinal MRI phantoms, on the CPU, seeded.

The result is a real nnU-Net v2 results folder (``dataset.json``, ``plans.json``, ``fold_N/checkpoint_final.pth``)
that stock nnunetv2 can load too. It exists so that the whole pipeline (reorientation, preprocessing, sliding
window, fold ensembling, the worker, Slicer) runs end to end on any machine without downloading the 764 MB
published model. It is not a clinical model.

Everything nnU-Net-specific comes from nnunetv2 itself: the plans format, the preprocessing (``DefaultPreprocessor``,
so training sees exactly what inference sees), the architecture (``dynamic_network_architectures`` PlainConvUNet)
and the Dice + cross-entropy loss. Only the training loop is ours, because nnU-Net's trainer needs a preprocessed
dataset on disk and its data-loading processes, which are too heavy for a 20-minute CPU budget.

    python scripts/train_demo_model.py                 # writes SpinalLesionSeg/Resources/Models/demo
    python scripts/train_demo_model.py --iterations 50 --out /tmp/demo   # a quick smoke run
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SpinalLesionSeg"))

from SpinalLesionSegLib.geometry import reorient, sct_to_axcodes  # noqa: E402
from SpinalLesionSegLib.phantom import make_phantom  # noqa: E402

ORIENTATION_SCT = "RPI"  # as the published lesion_ms model
PATCH_ZYX = [64, 48, 48]  # voxels at 1 mm in model orientation: S-I, A-P, R-L
FEATURES = [14, 28, 56, 112]
CONTRASTS = ("T2w",)

DATASET_JSON = {
    "name": "SpinalLesionSegDemo",
    "description": "Demo MS lesion model trained on SpinalLesionSeg's synthetic spinal cord phantoms. Not for clinical use.",
    "channel_names": {"0": "T2w"},
    "labels": {"background": 0, "lesion": 1},
    "file_ending": ".nii.gz",
    "image_orientation": ORIENTATION_SCT,
    "licence": "Apache-2.0",
}


def make_plans(n_training: int) -> dict:
    """nnU-Net v2 plans for a 4-stage PlainConvUNet at 1 mm isotropic (format of nnunetv2 2.x plans.json)."""
    n_stages = len(FEATURES)
    return {
        "dataset_name": "Dataset900_SpinalLesionSegDemo",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
        "original_median_shape_after_transp": [96, 64, 48],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": PATCH_ZYX,
                "median_image_size_in_voxels": [96, 64, 48],
                "spacing": [1.0, 1.0, 1.0],
                "normalization_schemes": ["ZScoreNormalization"],
                "use_mask_for_norm": [False],
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
                "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                       "force_separate_z": None},
                "architecture": {
                    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                    "arch_kwargs": {
                        "n_stages": n_stages,
                        "features_per_stage": FEATURES,
                        "conv_op": "torch.nn.modules.conv.Conv3d",
                        "kernel_sizes": [[3, 3, 3]] * n_stages,
                        "strides": [[1, 1, 1]] + [[2, 2, 2]] * (n_stages - 1),
                        "n_conv_per_stage": [2] * n_stages,
                        "n_conv_per_stage_decoder": [2] * (n_stages - 1),
                        "conv_bias": True,
                        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                        "dropout_op": None,
                        "dropout_op_kwargs": None,
                        "nonlin": "torch.nn.LeakyReLU",
                        "nonlin_kwargs": {"inplace": True},
                    },
                    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
                },
                "batch_dice": True,
            }
        },
        "experiment_planner_used": "hand-written for the demo model (scripts/train_demo_model.py)",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {"max": 1.0, "mean": 0.0, "median": 0.0, "min": 0.0, "percentile_00_5": 0.0,
                  "percentile_99_5": 1.0, "std": 1.0}
        },
        "numTraining": n_training,
    }


def preprocess_cases(seeds: list[int], plans: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """Phantoms reoriented to the model orientation and preprocessed exactly as at inference."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_manager = PlansManager(plans)
    configuration = plans_manager.get_configuration("3d_fullres")
    preprocessor = DefaultPreprocessor(verbose=False)
    target = sct_to_axcodes(ORIENTATION_SCT)
    cases = []
    for seed in seeds:
        phantom = make_phantom(seed, contrast=CONTRASTS[seed % len(CONTRASTS)])
        image = reorient(sitk.Cast(phantom.image, sitk.sitkFloat32), target)
        lesion = reorient(phantom.lesion, target)
        data = sitk.GetArrayFromImage(image)[None]
        seg = sitk.GetArrayFromImage(lesion)[None].astype(np.int8)
        spacing = list(image.GetSpacing())[::-1]
        data, seg, _ = preprocessor.run_case_npy(data, seg, {"spacing": spacing}, plans_manager, configuration,
                                                 DATASET_JSON)
        cases.append((data.astype(np.float32), seg.astype(np.int64)))
    return cases


def random_patch(case: tuple[np.ndarray, np.ndarray], rng: np.random.Generator,
                 foreground: bool) -> tuple[np.ndarray, np.ndarray]:
    """A PATCH_ZYX crop (zero-padded if the case is smaller), centred on a lesion voxel when ``foreground``."""
    data, seg = case
    pad = [(0, 0)] + [(0, max(0, p - s)) for p, s in zip(PATCH_ZYX, data.shape[1:])]
    data, seg = np.pad(data, pad), np.pad(seg, pad)
    shape = np.array(data.shape[1:])
    lesion_voxels = np.argwhere(seg[0] > 0)
    if foreground and len(lesion_voxels):
        centre = lesion_voxels[rng.integers(len(lesion_voxels))]
        start = np.clip(centre - np.array(PATCH_ZYX) // 2 + rng.integers(-8, 9, 3), 0, shape - PATCH_ZYX)
    else:
        start = np.array([rng.integers(0, s - p + 1) for s, p in zip(shape, PATCH_ZYX)])
    sl = tuple(slice(int(a), int(a) + p) for a, p in zip(start, PATCH_ZYX))
    x, y = data[(slice(None),) + sl], seg[(slice(None),) + sl]
    for axis in (1, 2, 3):  # mirroring: the model must not depend on left/right or up/down
        if rng.random() < 0.5:
            x, y = np.flip(x, axis), np.flip(y, axis)
    x = x * rng.uniform(0.9, 1.1) + rng.normal(0, 0.05)  # intensity jitter
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def train_fold(fold: int, cases: list, plans: dict, iterations: int, seed: int) -> tuple[dict, list[float]]:
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    arch = plans["configurations"]["3d_fullres"]["architecture"]
    network = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                     1, 2, allow_init=True, deep_supervision=False)
    # Batch Dice: a patch without lesion (a third of them) then does not push the network towards empty masks.
    loss_fn = DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                             weight_ce=1, weight_dice=1, dice_class=MemoryEfficientSoftDiceLoss)
    optimizer = torch.optim.AdamW(network.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=iterations, pct_start=0.1)
    batch = plans["configurations"]["3d_fullres"]["batch_size"]
    losses = []
    network.train()
    started = time.perf_counter()
    for iteration in range(iterations):
        patches = [random_patch(cases[rng.integers(len(cases))], rng, foreground=rng.random() < 0.67)
                   for _ in range(batch)]
        x = torch.from_numpy(np.stack([p[0] for p in patches])).float()
        y = torch.from_numpy(np.stack([p[1] for p in patches]))
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(network(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 12)
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if iteration % 50 == 0 or iteration == iterations - 1:
            recent = np.mean(losses[-50:])
            print(f"fold {fold} iteration {iteration + 1}/{iterations} loss {recent:.4f} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    return copy.deepcopy(network.state_dict()), losses


def compact_weights(weights: dict) -> dict:
    """Float16 copies of the weights, one tensor object per distinct value.

    float16 storage keeps the bundle under 5 MB (loading casts back to the network's float32). The state dict of
    dynamic_network_architectures' UNets lists the encoder twice (``encoder.*`` and ``decoder.encoder.*``); giving
    equal tensors one object lets ``torch.save`` store them once.
    """
    shared: dict[tuple, torch.Tensor] = {}
    compact = {}
    for name, value in weights.items():
        value = value.half() if value.is_floating_point() else value
        key = (tuple(value.shape), str(value.dtype), hashlib.sha256(value.numpy().tobytes()).hexdigest())
        compact[name] = shared.setdefault(key, value)
    return compact


def write_checksums(folder: Path) -> None:
    """SHA256SUMS for every file of the model folder (what the registry verifies the bundle against)."""
    sums = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(folder).as_posix()}"
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "SHA256SUMS"]
    (folder / "SHA256SUMS").write_text("\n".join(sums) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "SpinalLesionSeg" / "Resources" / "Models" / "demo")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--cases", type=int, default=48, help="phantoms per fold's training set")
    parser.add_argument("--iterations", type=int, default=1000, help="training iterations per fold")
    parser.add_argument("--seed", type=int, default=20261123)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    plans = make_plans(args.cases * args.folds)
    tmp = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "dataset.json").write_text(json.dumps({**DATASET_JSON, "numTraining": args.cases * args.folds}, indent=2))
    (tmp / "plans.json").write_text(json.dumps(plans, indent=2))
    for fold in range(args.folds):
        seeds = [args.seed + 1000 * fold + i for i in range(args.cases)]
        started = time.perf_counter()
        cases = preprocess_cases(seeds, plans)
        print(f"fold {fold}: {len(cases)} phantoms preprocessed in {time.perf_counter() - started:.0f} s", flush=True)
        weights, losses = train_fold(fold, cases, plans, args.iterations, args.seed + fold)
        checkpoint = {
            "network_weights": compact_weights(weights),
            "init_args": {"configuration": "3d_fullres", "fold": fold, "plans": plans, "dataset_json": DATASET_JSON},
            "trainer_name": "nnUNetTrainer",
            "inference_allowed_mirroring_axes": (0, 1, 2),
            "current_epoch": args.iterations,
            "logging": {"train_losses": [float(v) for v in losses[::10]]},
            "training": {"seed": args.seed + fold, "phantom_seeds": [seeds[0], seeds[-1]],
                         "iterations": args.iterations, "seconds": round(time.perf_counter() - started, 1)},
        }
        (tmp / f"fold_{fold}").mkdir()
        torch.save(checkpoint, tmp / f"fold_{fold}" / "checkpoint_final.pth")
    write_checksums(tmp)
    shutil.rmtree(args.out, ignore_errors=True)
    tmp.rename(args.out)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
