"""Quality of the bundled demo model on held-out phantoms (issue 3: Dice >= 0.7 and lesion-wise F1 >= 0.8).

The phantoms use seeds the training script never uses (training: 20261123 + 1000 * fold + i, i < 48) and random
orientations, in two sets: 1 mm isotropic voxels (the resolution the published models work at), and the phantoms'
default random spacing (0.5-1 mm in-plane, 1-3 mm slices, as in the training set), where thick slices make small
lesions partial-volume and ground truth itself ambiguous. Metrics follow the seed paper's rules
(SpinalLesionSegLib.analysis.metrics). Run from the repository root:

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
from SpinalLesionSegLib.analysis.metrics import Metrics, evaluate, mean_metrics
from SpinalLesionSegLib.inference.predictor import LoadedModel
from SpinalLesionSegLib.phantom import make_phantom

RESULTS = Path(__file__).resolve().parent / "results" / "demo_model_quality.json"
FIRST_SEED = 500_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="demo", help="registered name or model folder (default: the bundle)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    model = LoadedModel(args.model, device=args.device)
    started = time.perf_counter()
    sets = {}
    for name, spacing in (("isotropic_1mm", (1.0, 1.0, 1.0)), ("random_spacing", None)):
        cases = []
        for seed in range(FIRST_SEED, FIRST_SEED + args.cases):
            phantom = make_phantom(seed, contrast="T2w", spacing=spacing)
            prediction = model.predict(phantom.image)
            truth = sitk.GetArrayViewFromImage(phantom.lesion) > 0
            predicted = sitk.GetArrayViewFromImage(prediction.binary) > 0
            metrics = evaluate(truth, predicted, float(np.prod(phantom.image.GetSpacing())))
            cases.append({"seed": seed, "size": list(phantom.image.GetSize()),
                          "spacing_mm": [round(s, 3) for s in phantom.image.GetSpacing()], **metrics.as_dict()})
            if prediction.cord is not None:  # region-based demo model (issue 15): its cord against the phantom's
                cord_truth = sitk.GetArrayViewFromImage(phantom.cord) > 0
                cord_pred = sitk.GetArrayViewFromImage(prediction.cord) > 0
                cases[-1]["cord_dice"] = 2 * float((cord_truth & cord_pred).sum()) / max(
                    1, int(cord_truth.sum()) + int(cord_pred.sum()))
            print(f"{name} seed {seed}: Dice {metrics.dice:.3f} F1 {metrics.f1:.3f} "
                  f"(ref {metrics.ref_lesion_count}, pred {metrics.pred_lesion_count})", flush=True)
        means = mean_metrics([Metrics(**{k: v for k, v in c.items() if k in Metrics.__dataclass_fields__})
                              for c in cases])
        tp, fp, fn = (sum(c[key] for c in cases) for key in ("tp", "fp", "fn"))
        sets[name] = {"mean": means, "pooled_lesion_f1": tp / (tp + (fp + fn) / 2) if tp + fp + fn else 1.0,
                      "meets_targets": means["dice"] >= 0.7 and means["f1"] >= 0.8, "per_case": cases}
        if all("cord_dice" in c for c in cases):
            sets[name]["mean_cord_dice"] = float(np.mean([c["cord_dice"] for c in cases]))
        print(f"{name}: mean Dice {means['dice']:.3f}, mean lesion F1 {means['f1']:.3f} over {args.cases} phantoms")
    result = {"model": str(args.model), "folds": model.folds, "device": model.device.name, "cases_per_set": args.cases,
              "first_seed": FIRST_SEED, "targets": {"dice": 0.7, "lesion_f1": 0.8}, "sets": sets,
              "seconds": round(time.perf_counter() - started, 1), "machine": platform.platform()}
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
