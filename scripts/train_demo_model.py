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

Region-based cord + lesion model (issue 15, point 3; labels as the published axial T2w model: ``sc`` = cord
including lesions, ``lesion``), trained on phantoms and on the shared real axial T2w (t2_ms) with synthetic lesions
painted into its cord, random layouts, rotations, scalings and intensity/contrast augmentation
(scripts/demo_real_data.py); the real sagittal t2 is held out for bench/demo_real_eval.py. ``--init-from`` starts
each fold from the same fold of an earlier (lesion-only) demo model, its lesion head turned into the region's
sigmoid head (softmax lesion probability = sigmoid of the logit difference), so the phantom skills carry over:

    python scripts/train_demo_model.py --regions --real 24 --init-from SpinalLesionSeg/Resources/Models/demo \
        --out /tmp/work/demo_new/model
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

from SpinalLesionSegLib.geometry import reorient, sct_to_axcodes
from SpinalLesionSegLib.phantom import make_phantom

sys.path.insert(0, str(ROOT / "scripts"))

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


#: Region-based variant (``--regions``): label 1 = cord without lesion, 2 = lesion; regions sc = (1, 2), lesion = 2.
DATASET_JSON_REGIONS = {
    **DATASET_JSON,
    "description": "Demo cord + MS lesion model (region-based: sc = cord including lesions, lesion) trained on "
                   "SpinalLesionSeg's synthetic phantoms and on a real T2w scan with synthetic lesions painted into "
                   "its cord. Not for clinical use.",
    "labels": {"background": 0, "sc": [1, 2], "lesion": 2},
    "regions_class_order": [1, 2],
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


def _preprocess(image: sitk.Image, lesion: sitk.Image, cord: sitk.Image | None, plans: dict,
                dataset_json: dict) -> tuple[np.ndarray, np.ndarray]:
    """One case reoriented to the model orientation and preprocessed exactly as at inference; its labels are the
    lesion (1) or, with ``cord``, cord 1 and lesion 2."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_manager = PlansManager(plans)
    target = sct_to_axcodes(ORIENTATION_SCT)
    image = reorient(sitk.Cast(image, sitk.sitkFloat32), target)
    seg = (sitk.GetArrayFromImage(reorient(lesion, target)) > 0).astype(np.int8)
    if cord is not None:
        seg = np.maximum(2 * seg, (sitk.GetArrayFromImage(reorient(cord, target)) > 0).astype(np.int8))
    data = sitk.GetArrayFromImage(image)[None]
    spacing = list(image.GetSpacing())[::-1]
    data, seg, _ = DefaultPreprocessor(verbose=False).run_case_npy(
        data, seg[None], {"spacing": spacing}, plans_manager, plans_manager.get_configuration("3d_fullres"),
        dataset_json)
    return data.astype(np.float32), seg.astype(np.int64)


def preprocess_cases(seeds: list[int], plans: dict, regions: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """Phantoms reoriented to the model orientation and preprocessed exactly as at inference."""
    cases = []
    for seed in seeds:
        phantom = make_phantom(seed, contrast=CONTRASTS[seed % len(CONTRASTS)])
        cases.append(_preprocess(phantom.image, phantom.lesion, phantom.cord if regions else None, plans,
                                 DATASET_JSON_REGIONS if regions else DATASET_JSON))
    return cases


def real_cases(count: int, seed: int, plans: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` variants of the real training scan (t2_ms; t2 is held out): synthetic lesions painted into its
    cord, then a random layout, rotation and scaling (scripts/demo_real_data.py)."""
    import demo_real_data

    image, cord = demo_real_data.load_real()["t2_ms"]
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(count):
        painted, lesion, _ = demo_real_data.paint_lesions(image, cord, rng)
        variant, variant_cord, variant_lesion = demo_real_data.random_layout(painted, cord, lesion, rng)
        cases.append(_preprocess(variant, variant_lesion, variant_cord, plans, DATASET_JSON_REGIONS))
    return cases


def random_patch(case: tuple[np.ndarray, np.ndarray], rng: np.random.Generator,
                 foreground: bool | str, strong: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A PATCH_ZYX crop (zero-padded if the case is smaller), centred on a lesion voxel when ``foreground`` (on a
    cord voxel when it is "cord"); ``strong`` adds the region model's intensity and contrast augmentation."""
    data, seg = case
    pad = [(0, 0)] + [(0, max(0, p - s)) for p, s in zip(PATCH_ZYX, data.shape[1:])]
    data, seg = np.pad(data, pad), np.pad(seg, pad)
    shape = np.array(data.shape[1:])
    lesion_voxels = np.argwhere(seg[0] == seg.max()) if seg.max() > 0 else np.zeros((0, 3), int)
    if foreground == "cord":
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
    if strong:
        x = _intensity_augmentation(np.ascontiguousarray(x), rng)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def _intensity_augmentation(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """nnU-Net-like intensity and contrast augmentation of a z-scored patch: gamma, contrast, brightness,
    Gaussian blur, Gaussian noise and a smooth multiplicative bias field, each with some probability."""
    from scipy import ndimage

    if rng.random() < 0.3:  # gamma on the patch's own range
        low, high = float(x.min()), float(x.max())
        x = ((x - low) / max(high - low, 1e-6)) ** rng.uniform(0.7, 1.5) * (high - low) + low
    if rng.random() < 0.3:  # contrast about the mean
        mean = x.mean()
        x = (x - mean) * rng.uniform(0.65, 1.5) + mean
    if rng.random() < 0.2:
        x = ndimage.gaussian_filter(x, (0, *rng.uniform(0.5, 1.2, 3)))
    if rng.random() < 0.2:
        x = x + rng.normal(0, rng.uniform(0.0, 0.15), x.shape)
    if rng.random() < 0.3:  # coil-like bias field
        field = ndimage.zoom(rng.normal(0, 0.15, (1, 3, 3, 3)), [1] + [p / 3 for p in PATCH_ZYX], order=3)
        x = x * np.exp(field[:, :x.shape[1], :x.shape[2], :x.shape[3]])
    return x.astype(np.float32)


def _region_head(weights: dict) -> dict:
    """A lesion-only demo model's weights for the region model: the segmentation layers' lesion output becomes
    the lesion region's logit (weights and bias of lesion minus background: sigmoid of that difference is the
    softmax lesion probability), the cord region's output starts from the background's, negated."""
    weights = {k: v.float().clone() for k, v in weights.items()}
    for name in [n for n in weights if ".seg_layers." in n]:
        value = weights[name]
        weights[name] = torch.stack([-value[0], value[1] - value[0]])
    return weights


def is_region_model(folder: Path) -> bool:
    """Whether a demo model folder is region-based (cord + lesion): then ``--init-from`` continues its training."""
    return "regions_class_order" in json.loads((folder / "dataset.json").read_text())


def train_fold(fold: int, cases: list, plans: dict, iterations: int, seed: int, regions: bool = False,
               real: list | None = None, init: dict | None = None,
               budget_s: float | None = None) -> tuple[dict, list[float]]:
    """Train one fold for ``iterations`` iterations (one-cycle learning rate), or with ``budget_s`` for as many as
    fit in that many seconds (same shape of learning rate, over elapsed time: for a shared CPU)."""
    from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    arch = plans["configurations"]["3d_fullres"]["architecture"]
    network = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                     1, 2, allow_init=True, deep_supervision=False)
    if init is not None:
        network.load_state_dict(init)
    if regions:  # as nnU-Net's trainer for region-based labels: sigmoid outputs, Dice + binary cross-entropy
        loss_fn = DC_and_BCE_loss({}, {"batch_dice": True, "do_bg": True, "smooth": 1e-5, "ddp": False},
                                  use_ignore_label=False, dice_class=MemoryEfficientSoftDiceLoss)
    else:
        # Batch Dice: a patch without lesion (a third of them) then does not push the network towards empty masks.
        loss_fn = DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                                 weight_ce=1, weight_dice=1, dice_class=MemoryEfficientSoftDiceLoss)
    optimizer = torch.optim.AdamW(network.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = (None if budget_s else
                torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=iterations, pct_start=0.1))
    max_lr = 1e-3 if init is not None else 3e-3
    batch = plans["configurations"]["3d_fullres"]["batch_size"]
    losses = []
    network.train()
    started = time.perf_counter()
    iteration = -1
    while True:
        iteration += 1
        elapsed = time.perf_counter() - started
        if (budget_s and elapsed >= budget_s) or (not budget_s and iteration >= iterations):
            break
        if budget_s:  # warm-up over the first 5 % of the time, then cosine annealing to zero
            fraction = elapsed / budget_s
            for group in optimizer.param_groups:
                group["lr"] = max_lr * min(1.0, fraction / 0.05) * 0.5 * (1 + np.cos(np.pi * fraction)) + 1e-6
        if regions:  # half real, half phantoms; centred on a lesion, on the cord, or anywhere
            patches = []
            for _ in range(batch):
                pool = real if real and rng.random() < 0.5 else cases
                draw = rng.random()
                patches.append(random_patch(pool[rng.integers(len(pool))], rng,
                                            foreground=True if draw < 0.45 else "cord" if draw < 0.75 else False,
                                            strong=True))
        else:
            patches = [random_patch(cases[rng.integers(len(cases))], rng, foreground=rng.random() < 0.67)
                       for _ in range(batch)]
        x = torch.from_numpy(np.stack([p[0] for p in patches])).float()
        y = torch.from_numpy(np.stack([p[1] for p in patches]))
        if regions:  # one-hot regions: sc = labels 1 and 2, lesion = label 2
            y = torch.cat([y >= 1, y == 2], dim=1).float()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(network(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 12)
        optimizer.step()
        if schedule is not None:
            schedule.step()
        losses.append(float(loss.detach()))
        if iteration % 50 == 0 or iteration == iterations - 1:
            recent = np.mean(losses[-50:])
            print(f"fold {fold} iteration {iteration + 1}/{'-' if budget_s else iterations} loss {recent:.4f} "
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
    parser.add_argument("--regions", action="store_true", help="region-based cord + lesion model (issue 15)")
    parser.add_argument("--real", type=int, default=0, help="real-scan variants per fold (with --regions)")
    parser.add_argument("--init-from", type=Path, help="start each fold from this demo model's same fold "
                        "(a region model's training continues; a lesion-only model's head is converted)")
    parser.add_argument("--minutes", type=float, help="train each fold for this long instead of --iterations")
    parser.add_argument("--only-fold", type=int, action="append",
                        help="train only this fold (repeatable; the others are not written)")
    args = parser.parse_args()
    dataset_json = DATASET_JSON_REGIONS if args.regions else DATASET_JSON
    torch.set_num_threads(max(1, torch.get_num_threads()))

    plans = make_plans(args.cases * args.folds)
    tmp = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "dataset.json").write_text(json.dumps({**dataset_json, "numTraining": args.cases * args.folds}, indent=2))
    (tmp / "plans.json").write_text(json.dumps(plans, indent=2))
    for fold in args.only_fold or range(args.folds):
        seeds = [args.seed + 1000 * fold + i for i in range(args.cases)]
        started = time.perf_counter()
        cases = preprocess_cases(seeds, plans, args.regions)
        real = real_cases(args.real, args.seed + 7 * fold + 1, plans) if args.regions and args.real else None
        print(f"fold {fold}: {len(cases)} phantoms and {len(real or [])} real-scan variants preprocessed in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        init = None
        if args.init_from is not None:
            init = torch.load(args.init_from / f"fold_{fold}" / "checkpoint_final.pth", map_location="cpu",
                              weights_only=False)["network_weights"]
            if args.regions and not is_region_model(args.init_from):
                init = _region_head(init)
        weights, losses = train_fold(fold, cases, plans, args.iterations, args.seed + fold, args.regions, real, init,
                                     args.minutes * 60 if args.minutes else None)
        checkpoint = {
            "network_weights": compact_weights(weights),
            "init_args": {"configuration": "3d_fullres", "fold": fold, "plans": plans, "dataset_json": dataset_json},
            "trainer_name": "nnUNetTrainer",
            "inference_allowed_mirroring_axes": (0, 1, 2),
            "current_epoch": len(losses),
            "logging": {"train_losses": [float(v) for v in losses[::10]]},
            "training": {"seed": args.seed + fold, "phantom_seeds": [seeds[0], seeds[-1]],
                         "iterations": len(losses), "seconds": round(time.perf_counter() - started, 1),
                         **({"real_variants": args.real, "real_scan": "sct_tutorial_data/t2_ms (t2 held out)",
                             "init_from": str(args.init_from)} if args.regions else {})},
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
