"""Train the bundled multi-sequence demo model (issue 16, point 4): T2w + STIR with missing-sequence imputation.

The network is this project's :class:`SpinalLesionSegLib.inference.imputation_net.MeanImputationUNet` (one encoder
per sequence, the features of a missing sequence replaced by the mean of the available ones' at every resolution,
as Walsh et al. 2025 impute them), with the demo model's plans otherwise (``train_demo_model.make_plans``: 4 stages,
14-112 features, 1 mm, nnunetv2's ``DefaultPreprocessor``, Dice + cross-entropy). Training data: synthetic phantoms
of the same anatomy and lesions in both contrasts (``make_phantom(seed, "T2w")`` and ``make_phantom(seed, "STIR")``
share everything but the appearance), with **sequence dropout**: a patch loses its T2w or its STIR (all zeros, as
the pipeline feeds a missing sequence) a quarter of the time each, so the network learns to work from either alone.
Lesion-only labels (background 0, lesion 1). Seeded; one fold; on the CPU:

    python scripts/train_multisequence_demo.py            # writes SpinalLesionSeg/Resources/Models/demo_multisequence
    python scripts/train_multisequence_demo.py --iterations 50 --out /tmp/ms   # a quick smoke run

Its quality with both sequences and with each alone is measured by ``bench/demo_multisequence_quality.py``.
"""

from __future__ import annotations

import argparse
import copy
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
sys.path.insert(0, str(ROOT / "scripts"))

from SpinalLesionSegLib.geometry import reorient, sct_to_axcodes  # noqa: E402
from SpinalLesionSegLib.phantom import make_phantom  # noqa: E402
from train_demo_model import (  # noqa: E402
    DATASET_JSON,
    ORIENTATION_SCT,
    compact_weights,
    make_plans,
    random_patch,
    write_checksums,
)

CHANNELS = ("T2w", "STIR")
NETWORK = "SpinalLesionSegLib.inference.imputation_net.MeanImputationUNet"
#: Probability that a training patch loses each one sequence (never both).
DROPOUT = 0.25
DATASET = {**DATASET_JSON, "name": "SpinalLesionSegDemoMultiSequence",
           "channel_names": {str(n): name for n, name in enumerate(CHANNELS)},
           "description": "Demo multi-sequence MS lesion model (T2w + STIR, missing sequences imputed at the feature "
                          "level) trained on SpinalLesionSeg's synthetic phantoms. Not for clinical use."}


def make_multi_plans(n_training: int) -> dict:
    """The demo plans for two channels and the mean-imputation network."""
    plans = make_plans(n_training)
    plans["dataset_name"] = "Dataset901_SpinalLesionSegDemoMultiSequence"
    configuration = plans["configurations"]["3d_fullres"]
    for key in ("normalization_schemes", "use_mask_for_norm"):
        configuration[key] = configuration[key] * len(CHANNELS)
    configuration["architecture"]["network_class_name"] = NETWORK
    properties = plans["foreground_intensity_properties_per_channel"]
    plans["foreground_intensity_properties_per_channel"] = {str(n): properties["0"] for n in range(len(CHANNELS))}
    plans["experiment_planner_used"] = "hand-written for the multi-sequence demo model (scripts/train_multisequence_demo.py)"
    return plans


def preprocess(seed: int, plans: dict) -> tuple[np.ndarray, np.ndarray]:
    """One phantom in both contrasts, reoriented to the model orientation and preprocessed as at inference."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(plans)
    target = sct_to_axcodes(ORIENTATION_SCT)
    phantoms = [make_phantom(seed, contrast) for contrast in CHANNELS]
    images = [reorient(sitk.Cast(p.image, sitk.sitkFloat32), target) for p in phantoms]
    data = np.stack([sitk.GetArrayFromImage(image) for image in images])
    seg = (sitk.GetArrayFromImage(reorient(phantoms[0].lesion, target)) > 0).astype(np.int8)[None]
    data, seg, _ = DefaultPreprocessor(verbose=False).run_case_npy(
        data, seg, {"spacing": list(images[0].GetSpacing())[::-1]}, manager, manager.get_configuration("3d_fullres"),
        DATASET)
    return data.astype(np.float32), seg.astype(np.int64)


def drop_sequence(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The patch with one sequence zeroed (a quarter of the time each), as a missing sequence reaches the network."""
    draw = rng.random()
    if draw < 2 * DROPOUT:
        x = x.copy()
        x[0 if draw < DROPOUT else 1] = 0.0
    return x


def train(cases: list, plans: dict, iterations: int, seed: int) -> tuple[dict, list[float]]:
    """One fold: one-cycle learning rate, 2 patches per iteration (two thirds centred on a lesion)."""
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    arch = plans["configurations"]["3d_fullres"]["architecture"]
    network = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                     len(CHANNELS), 2, allow_init=True, deep_supervision=False)
    loss_fn = DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                             weight_ce=1, weight_dice=1, dice_class=MemoryEfficientSoftDiceLoss)
    optimizer = torch.optim.AdamW(network.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=iterations, pct_start=0.1)
    batch = plans["configurations"]["3d_fullres"]["batch_size"]
    network.train()
    losses, started = [], time.perf_counter()
    for iteration in range(iterations):
        patches = [random_patch(cases[rng.integers(len(cases))], rng, foreground=rng.random() < 0.67)
                   for _ in range(batch)]
        x = torch.from_numpy(np.stack([drop_sequence(p[0], rng) for p in patches])).float()
        y = torch.from_numpy(np.stack([p[1] for p in patches]))
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(network(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 12)
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if iteration % 50 == 0 or iteration == iterations - 1:
            print(f"iteration {iteration + 1}/{iterations} loss {np.mean(losses[-50:]):.4f} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    return copy.deepcopy(network.state_dict()), losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path,
                        default=ROOT / "SpinalLesionSeg" / "Resources" / "Models" / "demo_multisequence")
    parser.add_argument("--cases", type=int, default=40, help="phantoms (each in both contrasts)")
    parser.add_argument("--iterations", type=int, default=800)
    parser.add_argument("--seed", type=int, default=20261127)
    args = parser.parse_args()
    plans = make_multi_plans(args.cases)
    started = time.perf_counter()
    seeds = [args.seed + n for n in range(args.cases)]
    cases = [preprocess(seed, plans) for seed in seeds]
    print(f"{len(cases)} phantoms in {len(CHANNELS)} contrasts preprocessed in {time.perf_counter() - started:.0f} s",
          flush=True)
    weights, losses = train(cases, plans, args.iterations, args.seed)
    tmp = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "fold_0").mkdir(parents=True)
    (tmp / "dataset.json").write_text(json.dumps({**DATASET, "numTraining": args.cases}, indent=2))
    (tmp / "plans.json").write_text(json.dumps(plans, indent=2))
    torch.save({"network_weights": compact_weights(weights),
                "init_args": {"configuration": "3d_fullres", "fold": 0, "plans": plans, "dataset_json": DATASET},
                "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2),
                "current_epoch": len(losses), "logging": {"train_losses": [float(v) for v in losses[::10]]},
                "training": {"seed": args.seed, "phantom_seeds": [seeds[0], seeds[-1]], "iterations": len(losses),
                             "sequence_dropout": DROPOUT, "seconds": round(time.perf_counter() - started, 1)}},
               tmp / "fold_0" / "checkpoint_final.pth")
    write_checksums(tmp)
    shutil.rmtree(args.out, ignore_errors=True)
    tmp.rename(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
