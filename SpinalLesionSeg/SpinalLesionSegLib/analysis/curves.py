"""Dataset curves behind ``sweep --bids``: lesion detection counts (FROC), soft-map calibration, subject bootstrap.

* **FROC-style curve**: one point per threshold of :data:`.sweep.THRESHOLDS`, lesion sensitivity (detected reference
  lesions / reference lesions, pooled over scans) against the mean number of false-positive predicted lesions per
  scan, both by the seed paper's rules (:func:`.metrics.evaluate`).
* **Calibration**: voxels binned by predicted probability (:data:`CALIBRATION_EDGES`) against the fraction of them
  inside the manual lesion mask. A calibrated map has points on the diagonal.
* **Bootstrap**: subjects drawn with replacement (a subject's scans are not independent of one another, so the
  subject is the unit), seeded; each resample is a weighted mean of the per-image numbers already computed, so a
  thousand resamples take milliseconds and no image is read again.
"""

from __future__ import annotations

import io as textio
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # matplotlib loads inside the plotting functions only, so that importing this module stays fast
    from matplotlib.figure import Figure

#: Calibration bin edges: [0.05, 0.1), [0.1, 0.2), ..., [0.8, 0.9), [0.9, 1.0]. Voxels below 0.05 are counted
#: apart (``below``): they are the background, millions of voxels that say nothing about lesions and would swamp
#: the first bin; the manual lesion voxels among them (lesions the map missed entirely) are reported with them.
CALIBRATION_EDGES: tuple[float, ...] = (0.05, *(round(0.1 * n, 1) for n in range(1, 11)))
#: Bootstrap defaults: resamples, seed, and the percentiles of the 95% interval.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
INTERVAL_PERCENTILES = (2.5, 97.5)
#: The FROC plot's false-positive axis turns logarithmic above 1 when a point lies beyond this many per scan.
FROC_LINEAR_LIMIT = 5.0
#: Threshold labels on the FROC plot closer than this (pixels) to the previous one are left out.
LABEL_SPACING_PX = 24.0


