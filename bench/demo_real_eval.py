"""The demo model on a REAL held-out scan with painted lesions, in several voxel layouts (issue 15, point 3).

Held-out scan: ``sct_testing_data/t2/t2.nii.gz`` (sagittal T2w, 1 mm) with its manual cord mask; the region-based
demo model is trained on phantoms and on the other shared scan (t2_ms) only (scripts/train_demo_model.py). Lesion
sets: synthetic T2w lesions painted into the manual cord (scripts/demo_real_data.paint_lesions) with seeds the
training never uses, three lesions per set spread along the cord, sizes and contrasts varied. Each painted scan is
then resampled onto voxel layouts as ``Testing/analysis_data.resampled_layout`` makes them (labels nearest
neighbour there, the image B-spline onto the same grid). Per case:

* cord Dice: the model's cord (``Prediction.cord``) against the manual cord (lesions included, as region ``sc``);
* lesions found: painted lesions overlapped by the predicted lesion mask; lesion Dice: whole lesion mask;
* false positives outside the cord: predicted lesions that do not touch the manual cord dilated by 3 mm
  (SpinalLesionSegLib.analysis.outside_cord, the project's own rule); all false positives: predicted lesions
  touching no painted lesion.

Aims: cord Dice >= 0.8 in every layout, every painted lesion found, lesion Dice >= 0.5, at most one false positive
outside the cord per scan. Run from the repository root:

    .venv/bin/python bench/demo_real_eval.py --model demo --model /tmp/work/demo_new/model \\
        --out bench/results/demo_real_eval.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "Testing"))

import demo_real_data
from analysis_data import resampled_layout
from SpinalLesionSegLib.analysis.lesions import label_components
from SpinalLesionSegLib.analysis.outside_cord import outside_cord_lesions
from SpinalLesionSegLib.defaults import CONNECTIVITY
from SpinalLesionSegLib.inference.predictor import LoadedModel

RESULTS = ROOT / "bench" / "results" / "demo_real_eval.json"
FIRST_SEED = 900_000  # training draws from numpy generators seeded 20261123 + ...; these are never used there

#: name -> resampled_layout arguments (None: the scan as acquired, sagittal 1 mm).
LAYOUTS: dict[str, dict | None] = {
    "sagittal_1mm_as_acquired": None,
    "sagittal_0.8x0.8x2mm": {"spacing": (0.8, 0.8, 2.0)},
    "sagittal_1mm_tilted_15deg": {"spacing": (1.0, 1.0, 1.0), "tilt_deg": 15.0},
    "axial_0.7x0.7x3mm": {"spacing": (0.7, 0.7, 3.0), "axial": True},
    "axial_0.8x0.8x2.5mm_tilted_20deg": {"spacing": (0.8, 0.8, 2.5), "tilt_deg": 20.0, "axial": True},
}


def lesion_plan(image: sitk.Image, cord: sitk.Image, seed: int) -> list[dict]:
    """Three lesions spread along the cord (lower, middle, upper third), centred on the cord, random size and
    contrast."""
    rng = np.random.default_rng(seed)
    mask = sitk.GetArrayFromImage(cord) > 0
    slices = np.nonzero(mask.any(axis=(0, 2)))[0]  # axis 1 (j) runs inferior -> superior in t2
    plan = []
    for third in range(3):
        low = slices[0] + (third * len(slices)) // 3 + 3
        high = slices[0] + ((third + 1) * len(slices)) // 3 - 3
        j = int(rng.integers(low, high))
        k, i = np.nonzero(mask[:, j, :])
        pick = int(rng.integers(len(k)))
        centre = (round((k.mean() + k[pick]) / 2), j, round((i.mean() + i[pick]) / 2))
        plan.append({"centre_lps": list(image.TransformIndexToPhysicalPoint(centre[::-1])),
                     "across_mm": float(rng.uniform(1.5, 3.0)), "along_mm": float(rng.uniform(2.0, 6.0)),
                     "contrast": float(rng.uniform(0.4, 0.85))})
    return plan


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def score(prediction, cord: np.ndarray, lesions: np.ndarray, spacing_kji: tuple[float, ...]) -> dict:
    """Metrics of one prediction against the manual cord and the numbered painted lesions (same grid)."""
    binary = sitk.GetArrayFromImage(prediction.binary) > 0
    out = {}
    if prediction.cord is not None:
        out["cord_dice"] = round(dice(sitk.GetArrayFromImage(prediction.cord) > 0, cord), 4)
    painted = [n for n in np.unique(lesions) if n > 0]
    found = [int(n) for n in painted if np.any(binary & (lesions == n))]
    labels, count = label_components(binary, CONNECTIVITY)  # as outside_cord_lesions
    touching = {int(v) for v in np.unique(labels[lesions > 0]) if v > 0}
    outside = outside_cord_lesions(binary, cord, spacing_kji)
    out.update(painted_lesions=len(painted), found=len(found),
               all_found=len(found) == len(painted), lesion_dice=round(dice(binary, lesions > 0), 4),
               predicted_lesions=int(count), false_positives=int(count - len(touching)),
               false_positives_outside_cord=len(outside.lesions) if outside else 0,
               outside_cord_volume_mm3=round(outside.volume_mm3, 1) if outside else 0.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="registered name or model folder")
    parser.add_argument("--sets", type=int, default=3, help="painted lesion sets")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--folds", type=int, nargs="+", help="folds to run (default: every fold shipped)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    image, cord = demo_real_data.load_real()["t2"]
    cases = []
    for index in range(args.sets):
        seed = FIRST_SEED + index
        plan = lesion_plan(image, cord, seed)
        painted, lesions, _ = demo_real_data.paint_lesions(image, cord, np.random.default_rng(seed), plan=plan)
        for layout, kwargs in LAYOUTS.items():
            if kwargs is None:
                grid_cord, grid_lesions, grid_image = cord, lesions, painted
            else:
                grid_cord = resampled_layout(cord, **kwargs)
                grid_lesions = resampled_layout(lesions, **kwargs)
                grid_image = sitk.Resample(painted, grid_cord, sitk.Transform(), sitk.sitkBSpline, 0.0,
                                           sitk.sitkFloat32)
            cases.append({"set": index, "seed": seed, "layout": layout, "image": grid_image,
                          "cord": sitk.GetArrayFromImage(grid_cord) > 0,
                          "lesions": sitk.GetArrayFromImage(grid_lesions),
                          "spacing_kji": tuple(grid_cord.GetSpacing()[::-1]),
                          "plan": plan})

    results = {}
    for name in args.model:
        model = LoadedModel(name, device=args.device, folds=args.folds)
        started = time.perf_counter()
        per_case = []
        for case in cases:
            prediction = model.predict(case["image"])
            metrics = score(prediction, case["cord"], case["lesions"], case["spacing_kji"])
            per_case.append({"set": case["set"], "seed": case["seed"], "layout": case["layout"],
                             "size": list(case["image"].GetSize()),
                             "spacing_mm": [round(s, 3) for s in case["image"].GetSpacing()], **metrics})
            print(f"{name} set {case['set']} {case['layout']}: {metrics}", flush=True)
        per_layout = {}
        for layout in LAYOUTS:
            rows = [c for c in per_case if c["layout"] == layout]
            summary = {"cases": len(rows),
                       "lesions_found": f"{sum(r['found'] for r in rows)}/{sum(r['painted_lesions'] for r in rows)}",
                       "mean_lesion_dice": round(float(np.mean([r["lesion_dice"] for r in rows])), 3),
                       "max_fp_outside_cord": max(r["false_positives_outside_cord"] for r in rows),
                       "mean_false_positives": round(float(np.mean([r["false_positives"] for r in rows])), 2)}
            if all("cord_dice" in r for r in rows):
                summary["mean_cord_dice"] = round(float(np.mean([r["cord_dice"] for r in rows])), 3)
                summary["min_cord_dice"] = round(float(np.min([r["cord_dice"] for r in rows])), 3)
            summary["aims_met"] = bool(summary.get("min_cord_dice", 0) >= 0.8
                                       and all(r["all_found"] for r in rows)
                                       and summary["mean_lesion_dice"] >= 0.5
                                       and summary["max_fp_outside_cord"] <= 1)
            per_layout[layout] = summary
        results[str(name)] = {"folds": model.folds, "device": model.device.name,
                              "seconds": round(time.perf_counter() - started, 1),
                              "aims_met_every_layout": all(s["aims_met"] for s in per_layout.values()),
                              "per_layout": per_layout, "per_case": per_case}
        print(json.dumps({k: v for k, v in results[str(name)].items() if k != "per_case"}, indent=1), flush=True)
    document = {"held_out_scan": "sct_testing_data/t2/t2.nii.gz + t2_seg-manual.nii.gz (never used in training)",
                "lesion_sets": args.sets, "first_seed": FIRST_SEED, "layouts": LAYOUTS,
                "lesion_plans": {c["seed"]: c["plan"] for c in cases},
                "aims": {"cord_dice_min": 0.8, "every_painted_lesion_found": True, "lesion_dice": 0.5,
                         "fp_outside_cord_per_scan_max": 1},
                "models": results, "machine": platform.platform(),
                "date": time.strftime("%Y-%m-%d")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
