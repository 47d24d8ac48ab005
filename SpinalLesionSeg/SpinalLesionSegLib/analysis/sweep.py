"""Threshold sweep: how Dice and lesion detection change with the threshold applied to a soft map.

For each case (soft map + reference mask) and each threshold 0.05, 0.10, ..., 0.95, the prediction is
``soft >= threshold``, exactly the binary map ``spinal-lesion-seg predict --threshold`` writes (and the Slicer
slider shows), so the recommended threshold can be used as is; it is scored with the seed paper's
rules (:mod:`.metrics`). The recommended threshold has the highest mean lesion F1 over cases, ties broken by the
higher mean Dice, then by the lower threshold. Outputs: ``sweep.csv``, ``sweep.json`` and a ``sweep.png`` plot.
"""

from __future__ import annotations

import csv
import io as textio
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import InputError
from ..geometry import voxel_volume_mm3
from ..image_io import read_image, sha256_file, write_bytes, write_text
from .metrics import evaluate
from .report import read_mask_on, soft_values

#: Thresholds swept: 0.05 to 0.95 in steps of 0.05.
THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * n, 2) for n in range(1, 20))
#: Scores recorded per threshold (all from :class:`.metrics.Metrics`, paper rules).
SCORES = ("dice", "f1", "ppv", "recall", "pred_lesion_count")
CSV_COLUMNS = ("case", "threshold", *SCORES, "ref_lesion_count", "tp", "fp")


@dataclass(frozen=True)
class SweepResult:
    """Per-case and mean scores per threshold, and the recommended threshold."""

    cases: list[dict]
    mean: list[dict]
    recommended: dict


def sweep_case(soft: np.ndarray, ref: np.ndarray, voxel_volume_mm3: float,
               thresholds: tuple[float, ...] = THRESHOLDS) -> list[dict]:
    """Scores of ``soft >= t`` against ``ref`` (same ``[k, j, i]`` grid) for each threshold ``t``, with the
    detected (``tp``) and false-positive (``fp``) lesion counts a FROC curve needs (rates cannot give them back).

    Only the bounding box of ``ref`` and of the voxels above the lowest threshold can hold a lesion, so the work is
    done on that box: exact, and much faster for a soft map that is mostly zero.
    """
    candidate = (soft >= min(thresholds)) | ref
    if np.any(candidate):
        box = tuple(slice(int(idx.min()), int(idx.max()) + 1) for idx in np.nonzero(candidate))
        soft, ref = soft[box], ref[box]
    rows = []
    for threshold in thresholds:
        metrics = evaluate(ref, soft >= threshold, voxel_volume_mm3)
        rows.append({"threshold": threshold, **{name: getattr(metrics, name) for name in SCORES},
                     "ref_lesion_count": metrics.ref_lesion_count, "tp": metrics.tp, "fp": metrics.fp})
    return rows


def summarise(per_case: dict[str, list[dict]]) -> SweepResult:
    """Means over cases per threshold, and the recommended threshold."""
    first = next(iter(per_case.values()))
    mean = []
    for index, row in enumerate(first):
        rows = [case_rows[index] for case_rows in per_case.values()]
        mean.append({"threshold": row["threshold"],
                     **{name: float(np.mean([r[name] for r in rows])) for name in (*SCORES, "ref_lesion_count")}})
    best = max(mean, key=lambda r: (r["f1"], r["dice"], -r["threshold"]))
    recommended = {"threshold": best["threshold"], "mean_f1": best["f1"], "mean_dice": best["dice"],
                   "rule": "highest mean lesion F1, ties broken by higher mean Dice, then lower threshold"}
    cases = [{"case": name, "scores": rows} for name, rows in per_case.items()]
    return SweepResult(cases=cases, mean=mean, recommended=recommended)