def calibration_counts(soft: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``[[voxels, sum of probabilities, voxels in the manual mask], ...]``: row 0 for the voxels below
    ``CALIBRATION_EDGES[0]``, then one row per calibration bin. Counts, so that images add up exactly."""
    bins = np.searchsorted(np.asarray(CALIBRATION_EDGES[:-1]), soft.ravel(), side="right")
    size = len(CALIBRATION_EDGES)
    return np.stack([np.bincount(bins, minlength=size).astype(np.float64),
                     np.bincount(bins, weights=soft.ravel(), minlength=size),
                     np.bincount(bins, weights=ref.ravel().astype(np.float64), minlength=size)], axis=1)


def calibration_curve(counts: np.ndarray) -> dict:
    """The calibration document from summed :func:`calibration_counts`: per bin its probability range, voxel count,
    mean predicted probability and observed fraction in the manual mask (``None`` for an empty bin); the voxels
    below the first edge; and the expected calibration error, the voxel-weighted mean of
    ``|observed - predicted|`` over the bins (0 = perfectly calibrated)."""
    bins = []
    for index, (voxels, total, inside) in enumerate(counts[1:]):
        bins.append({"low": CALIBRATION_EDGES[index], "high": CALIBRATION_EDGES[index + 1], "voxels": int(voxels),
                     "mean_probability": float(total / voxels) if voxels else None,
                     "observed_fraction": float(inside / voxels) if voxels else None})
    filled = [row for row in bins if row["voxels"]]
    voxels = sum(row["voxels"] for row in filled)
    error = sum(row["voxels"] * abs(row["observed_fraction"] - row["mean_probability"]) for row in filled)
    return {"edges": list(CALIBRATION_EDGES), "bins": bins,
            "below": {"high": CALIBRATION_EDGES[0], "voxels": int(counts[0, 0]),
                      "in_manual_mask": int(counts[0, 2])},
            "expected_calibration_error": float(error / voxels) if voxels else None}


def subject_weights(subjects: list[str], resamples: int, seed: int) -> np.ndarray:
    """``w[r, n]``: how many times image ``n`` enters resample ``r`` when the distinct subjects are drawn with
    replacement (an image counts once per draw of its subject)."""
    names = sorted(set(subjects))
    draws = np.random.default_rng(seed).integers(0, len(names), size=(resamples, len(names)))
    per_subject = np.zeros((resamples, len(names)))
    np.add.at(per_subject, (np.arange(resamples)[:, None], draws), 1.0)
    membership = np.array([[subject == name for subject in subjects] for name in names], dtype=np.float64)
    return per_subject @ membership


def bootstrap_intervals(weights: np.ndarray, per_image: dict[str, np.ndarray], detected: np.ndarray,
                        false_positives: np.ndarray, ref_lesions: np.ndarray) -> dict[str, list]:
    """95% percentile intervals per threshold, ``{name: [[low, high] or None, ...]}``.

    ``per_image[name]`` (images x thresholds) are averaged over the images of each resample (Dice, F1: the dataset
    means); ``lesion_sensitivity`` pools detected over reference lesions (resamples without a reference lesion are
    left out; ``None`` when no resample has one) and ``fp_per_scan`` averages the false positives per image.
    """
    images = weights.sum(axis=1, keepdims=True)
    values = {name: weights @ table / images for name, table in per_image.items()}
    lesions = (weights @ ref_lesions)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        values["lesion_sensitivity"] = np.where(lesions > 0, (weights @ detected) / lesions, np.nan)
    values["fp_per_scan"] = weights @ false_positives / images
    return {name: [_interval(column) for column in table.T] for name, table in values.items()}


def _interval(samples: np.ndarray) -> list[float] | None:
    kept = samples[np.isfinite(samples)]
    return [float(v) for v in np.percentile(kept, INTERVAL_PERCENTILES)] if kept.size else None


def plot_froc(points: list[dict], marked: dict[str, float]) -> bytes:
    """A PNG of the FROC-style curve: lesion sensitivity against false-positive lesions per scan, one point per
    threshold with its 95% bootstrap intervals (light bars), the thresholds written beside the points (a range
    where consecutive thresholds give the same point), and the recommended thresholds (``marked``: label ->
    threshold) ringed."""
    figure, axes = _figure((7, 5.5))
    shown = [p for p in points if p["lesion_sensitivity"] is not None]
    x = np.array([p["fp_per_scan"] for p in shown])
    y = np.array([p["lesion_sensitivity"] for p in shown])
    errors = [_error_bars(shown, key, values) for key, values in (("fp_per_scan", x), ("lesion_sensitivity", y))]
    axes.errorbar(x, y, xerr=errors[0], yerr=errors[1], color="C0", ecolor="lightsteelblue", elinewidth=1.5,
                  marker="o", markersize=4, linewidth=1.5, capsize=3, label="thresholds 0.05..0.95 (95% CI)")
    for (label, threshold), colour in zip(marked.items(), ("C3", "C2")):
        point = next((p for p in shown if p["threshold"] == threshold), None)
        if point is not None:
            axes.plot(point["fp_per_scan"], point["lesion_sensitivity"], "o", markersize=13, markerfacecolor="none",
                      markeredgecolor=colour, markeredgewidth=2, label=f"{label} {threshold:.2f}")
    widest = float(x.max(initial=0.0))
    if widest > FROC_LINEAR_LIMIT:  # hundreds of false positives at 0.05 would squash the useful corner
        axes.set_xscale("symlog", linthresh=1.0)
    axes.set(xlabel="false-positive lesions per scan (mean" + ("; log scale above 1)" if widest > FROC_LINEAR_LIMIT
                                                               else ")"),
             ylabel="lesion sensitivity (detected / reference)", ylim=(-0.03, 1.08),
             title="Lesion detection against false positives (FROC-style)")
    axes.set_xlim(left=-0.05 * min(max(1.0, widest), FROC_LINEAR_LIMIT),
                  right=widest * 2.5 if widest > FROC_LINEAR_LIMIT else None)  # room for the last labels
    if not shown:
        axes.set_xlim(-0.05, 1.0)
        axes.text(0.5, 0.5, "no reference lesion: sensitivity undefined", ha="center", transform=axes.transAxes)
    _label_thresholds(axes, shown, x, y)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=9)
    return _png(figure)


def _label_thresholds(axes: Any, points: list[dict], x: np.ndarray, y: np.ndarray) -> None:
    """Write the thresholds beside the FROC points: one label for consecutive thresholds on the same point
    (``0.55-0.60``), none for a point closer than :data:`LABEL_SPACING_PX` to the last labelled one (unreadable)."""
    groups: list[tuple[list[float], float, float]] = []
    for point, px, py in zip(points, x, y):
        if groups and groups[-1][1:] == (px, py):
            groups[-1][0].append(point["threshold"])
        else:
            groups.append(([point["threshold"]], px, py))
    axes.autoscale_view()  # final limits, so that distances on screen are known
    last = None
    for thresholds, px, py in groups:
        here = axes.transData.transform((px, py))
        if last is not None and np.hypot(*(here - last)) < LABEL_SPACING_PX:
            continue
        last = here
        text = f"{thresholds[0]:.2f}" + (f"-{thresholds[-1]:.2f}" if len(thresholds) > 1 else "")
        axes.annotate(text, (px, py), xytext=(6, 3), textcoords="offset points", fontsize=8, color="dimgrey")


def plot_calibration(calibration: dict) -> bytes:
    """A PNG of the calibration: observed fraction in the manual mask against mean predicted probability per bin,
    with the diagonal of perfect calibration (left), and the voxel count per bin on a log scale (right)."""
    figure, (curve, counts) = _figure((11, 4.8), columns=2)
    filled = [row for row in calibration["bins"] if row["voxels"]]
    curve.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    curve.plot([r["mean_probability"] for r in filled], [r["observed_fraction"] for r in filled], color="C0",
               marker="o", label="soft maps")
    ece = calibration["expected_calibration_error"]
    curve.set(xlabel="predicted probability (bin mean)", ylabel="fraction of voxels in the manual mask",
              xlim=(0, 1), ylim=(-0.02, 1.02), aspect="equal",
              title="Calibration" + (f" (ECE {ece:.3f})" if ece is not None else ""))
    curve.grid(alpha=0.3)
    curve.legend(loc="upper left", fontsize=9)
    lows = [row["low"] for row in calibration["bins"]]
    widths = [row["high"] - row["low"] for row in calibration["bins"]]
    counts.bar(lows, [row["voxels"] for row in calibration["bins"]], width=widths, align="edge", color="C0",
               edgecolor="white", alpha=0.8, log=bool(filled))  # log scale: counts span decades
    below = calibration["below"]
    counts.set(xlabel="predicted probability", ylabel="voxels", xlim=(0, 1),
               title=f"Voxels per bin ({below['voxels']} below {below['high']:g}, "
                     f"{below['in_manual_mask']} of them in the mask)")
    if not filled:
        counts.set_ylim(0, 1)
        counts.text(0.5, 0.5, f"no voxel at or above {below['high']:g}", ha="center", transform=counts.transAxes)
    counts.grid(alpha=0.3, axis="y")
    return _png(figure)


def _error_bars(points: list[dict], key: str, values: np.ndarray) -> np.ndarray:
    """Distances from each value to its interval's ends (matplotlib's ``xerr``/``yerr``; 0 without interval)."""
    low = np.array([p["ci95"][key][0] if p["ci95"][key] else v for p, v in zip(points, values)])
    high = np.array([p["ci95"][key][1] if p["ci95"][key] else v for p, v in zip(points, values)])
    return np.clip(np.vstack([values - low, high - values]), 0.0, None)


def _figure(size: tuple[float, float], columns: int = 1) -> tuple[Figure, Any]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=100, layout="constrained")
    return figure, figure.subplots(1, columns)


def _png(figure: Figure) -> bytes:
    buffer = textio.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
