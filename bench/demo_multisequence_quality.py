"""Quality of the multi-sequence demo model with both sequences and with each one alone (issue 16, point 4).

Held-out phantoms (seeds the training never uses: training 20261127 + i, i < 40) of one anatomy in both contrasts
(``make_phantom(seed, "T2w")`` and ``make_phantom(seed, "STIR")``), 1 mm isotropic voxels, random orientations.
Each is segmented three times through the pipeline's own path for a missing sequence (:mod:`SpinalLesionSegLib.
inference.sequences`: a zero image on the reference grid, which the network reads as missing and imputes at the
feature level): T2w + STIR, T2w alone, STIR alone. Metrics follow the seed paper's rules
(SpinalLesionSegLib.analysis.metrics). Run from the repository root:

    .venv/bin/python bench/demo_multisequence_quality.py [--cases 24] [--model demo_multisequence]

Writes ``bench/results/demo_multisequence_quality.json``; the figures go into docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import SimpleITK as sitk
from SpinalLesionSegLib.analysis.metrics import Metrics, evaluate, mean_metrics
from SpinalLesionSegLib.inference.predictor import LoadedModel
from SpinalLesionSegLib.inference.sequences import align_sequences
from SpinalLesionSegLib.phantom import make_phantom

RESULTS = Path(__file__).resolve().parent / "results" / "demo_multisequence_quality.json"
FIRST_SEED = 700_000
INPUTS = {"T2w + STIR": (True, True), "T2w alone": (True, False), "STIR alone": (False, True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="demo_multisequence", help="registered name or model folder")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    model = LoadedModel(args.model, device=args.device)
    started = time.perf_counter()
    results = {name: [] for name in INPUTS}
    for seed in range(FIRST_SEED, FIRST_SEED + args.cases):
        phantoms = [make_phantom(seed, contrast, spacing=(1.0, 1.0, 1.0)) for contrast in ("T2w", "STIR")]
        truth = sitk.GetArrayViewFromImage(phantoms[0].lesion) > 0
        for name, given in INPUTS.items():
            images = [p.image if keep else None for p, keep in zip(phantoms, given)]
            reference = 0 if given[0] else 1
            aligned = align_sequences(images, [Path(f"{c}.nii.gz") for c in ("T2w", "STIR")], ["T2w", "STIR"],
                                      reference, register=False, policy="impute").images
            prediction = model.predict(aligned)
            metrics = evaluate(truth, sitk.GetArrayViewFromImage(prediction.binary) > 0, 1.0)
            results[name].append({"seed": seed, **metrics.as_dict()})
            print(f"seed {seed} {name}: Dice {metrics.dice:.3f} F1 {metrics.f1:.3f}", flush=True)
    summary = {}
    for name, cases in results.items():
        means = mean_metrics([Metrics(**{k: v for k, v in c.items() if k in Metrics.__dataclass_fields__})
                              for c in cases])
        summary[name] = {"mean_dice": means["dice"], "mean_lesion_f1": means["f1"], "cases": cases}
    record = {"model": args.model, "folds": model.folds, "device": args.device, "phantom_seeds": [
        FIRST_SEED, FIRST_SEED + args.cases - 1], "spacing_mm": 1.0, "machine": platform.processor() or
        platform.machine(), "seconds": round(time.perf_counter() - started, 1), "inputs": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    for name, row in summary.items():
        print(f"{name}: mean Dice {row['mean_dice']:.3f}, mean lesion F1 {row['mean_lesion_f1']:.3f}")


if __name__ == "__main__":
    main()
