"""Threshold tuning on a corrected BIDS dataset: ``spinal-lesion-seg sweep --bids ROOT``.

Researchers pre-label a dataset with ``batch`` (soft maps ``S_lesion_soft.nii.gz`` in our derivatives folder),
correct the lesion masks in Slicer (``derivatives/labels/.../S_lesion-manual.nii.gz``; :mod:`..bids` holds these
conventions) and want the threshold whose binary map best reproduces their corrections. Every image with both
files is a pair; each pair is scored at every threshold by the existing sweep (:func:`.sweep.sweep_case`, the seed
paper's rules) and counted for the curves of :mod:`.curves`. Reported, over the dataset, per subject (all its
images and sessions) and per image:

* the threshold with the highest mean lesion F1 (the existing sweep's rule, :func:`.sweep.summarise`) and the one
  with the highest mean Dice (:data:`DICE_RULE`); means are over images, as in the existing sweep;
* per threshold, pooled lesion sensitivity and mean false-positive lesions per scan: the FROC-style curve;
* the calibration of the soft maps (voxels pooled over the dataset);
* for the dataset, 95% bootstrap intervals over subjects of Dice, F1 and the FROC points at every threshold. The
  recommended thresholds stay those chosen on the whole dataset: the intervals leave out the uncertainty of the
  choice itself.

Writes into the output folder (default ``ROOT/derivatives/spinal-lesion-seg/sweep``), each file atomically and
``sweep.json`` last, so that its presence means the set is complete: ``sweep.csv``, ``sweep.png`` (the existing
scores plot), ``froc.png``, ``calibration.png``, ``sweep.json``.
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
from ..bids import BidsImage, find_images, pipeline_dir
from ..errors import InputError
from ..geometry import voxel_volume_mm3
from ..image_io import read_image, sha256_file, write_bytes, write_text
from ..outputs import writable_folder
from .curves import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    bootstrap_intervals,
    calibration_counts,
    calibration_curve,
    plot_calibration,
    plot_froc,
    subject_weights,
)
from .report import read_mask_on, soft_values
from .sweep import SCORES, THRESHOLDS, SweepResult, plot_sweep, summarise, sweep_case

#: What follows an image's stem in the name of the soft map ``predict`` (and so ``batch``) writes.
SOFT_MAP = "lesion_soft"
#: The output folder's name under ``ROOT/derivatives/spinal-lesion-seg`` when none is given.
OUTPUT_FOLDER = "sweep"
DICE_RULE = "highest mean Dice, ties broken by higher mean lesion F1, then lower threshold"
#: Per-threshold numbers that get a bootstrap interval (dataset rows only).
INTERVALS = ("dice", "f1", "lesion_sensitivity", "fp_per_scan")
CSV_COLUMNS = ("scope", "name", "threshold", "images", *SCORES, "ref_lesion_count", "lesion_sensitivity",
               "fp_per_scan", "detected_lesions_total", "false_positive_lesions_total", "ref_lesions_total",
               *(f"{name}_ci95_{end}" for name in INTERVALS for end in ("low", "high")))


@dataclass(frozen=True)
class Pair:
    """An image with both a soft map and a manual lesion mask."""

    image: BidsImage
    soft: Path
    manual: Path


@dataclass(frozen=True)
class Pairing:
    """The dataset's images sorted by which of the two files they have."""

    pairs: list[Pair]
    soft_only: list[BidsImage]
    manual_only: list[BidsImage]
    neither: list[BidsImage]

    def counts(self) -> dict[str, int]:
        return {"images": len(self.pairs) + len(self.soft_only) + len(self.manual_only) + len(self.neither),
                "paired": len(self.pairs), "soft_only": len(self.soft_only), "manual_only": len(self.manual_only),
                "neither": len(self.neither)}


@dataclass(frozen=True)
class ImageScores:
    """One pair scored at every threshold: the sweep rows (:func:`.sweep.sweep_case`), the detected and
    false-positive lesion counts (``tp``, ``fp`` of :func:`.sweep.sweep_case`) and the calibration counts of its soft map."""

    pair: Pair
    rows: list[dict]
    counts: np.ndarray
    calibration: np.ndarray

    @property
    def name(self) -> str:
        """The image's path relative to the dataset root: unique, and readable in tables."""
        return self.pair.image.relative.as_posix()


@dataclass(frozen=True)
class BidsSweepResult:
    """What :func:`run_bids_sweep` wrote: the ``sweep.json`` document and the files, sweep.json last."""

    document: dict
    files: list[Path]


def soft_map_path(image: BidsImage) -> Path:
    """Where ``batch`` writes the soft map of ``image``, existing or not."""
    return image.output_dir() / f"{image.stem}_{SOFT_MAP}.nii.gz"