def run_sweep(soft_paths: list[str], ref_paths: list[str], out_dir: str | os.PathLike[str], *,
              resample: bool = False) -> SweepResult:
    """Sweep every (soft map, reference) pair and write sweep.csv, sweep.json and sweep.png into ``out_dir``.

    A reference on another grid than its soft map is refused, or with ``resample`` resampled onto it (nearest
    neighbour, with a warning).
    """
    if len(soft_paths) != len(ref_paths):
        raise InputError(None, f"{len(soft_paths)} soft map(s) but {len(ref_paths)} reference(s): give one "
                               "reference per soft map, in the same order")
    per_case: dict[str, list[dict]] = {}
    for soft_path, ref_path in zip(soft_paths, ref_paths):
        grid = read_image(soft_path)
        soft = soft_values(grid, soft_path)
        ref = read_mask_on(ref_path, grid, f"the soft map {soft_path}", resample=resample)
        per_case[_unique_name(str(soft_path), per_case)] = sweep_case(soft, ref, voxel_volume_mm3(grid))
    result = summarise(per_case)

    out = Path(out_dir)
    rows = [{"case": "mean", **row} for row in result.mean]
    rows += [{"case": case["case"], **row} for case in result.cases for row in case["scores"]]
    write_text(_csv(rows), out / "sweep.csv")
    document = {"thresholds": list(THRESHOLDS), "binarisation": "soft >= threshold", "rules": "paper",
                "recommended": result.recommended, "mean": result.mean, "cases": result.cases,
                "inputs": [{"soft": str(s), "soft_sha256": sha256_file(s), "ref": str(r), "ref_sha256": sha256_file(r)}
                           for s, r in zip(soft_paths, ref_paths)],
                "software": {"name": "spinal-lesion-seg", "version": __version__}}
    write_text(json.dumps(document, indent=2) + "\n", out / "sweep.json")
    write_bytes(plot_sweep(result), out / "sweep.png")
    return result


def plot_sweep(result: SweepResult) -> bytes:
    """A PNG readable at a glance: mean scores against threshold (left), predicted vs reference lesion count
    (right), the recommended threshold marked on both."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    thresholds = [row["threshold"] for row in result.mean]
    best = result.recommended["threshold"]
    figure = Figure(figsize=(11, 4.5), dpi=100, layout="constrained")
    scores, counts = figure.subplots(1, 2)
    styles = {"f1": ("lesion F1", "C0", 2.5), "dice": ("Dice", "C1", 2.0), "ppv": ("lesion PPV", "C2", 1.2),
              "recall": ("lesion recall", "C3", 1.2)}
    for key, (label, colour, width) in styles.items():
        scores.plot(thresholds, [row[key] for row in result.mean], color=colour, linewidth=width, label=label,
                    marker="o", markersize=3)
    if len(result.cases) > 1:
        for case in result.cases:
            scores.plot(thresholds, [row["f1"] for row in case["scores"]], color="C0", alpha=0.2, linewidth=0.8)
    scores.axvline(best, color="black", linestyle="--", linewidth=1)
    scores.annotate(f"recommended {best:.2f}\nF1 {result.recommended['mean_f1']:.2f}, "
                    f"Dice {result.recommended['mean_dice']:.2f}", xy=(best, 0.02), xytext=(-4 if best > 0.5 else 4, 4),
                    textcoords="offset points", fontsize=9, ha="right" if best > 0.5 else "left")
    scores.set(xlabel="threshold on the soft map", ylabel="score (mean over cases)", ylim=(0, 1.02), xlim=(0, 1),
               title=f"Scores against threshold ({len(result.cases)} case{'s' if len(result.cases) > 1 else ''})")
    scores.grid(alpha=0.3)
    scores.legend(loc="lower left" if best > 0.5 else "lower right", fontsize=9)

    counts.plot(thresholds, [row["pred_lesion_count"] for row in result.mean], color="C4", marker="o",
                markersize=3, label="predicted lesions")
    counts.axhline(result.mean[0]["ref_lesion_count"], color="grey", linestyle=":", label="reference lesions")
    counts.axvline(best, color="black", linestyle="--", linewidth=1)
    counts.set(xlabel="threshold on the soft map", ylabel="lesions per case (mean)", xlim=(0, 1),
               title="Lesion count against threshold")
    counts.set_ylim(bottom=0)
    counts.grid(alpha=0.3)
    counts.legend(fontsize=9)
    buffer = textio.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _unique_name(path: str, taken: dict) -> str:
    name, suffix = path, 2
    while name in taken:
        name, suffix = f"{path}#{suffix}", suffix + 1
    return name


def _csv(rows: list[dict]) -> str:
    buffer = textio.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
