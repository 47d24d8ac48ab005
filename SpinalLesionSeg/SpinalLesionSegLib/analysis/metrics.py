"""Voxel-wise Dice and lesion-wise detection metrics, under the seed paper's rules or ANIMA's.

Both rule sets count lesions as 6-connected components. ``paper`` (the default; Benveniste et al. 2026, as in
their published code): a reference lesion is detected (TP) when at least 10% of its voxels are predicted, else it
is a false negative; a predicted component is a false positive when it shares no voxel with the reference.
``anima`` (ANIMA's ``animaSegPerfAnalyzer``, used by the MS challenges): components of 3 mm3 or less are ignored,
a lesion is detected when more than 10% of it is covered and the components covering it (largest first, until
70% of the covered part) do not lie more than 65% outside it; the same test run from the prediction's side
decides which predicted components are true. Empty masks never give NaN: see :func:`_scores`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .lesions import label_components

RULES = ("paper", "anima")
#: Connectivity of lesions for both rule sets.
METRIC_CONNECTIVITY = 6
#: Paper: a reference lesion is detected when at least this percentage of its voxels is predicted (integers, so
#: exactly 10% is decided exactly).
PAPER_DETECTION_PERCENT = 10
#: ANIMA defaults: minimum lesion volume (strictly larger is kept, mm3), alpha, beta, gamma.
ANIMA_MIN_VOLUME_MM3 = 3.0
ANIMA_ALPHA = 0.10
ANIMA_BETA = 0.65
ANIMA_GAMMA = 0.70


@dataclass(frozen=True)
class Metrics:
    """Scores of one prediction against one reference. Volumes in mm3; ``volume_difference_mm3`` is
    prediction minus reference (positive = over-segmentation)."""

    rules: str
    dice: float
    tp: int
    fp: int
    fn: int
    recall: float
    ppv: float
    f1: float
    ref_lesion_count: int
    pred_lesion_count: int
    abs_count_difference: int
    ref_volume_mm3: float
    pred_volume_mm3: float
    volume_difference_mm3: float

    def as_dict(self) -> dict:
        return asdict(self)


#: Fields averaged over cases (counts too: a mean lesion count per case is meaningful).
NUMERIC_FIELDS = tuple(name for name in Metrics.__dataclass_fields__ if name != "rules")


def dice(ref: np.ndarray, pred: np.ndarray) -> float:
    """Voxel-wise Dice, 2|A and B| / (|A| + |B|); 1.0 when both masks are empty (as MetricsReloaded)."""
    total = int(np.count_nonzero(ref)) + int(np.count_nonzero(pred))
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(ref & pred)) / total


def evaluate(ref: np.ndarray, pred: np.ndarray, voxel_volume_mm3: float, rules: str = "paper") -> Metrics:
    """Compare two boolean ``[k, j, i]`` masks on the same grid."""
    if rules not in RULES:
        raise ValueError(f"rules must be one of {RULES}, got {rules!r}")
    ref = np.asarray(ref, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    ref_labels, n_ref = label_components(ref, METRIC_CONNECTIVITY)
    pred_labels, n_pred = label_components(pred, METRIC_CONNECTIVITY)
    if rules == "anima":
        min_voxels = math.floor(ANIMA_MIN_VOLUME_MM3 / voxel_volume_mm3) + 1
        ref_labels, n_ref = _drop_small(ref_labels, n_ref, min_voxels)
        pred_labels, n_pred = _drop_small(pred_labels, n_pred, min_voxels)
    overlap = _overlap_matrix(ref_labels, n_ref, pred_labels, n_pred)
    if rules == "paper":
        sizes = overlap.sum(axis=1)[1:]
        predicted = overlap[1:, 1:].sum(axis=1)
        tp = int(np.count_nonzero(100 * predicted >= PAPER_DETECTION_PERCENT * sizes))
        fp = int(np.count_nonzero(overlap[1:, 1:].sum(axis=0) == 0))
        tp_pred = tp  # the paper's PPV is tp / (tp + fp), with tp counted on the reference side
    else:
        tp = int(np.count_nonzero(_anima_detected(overlap)))
        tp_pred = int(np.count_nonzero(_anima_detected(overlap.T)))
        fp = n_pred - tp_pred
    fn = n_ref - tp
    recall, ppv, f1 = _scores(rules, tp, tp_pred, fp, fn, n_ref, n_pred)
    ref_volume = int(np.count_nonzero(ref)) * voxel_volume_mm3
    pred_volume = int(np.count_nonzero(pred)) * voxel_volume_mm3
    return Metrics(rules=rules, dice=dice(ref, pred), tp=tp, fp=fp, fn=fn, recall=recall, ppv=ppv, f1=f1,
                   ref_lesion_count=n_ref, pred_lesion_count=n_pred, abs_count_difference=abs(n_pred - n_ref),
                   ref_volume_mm3=ref_volume, pred_volume_mm3=pred_volume,
                   volume_difference_mm3=pred_volume - ref_volume)


def _scores(rules: str, tp: int, tp_pred: int, fp: int, fn: int, n_ref: int, n_pred: int) -> tuple[float, ...]:
    """(recall, PPV, F1), never NaN. Paper: PPV = tp / (tp + fp), F1 = tp / (tp + (fp + fn) / 2). ANIMA: PPV =
    predicted components that pass the detection test / predicted components, F1 = 2 PPV recall / (PPV + recall).

    Both masks without lesions: 1.0 each. No reference lesion: recall 1.0 (nothing was missed), PPV and F1 0.0
    when something was predicted. No predicted lesion: recall, PPV and F1 0.0. As in the seed paper's code.
    """
    if n_ref == 0 and n_pred == 0:
        return 1.0, 1.0, 1.0
    recall = tp / n_ref if n_ref else 1.0
    if rules == "paper":
        ppv = tp_pred / (tp_pred + fp) if tp_pred + fp else 0.0
        f1 = tp / (tp + (fp + fn) / 2)
    else:
        ppv = tp_pred / n_pred if n_pred else 0.0
        f1 = 2 * ppv * recall / (ppv + recall) if n_ref and n_pred and ppv + recall > 0 else 0.0
    return recall, ppv, f1


def _drop_small(labels: np.ndarray, count: int, min_voxels: int) -> tuple[np.ndarray, int]:
    """Remove components with fewer than ``min_voxels`` voxels and renumber the rest 1..M."""
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= min_voxels
    keep[0] = False
    renumber = np.zeros(count + 1, dtype=np.int64)
    renumber[keep] = np.arange(1, int(keep.sum()) + 1)
    return renumber[labels], int(keep.sum())


def _overlap_matrix(ref_labels: np.ndarray, n_ref: int, pred_labels: np.ndarray, n_pred: int) -> np.ndarray:
    """``m[i, j]`` = voxels in reference lesion i and predicted lesion j (0 = background; ``m[0, 0]`` unused)."""
    either = np.flatnonzero((ref_labels.ravel() > 0) | (pred_labels.ravel() > 0))
    pair = ref_labels.ravel()[either].astype(np.int64) * (n_pred + 1) + pred_labels.ravel()[either]
    return np.bincount(pair, minlength=(n_ref + 1) * (n_pred + 1)).reshape(n_ref + 1, n_pred + 1)


def _anima_detected(overlap: np.ndarray) -> np.ndarray:
    """ANIMA's detection test for each row lesion 1..N of ``overlap`` (rows tested, columns the other mask)."""
    sizes_other = overlap.sum(axis=0)
    detected = np.zeros(overlap.shape[0] - 1, dtype=bool)
    for i in range(1, overlap.shape[0]):
        covered = overlap[i, 1:].sum()
        if covered / overlap[i].sum() <= ANIMA_ALPHA:
            continue
        ok, cumulative = True, 0.0
        for j in np.argsort(-overlap[i, 1:], kind="stable") + 1:
            if overlap[i, j] == 0:
                break
            if overlap[0, j] / sizes_other[j] > ANIMA_BETA:
                ok = False
                break
            cumulative += overlap[i, j] / covered
            if cumulative > ANIMA_GAMMA:
                break
        detected[i - 1] = ok
    return detected


def mean_metrics(results: list[Metrics]) -> dict[str, float]:
    """Mean of every numeric field over cases (``{}`` for no case)."""
    if not results:
        return {}
    return {name: float(np.mean([getattr(r, name) for r in results])) for name in NUMERIC_FIELDS}