def pair_dataset(root: str | os.PathLike[str]) -> Pairing:
    """Pair every image of the dataset with its soft map and manual lesion mask; InputError when no image has both
    (nothing to tune on), naming the two places looked in and what was found."""
    groups: dict[tuple[bool, bool], list] = {(True, True): [], (True, False): [], (False, True): [],
                                             (False, False): []}
    for image in find_images(root):
        soft, manual = soft_map_path(image), image.manual_lesion()
        found = (soft.is_file(), manual.is_file())
        groups[found].append(Pair(image, soft, manual) if all(found) else image)
    pairing = Pairing(groups[True, True], groups[True, False], groups[False, True], groups[False, False])
    if not pairing.pairs:
        counts = pairing.counts()
        raise InputError(root, f"no image has both a soft map (derivatives/spinal-lesion-seg/.../S_{SOFT_MAP}.nii.gz) "
                               f"and a manual lesion mask (derivatives/labels/.../S_lesion-manual.nii.gz): of "
                               f"{counts['images']} image(s), {counts['soft_only']} have only a soft map, "
                               f"{counts['manual_only']} only a manual mask, {counts['neither']} neither")
    return pairing


def score_pair(pair: Pair, *, resample: bool = False) -> ImageScores:
    """Score one pair at every threshold. The soft map defines the grid, as in the existing sweep: a manual mask on
    another grid is refused, or with ``resample`` resampled onto it (nearest neighbour, with a warning)."""
    grid = read_image(pair.soft)
    soft = soft_values(grid, pair.soft)
    ref = read_mask_on(pair.manual, grid, f"the soft map {pair.soft}", resample=resample)
    volume = voxel_volume_mm3(grid)
    rows = sweep_case(soft, ref, volume)
    counts = np.array([[row["tp"], row["fp"]] for row in rows], dtype=np.int64)
    return ImageScores(pair, rows, counts, calibration_counts(soft, ref))


def summarise_scope(name: str, scores: list[ImageScores]) -> tuple[SweepResult, dict]:
    """The existing sweep's summary of some images (:func:`.sweep.summarise`) and a scope document: per threshold
    the mean scores, pooled lesion sensitivity (detected / reference lesions; ``None`` without reference lesions)
    and mean false-positive lesions per scan, with the totals behind them; and both recommended thresholds."""
    result = summarise({s.name: s.rows for s in scores})
    totals = np.sum([s.counts for s in scores], axis=0)
    lesions = sum(s.rows[0]["ref_lesion_count"] for s in scores)
    rows = [{**row, "lesion_sensitivity": int(detected) / lesions if lesions else None,
             "fp_per_scan": int(false_positives) / len(scores), "detected_lesions_total": int(detected),
             "false_positive_lesions_total": int(false_positives), "ref_lesions_total": lesions}
            for row, (detected, false_positives) in zip(result.mean, totals)]
    best_f1 = next(row for row in rows if row["threshold"] == result.recommended["threshold"])
    best_dice = max(rows, key=lambda row: (row["dice"], row["f1"], -row["threshold"]))
    recommended = {"f1": _recommendation(best_f1, result.recommended["rule"]),
                   "dice": _recommendation(best_dice, DICE_RULE)}
    return result, {"name": name, "images": [s.name for s in scores], "scores": rows, "recommended": recommended}


def _recommendation(row: dict, rule: str) -> dict:
    return {"threshold": row["threshold"], "mean_f1": row["f1"], "mean_dice": row["dice"],
            "lesion_sensitivity": row["lesion_sensitivity"], "fp_per_scan": row["fp_per_scan"], "rule": rule}


def add_intervals(scope: dict, scores: list[ImageScores], resamples: int, seed: int) -> None:
    """Attach 95% bootstrap intervals over subjects (:mod:`.curves`) to every row of a scope document (``ci95``)
    and to its recommended thresholds, from the per-image numbers: no image is read again."""
    weights = subject_weights([s.pair.image.subject for s in scores], resamples, seed)
    per_image = {key: np.array([[row[key] for row in s.rows] for s in scores]) for key in ("dice", "f1")}
    intervals = bootstrap_intervals(weights, per_image, np.array([s.counts[:, 0] for s in scores]),
                                    np.array([s.counts[:, 1] for s in scores]),
                                    np.array([s.rows[0]["ref_lesion_count"] for s in scores]))
    for index, row in enumerate(scope["scores"]):
        row["ci95"] = {key: intervals[key][index] for key in INTERVALS}
    for recommendation in scope["recommended"].values():
        row = next(row for row in scope["scores"] if row["threshold"] == recommendation["threshold"])
        recommendation["ci95"] = {"mean_f1": row["ci95"]["f1"], "mean_dice": row["ci95"]["dice"],
                                  "lesion_sensitivity": row["ci95"]["lesion_sensitivity"],
                                  "fp_per_scan": row["ci95"]["fp_per_scan"]}


