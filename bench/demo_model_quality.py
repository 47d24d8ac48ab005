"""Quality of the bundled demo model on held-out phantoms (issue 3: Dice >= 0.7 and lesion-wise F1 >= 0.8).

The phantoms use seeds the training script never uses (training: 20261123 + 1000 * fold + i, i < 48), with the
default random spacing and orientation, so the figures also cover reorientation and resampling. Metrics follow the
seed paper's rules (SpinalLesionSegLib.metrics). Run from the repository root:

    .venv/bin/python bench/demo_model_quality.py [--cases 24] [--device cpu]

Writes ``bench/results/demo_model_quality.json``; the figures go into docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from SpinalLesionSegLib.metrics import Metrics, evaluate, mean_metrics
from SpinalLesionSegLib.phantom import make_phantom
from SpinalLesionSegLib.predict import LoadedModel

RESULTS = Path(__file__).resolve().parent / "results" / "demo_model_quality.json"
FIRST_SEED = 500_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    model = LoadedModel("demo", device=args.device)
    cases = []
    started = time.perf_counter()
    for seed in range(FIRST_SEED, FIRST_SEED + args.cases):
        phantom = make_phantom(seed, contrast="T2w")
        prediction = model.predict(phantom.image)
        truth = sitk.GetArrayViewFromImage(phantom.lesion) > 0
        predicted = sitk.GetArrayViewFromImage(prediction.binary) > 0
        metrics = evaluate(truth, predicted, float(np.prod(phantom.image.GetSpacing())))
        cases.append({"seed": seed, "size": list(phantom.image.GetSize()),
                      "spacing_mm": [round(s, 3) for s in phantom.image.GetSpacing()], **metrics.as_dict()})
        print(f"seed {seed}: Dice {metrics.dice:.3f} F1 {metrics.f1:.3f} "
              f"(ref {metrics.ref_lesion_count}, pred {metrics.pred_lesion_count})", flush=True)
    means = mean_metrics([Metrics(**{k: v for k, v in c.items() if k in Metrics.__dataclass_fields__})
                          for c in cases])
    pooled_tp = sum(c["tp"] for c in cases)
    pooled = {"f1": pooled_tp / (pooled_tp + (sum(c["fp"] for c in cases) + sum(c["fn"] for c in cases)) / 2)}
    result = {"model": "demo", "folds": model.folds, "device": model.device.name, "cases": args.cases,
              "first_seed": FIRST_SEED, "mean": means, "pooled_lesion_f1": pooled["f1"],
              "targets": {"dice": 0.7, "lesion_f1": 0.8},
              "seconds": round(time.perf_counter() - started, 1), "machine": platform.platform(),
              "per_case": cases}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"mean Dice {means['dice']:.3f}, mean lesion F1 {means['f1']:.3f}, pooled lesion F1 {pooled['f1']:.3f} "
          f"over {args.cases} held-out phantoms -> {RESULTS}")


if __name__ == "__main__":
    main()
