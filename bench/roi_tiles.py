"""What ``--roi-tiles centred`` changes against ``exact`` (issue 17, the interactive path), with a trained model.

For each input, the bundled ``demo`` model (both folds, fp32, in-process, loaded once) predicts inside the cord
grown by 10 mm (the panel's margin) twice: ``exact`` (the whole image's tiles that touch the ROI: inside it the
whole-image values) and ``centred`` (tiles laid over the ROI). Recorded per input: tile counts, network time, and
inside the ROI the soft-map difference (max, 99.99th and 99th percentile), mask Dice, voxel counts and whether the
lesions agree (every lesion of each mask overlaps one of the other, 18-connectivity).

Inputs: the shared sagittal T2w with its manual cord (``sct_testing_data/t2``), the axial T2w of a patient with MS
(``sct_tutorial_data/t2_ms``; no cord mask is shipped: the box chosen by eye in ``bench/inference.py``) and
phantoms with known lesions and cords (seeds 900000+, 1 mm, and their native 0.6 x 0.6 x 2.4 mm).

    .venv/bin/python bench/roi_tiles.py            # about 2 minutes on the 2-core machine

Writes ``bench/results/roi_tiles_cpu.json``; figures in docs/performance.md.
"""

from __future__ import annotations

import json
import time

import numpy as np
import SimpleITK as sitk
from speed_fidelity import DATA, RESULTS, lesions_agree  # also puts the package on sys.path

MARGIN_MM = 10.0


def cases() -> dict[str, tuple[sitk.Image, object]]:
    """Each input and its ROI box (cord + 10 mm, or the t2_ms box of bench/inference.py)."""
    from inference import T2MS_CORD_10MM_BOX_IJK, roi_box

    from SpinalLesionSegLib.inference.roi import box_from_corners, box_from_mask
    from SpinalLesionSegLib.phantom import make_phantom

    t2 = DATA / "sct_testing_data" / "t2"
    axial = DATA / "sct_tutorial_data" / "t2_ms" / "t2.nii.gz"
    box = roi_box(axial, T2MS_CORD_10MM_BOX_IJK)
    found = {"t2 (sagittal, real)": (sitk.ReadImage(str(t2 / "t2.nii.gz")), box_from_mask(
                 sitk.ReadImage(str(t2 / "t2_seg-manual.nii.gz")), MARGIN_MM)),
             "t2_ms (axial, real)": (sitk.ReadImage(str(axial)), box_from_corners(box.ras_min_mm, box.ras_max_mm))}
    for seed in range(900_000, 900_004):
        for label, spacing in (("1 mm", (1.0, 1.0, 1.0)), ("native", None)):
            phantom = make_phantom(seed, "T2w", **({"spacing": spacing} if spacing else {}))
            found[f"phantom {seed} {label}"] = (phantom.image, box_from_mask(phantom.cord, MARGIN_MM))
    return found


def compare(exact: object, centred: object, inside: np.ndarray) -> dict:
    """Soft-map difference, Dice and lesion agreement inside the ROI."""
    a, b = (sitk.GetArrayFromImage(p.soft).astype(np.float64)[inside] for p in (exact, centred))
    diff = np.abs(a - b)
    ma, mb = ((sitk.GetArrayFromImage(p.binary) > 0) & inside for p in (exact, centred))
    dice = 1.0 if not (ma.any() or mb.any()) else 2 * (ma & mb).sum() / (ma.sum() + mb.sum())
    return {"soft_abs_diff": {"max": float(diff.max()), "p99.99": float(np.percentile(diff, 99.99)),
                              "p99": float(np.percentile(diff, 99))},
            "dice": float(dice), "voxels": [int(ma.sum()), int(mb.sum())], "same_lesions": lesions_agree(ma, mb)}


def main() -> None:
    import torch

    from SpinalLesionSegLib.inference.predictor import LoadedModel
    from SpinalLesionSegLib.inference.roi import roi_mask

    model = LoadedModel("demo", device="cpu")
    rows = {}
    for name, (image, box) in cases().items():
        runs = {tiles: model.predict(image, roi=box, roi_tiles=tiles) for tiles in ("exact", "centred")}
        row = compare(runs["exact"], runs["centred"], roi_mask(image, box))
        row.update({"tiles": {t: [p.tiles.tiles, p.tiles.whole_image_tiles] for t, p in runs.items()},
                    "network_s": {t: round(p.timings_s["predict_s"], 2) for t, p in runs.items()}})
        rows[name] = row
        print(name, json.dumps(row), flush=True)
    record = {"model": "demo (folds 0, 1), fp32", "roi": f"cord + {MARGIN_MM:g} mm", "torch": torch.__version__,
              "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d"), "inputs": rows,
              "same_lesions_everywhere": all(r["same_lesions"] for r in rows.values()),
              "worst": {"max": max(r["soft_abs_diff"]["max"] for r in rows.values()),
                        "p99.99": max(r["soft_abs_diff"]["p99.99"] for r in rows.values()),
                        "dice": min(r["dice"] for r in rows.values())}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "roi_tiles_cpu.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["worst"]), "same lesions everywhere:", record["same_lesions_everywhere"])


if __name__ == "__main__":
    main()