def run_bids_sweep(root: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None, *,
                   resample: bool = False, resamples: int = BOOTSTRAP_RESAMPLES,
                   seed: int = BOOTSTRAP_SEED) -> BidsSweepResult:
    """Pair, score and summarise a BIDS dataset, and write sweep.csv, the plots and sweep.json (last) into
    ``out_dir`` (default ``ROOT/derivatives/spinal-lesion-seg/sweep``). The output folder is checked before any
    image is read; a pair that cannot be read stops the sweep with its InputError, since leaving a corrected image
    out silently would bias the threshold."""
    pairing = pair_dataset(root)
    out = writable_folder(out_dir if out_dir is not None else pipeline_dir(root) / OUTPUT_FOLDER)
    scores = [score_pair(pair, resample=resample) for pair in pairing.pairs]
    result, dataset = summarise_scope("dataset", scores)
    add_intervals(dataset, scores, resamples, seed)
    subjects = [summarise_scope(subject, [s for s in scores if s.pair.image.subject == subject])[1]
                for subject in sorted({s.pair.image.subject for s in scores})]
    images = [_image_document(s) for s in scores]
    calibration = calibration_curve(np.sum([s.calibration for s in scores], axis=0))
    document = _document(root, pairing, dataset, subjects, images, calibration, resamples, seed)
    marked = {"best F1": dataset["recommended"]["f1"]["threshold"],
              "best Dice": dataset["recommended"]["dice"]["threshold"]}
    files = [write_text(_csv(dataset, subjects, images), out / "sweep.csv"),
             write_bytes(plot_sweep(result), out / "sweep.png"),
             write_bytes(plot_froc(document["froc"]["points"], marked), out / "froc.png"),
             write_bytes(plot_calibration(calibration), out / "calibration.png"),
             write_text(json.dumps(document, indent=2) + "\n", out / "sweep.json")]
    return BidsSweepResult(document=document, files=files)


def _image_document(scores: ImageScores) -> dict:
    image = scores.pair.image
    return {**summarise_scope(scores.name, [scores])[1], "subject": image.subject, "session": image.session}


def _document(root: str | os.PathLike[str], pairing: Pairing, dataset: dict, subjects: list[dict],
              images: list[dict], calibration: dict, resamples: int, seed: int) -> dict:
    """sweep.json: everything, with the inputs' paths (relative to the root) and sha256."""
    base = Path(root)
    froc = [{"threshold": row["threshold"], "lesion_sensitivity": row["lesion_sensitivity"],
             "fp_per_scan": row["fp_per_scan"], "detected_lesions": row["detected_lesions_total"],
             "ref_lesions": row["ref_lesions_total"], "false_positive_lesions": row["false_positive_lesions_total"],
             "ci95": {key: row["ci95"][key] for key in ("lesion_sensitivity", "fp_per_scan")}}
            for row in dataset["scores"]]
    return {
        "root": str(base.resolve()),
        "thresholds": list(THRESHOLDS), "binarisation": "soft >= threshold", "rules": "paper",
        "pairing": {"counts": pairing.counts(), **{key: [image.relative.as_posix() for image in group] for key, group
                                                  in (("soft_only", pairing.soft_only),
                                                      ("manual_only", pairing.manual_only),
                                                      ("neither", pairing.neither))}},
        "recommended": dataset["recommended"],
        "dataset": dataset,
        "froc": {"sensitivity": "detected reference lesions / reference lesions, pooled over scans",
                 "fp_per_scan": "predicted lesions touching no reference voxel, mean per scan", "points": froc},
        "calibration": calibration,
        "bootstrap": {"unit": "subject", "subjects": len(subjects), "resamples": resamples, "seed": seed,
                      "interval": "2.5th to 97.5th percentile",
                      "thresholds": "fixed at the dataset's recommended values (choice uncertainty not included)"},
        "subjects": subjects,
        "images": images,
        "inputs": [{"image": pair.image.relative.as_posix(), "soft": pair.soft.relative_to(base).as_posix(),
                    "soft_sha256": sha256_file(pair.soft), "manual": pair.manual.relative_to(base).as_posix(),
                    "manual_sha256": sha256_file(pair.manual)} for pair in pairing.pairs],
        "software": {"name": "spinal-lesion-seg", "version": __version__},
    }


def _csv(dataset: dict, subjects: list[dict], images: list[dict]) -> str:
    """sweep.csv: one row per scope (dataset, then each subject, then each image) and threshold; intervals on the
    dataset rows only (empty elsewhere)."""
    buffer = textio.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for scope, documents in (("dataset", [dataset]), ("subject", subjects), ("image", images)):
        for document in documents:
            for row in document["scores"]:
                cells = {"scope": scope, "name": document["name"], "images": len(document["images"]), **row}
                for key, interval in row.get("ci95", {}).items():
                    cells[f"{key}_ci95_low"], cells[f"{key}_ci95_high"] = interval or (None, None)
                writer.writerow({key: "" if value is None else value for key, value in cells.items()})
    return buffer.getvalue()
