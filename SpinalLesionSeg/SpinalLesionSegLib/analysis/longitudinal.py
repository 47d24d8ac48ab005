"""The change since the last scan: which lesions are new, gone, merged, split, larger, smaller or unchanged.

The follow-up is registered to the baseline (:mod:`.registration`), its lesions are mapped onto the baseline grid
through that transform, and lesions of the two scans that touch are matched. Each change is one event:

* **new**: a follow-up lesion touching no baseline lesion; **disappeared**: a baseline lesion touching none;
* **merged**: a follow-up lesion touching two or more baseline lesions (one event per follow-up lesion);
* **split**: a baseline lesion touching two or more follow-up lesions (one event per baseline lesion);
* one-to-one matches: **enlarged** (volume +``change_percent`` % or more, and at least ``min_change_mm3`` more),
  **shrunk** (the same downwards), else **stable**.

Volumes are always measured on each scan's own grid (never on a resampled mask), so a lesion's volume is the one
``stats`` reports for that scan; mapping only decides which lesions touch. The rules, their defaults and sources
(AIMS, SCT issue #4786) and a comparison with lesiontrack are in docs/conventions.md, "Longitudinal change".
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import __version__
from ..defaults import CONNECTIVITY, LESION_CHANGE_PERCENT, LESION_MIN_CHANGE_MM3, TOUCH_TOLERANCE_MM
from ..errors import InputError
from ..geometry import ijk_to_ras_matrix, ras_to_voxel, voxel_to_ras
from ..outputs import WRITTEN_SHA256
from ..result_set import ResultSet
from .lesions import LesionAnalysis, analyze_lesions, primary_levels
from .levels import MAX_LEVEL, UNASSIGNED, LevelSource, assign_levels, level_name
from .registration import Registration, align, registration_figure, to_baseline
from .report import csv_text

#: The change classes, in the order of summary.json and lesion_changes.csv.
CLASSES = ("new", "disappeared", "merged", "split", "enlarged", "shrunk", "stable")
CHANGE_COLUMNS = ("change_id", "class", "baseline_ids", "followup_ids", "baseline_volume_mm3",
                  "followup_volume_mm3", "volume_change_percent", "baseline_soft_volume_mm3",
                  "followup_soft_volume_mm3", "level", "centroid_r_mm", "centroid_a_mm", "centroid_s_mm",
                  "in_common_view")
#: Relative slack of the percentage and minimum-change comparisons, so that a change of exactly 30 % counts as
#: 30 % whatever the floating-point rounding of the two grids' voxel volumes.
RELATIVE_SLACK = 1e-9
#: Output file names, by role; summary.json is the set's manifest, written last.
FIGURE = "registration.png"
FILES = {"changes_csv": "lesion_changes.csv", "transform": "followup_to_baseline.tfm", "figure": FIGURE}
SUMMARY = "summary.json"


@dataclass(frozen=True)
class LesionChange:
    """One change event. Ids are each scan's lesion numbers (as ``stats`` numbers them); volumes in mm3 on each
    scan's own grid (sums over the event's lesions); ``level`` is a level code (None without levels);
    ``centroid_ras`` (mm, baseline space) is that of the baseline lesions, or of the follow-up lesion mapped onto
    the baseline for a new one; ``in_common_view`` is False when a lesion lies partly outside the other scan."""

    change: str
    baseline_ids: tuple[int, ...]
    followup_ids: tuple[int, ...]
    baseline_volume_mm3: float
    followup_volume_mm3: float
    baseline_soft_volume_mm3: float | None
    followup_soft_volume_mm3: float | None
    level: int | None
    centroid_ras: tuple[float, float, float]
    in_common_view: bool

    @property
    def volume_change_percent(self) -> float | None:
        """100 x (follow-up - baseline) / baseline; None for a new or disappeared lesion."""
        if not self.baseline_ids or not self.followup_ids:
            return None
        return 100.0 * (self.followup_volume_mm3 - self.baseline_volume_mm3) / self.baseline_volume_mm3


@dataclass(frozen=True)
class LongitudinalResult:
    """Everything :func:`compare_scans` found: the events, both scans' lesions, the registration and its picture
    (PNG bytes), and the thresholds applied."""

    changes: list[LesionChange]
    baseline: LesionAnalysis
    followup: LesionAnalysis
    registration: Registration
    figure: bytes
    change_percent: float
    min_change_mm3: float
    tolerance_mm: float
    levels: LevelSource | None

    def counts(self) -> dict[str, int]:
        """Number of events per class, every class present."""
        return {name: sum(change.change == name for change in self.changes) for name in CLASSES}


@dataclass(frozen=True)
class _Mapping:
    """Follow-up lesions on the baseline grid: touching (baseline id, follow-up id) pairs, each follow-up lesion's
    baseline voxels (flat indices), and the lesions partly outside the other scan's field of view."""

    pairs: set[tuple[int, int]]
    voxels: dict[int, np.ndarray]
    baseline_outside: set[int]
    followup_outside: set[int]


def compare_scans(baseline_image: sitk.Image, baseline_mask: np.ndarray, followup_image: sitk.Image,
                  followup_mask: np.ndarray, *, baseline_soft: np.ndarray | None = None,
                  followup_soft: np.ndarray | None = None, baseline_cord: np.ndarray | None = None,
                  followup_cord: np.ndarray | None = None, levels: LevelSource | None = None, register: bool = True,
                  change_percent: float = LESION_CHANGE_PERCENT, min_change_mm3: float = LESION_MIN_CHANGE_MM3,
                  tolerance_mm: float = TOUCH_TOLERANCE_MM, connectivity: int = CONNECTIVITY,
                  followup_source: str | os.PathLike[str] | None = None) -> LongitudinalResult:
    """Compare a follow-up scan's lesions with the baseline's.

    Masks, soft maps (0..1) and cords are ``[k, j, i]`` arrays on their own image's grid; ``levels`` is a level
    source on the baseline grid. ``register=False`` takes the two scans as aligned in scanner space. Lesions touch
    when a follow-up voxel mapped onto the baseline grid lies within ``tolerance_mm`` of a baseline lesion voxel
    (0: the same voxel). InputError, naming ``followup_source`` (a file or a node name), when registration fails
    or is implausible.
    """
    for image, array, what in ((baseline_image, baseline_mask, "baseline"), (followup_image, followup_mask,
                                                                             "follow-up")):
        if tuple(np.shape(array)) != tuple(reversed(image.GetSize())):
            raise InputError(None, f"the {what} lesion mask is not on the {what} image's grid")
    try:
        registration = align(baseline_image, followup_image, baseline_cord=baseline_cord,
                             followup_cord=followup_cord, register=register)
    except InputError as error:
        raise InputError(followup_source, error.problem) from None
    if registration.failed:
        logging.getLogger(__name__).warning("%s: looks misaligned with the baseline (%s), but registration was "
                                            "skipped (--no-register)", followup_source or "the follow-up",
                                            "; ".join(registration.failed))
    baseline = analyze_lesions(baseline_mask, baseline_image, soft=baseline_soft, levels=levels, cord=baseline_cord,
                               connectivity=connectivity)
    followup = analyze_lesions(followup_mask, followup_image, soft=followup_soft, connectivity=connectivity)
    mapping = _map_followup(baseline, baseline_image, followup, followup_image, registration, tolerance_mm)
    grade = _Grader(baseline, followup, mapping, registration, levels, baseline_image, baseline_cord)
    changes = _events(mapping.pairs, len(baseline.lesions), len(followup.lesions), grade, change_percent,
                      min_change_mm3)
    if outside := sum(not change.in_common_view for change in changes):
        logging.getLogger(__name__).warning("%d lesion change(s) lie partly outside the other scan's field of view: "
                                            "their class may reflect the field of view (lesion_changes.csv, "
                                            "in_common_view)", outside)
    figure = registration_figure(baseline_image, followup_image, registration, baseline_cord=baseline_cord,
                                 followup_cord=followup_cord)
    return LongitudinalResult(changes=changes, baseline=baseline, followup=followup, registration=registration,
                              figure=figure, change_percent=change_percent, min_change_mm3=min_change_mm3,
                              tolerance_mm=tolerance_mm, levels=levels)


def _map_followup(baseline: LesionAnalysis, baseline_image: sitk.Image, followup: LesionAnalysis,
                  followup_image: sitk.Image, registration: Registration, tolerance_mm: float) -> _Mapping:
    """Map the follow-up lesions onto the baseline grid both ways, nearest neighbour: each baseline voxel takes the
    follow-up label at its mapped centre (pull), and each follow-up voxel marks the baseline voxel its centre maps
    into (push), so that no lesion is lost when one grid is finer than the other."""
    transform = registration.transform
    pulled = to_baseline(followup.labels.astype(np.uint32), followup_image, baseline_image, transform)
    covered = to_baseline(np.ones(followup.labels.shape, np.uint8), followup_image, baseline_image, transform) > 0
    near = _near_labels(baseline.labels, baseline_image.GetSpacing()[::-1], tolerance_mm)
    index = np.flatnonzero(followup.labels)
    ids = followup.labels.reshape(-1)[index].astype(np.int64)
    ras = voxel_to_ras(ijk_to_ras_matrix(followup_image), np.stack(np.unravel_index(index, followup.labels.shape),
                                                                   axis=1)[:, ::-1])
    ijk = np.rint(ras_to_voxel(ijk_to_ras_matrix(baseline_image), _apply(np.linalg.inv(registration.matrix_ras()),
                                                                          ras))).astype(np.int64)
    inside = np.all((ijk >= 0) & (ijk < np.asarray(baseline_image.GetSize())), axis=1)
    pushed = np.ravel_multi_index(tuple(ijk[inside][:, ::-1].T), near.shape)
    pulled_index = np.flatnonzero(pulled)
    pulled_ids = pulled.reshape(-1)[pulled_index].astype(np.int64)
    all_ids, all_index = np.concatenate([pulled_ids, ids[inside]]), np.concatenate([pulled_index, pushed])
    touching = near.reshape(-1)[all_index].astype(np.int64)
    pairs = {(int(b), int(f)) for b, f in np.unique(np.stack([touching, all_ids], axis=1)[touching > 0], axis=0)}
    order = np.argsort(all_ids, kind="stable")
    voxels = {int(f): np.unique(group) for f, group in zip(*_groups(all_ids[order], all_index[order]))}
    baseline_outside = {int(b) for b in np.unique(baseline.labels[(baseline.labels > 0) & ~covered])}
    return _Mapping(pairs=pairs, voxels=voxels, baseline_outside=baseline_outside,
                    followup_outside={int(f) for f in np.unique(ids[~inside])})


def _groups(ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Distinct sorted ``ids`` and the ``values`` of each (``ids`` sorted)."""
    distinct, starts = np.unique(ids, return_index=True)
    return distinct, np.split(values, starts[1:])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A 4x4 homogeneous matrix applied to ``(N, 3)`` points."""
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def _near_labels(labels: np.ndarray, spacing_kji: tuple[float, ...], tolerance_mm: float) -> np.ndarray:
    """Each voxel's nearest baseline lesion label within ``tolerance_mm`` (Euclidean, mm), 0 beyond: ``labels``
    itself for 0. Computed in the lesions' bounding box grown by the tolerance, to keep large grids cheap."""
    if tolerance_mm <= 0 or not labels.any():
        return labels
    from scipy import ndimage

    reach = np.ceil(tolerance_mm / np.asarray(spacing_kji)).astype(int)
    found = np.argwhere(labels)
    low = np.maximum(found.min(axis=0) - reach, 0)
    high = np.minimum(found.max(axis=0) + reach + 1, labels.shape)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    distance, nearest = ndimage.distance_transform_edt(labels[box] == 0, sampling=spacing_kji, return_indices=True)
    near = np.zeros_like(labels)
    near[box] = np.where(distance <= tolerance_mm, labels[box][tuple(nearest)], 0)
    return near


class _Grader:
    """Builds the events: volumes, level, centroid and field-of-view flag of a set of baseline and follow-up
    lesions."""

    def __init__(self, baseline: LesionAnalysis, followup: LesionAnalysis, mapping: _Mapping,
                 registration: Registration, levels: LevelSource | None, baseline_image: sitk.Image,
                 baseline_cord: np.ndarray | None) -> None:
        self.baseline, self.followup, self.mapping = baseline, followup, mapping
        self.to_baseline_ras = np.linalg.inv(registration.matrix_ras())
        self.levels, self.image, self.cord = levels, baseline_image, baseline_cord

    def event(self, change: str, baseline_ids: tuple[int, ...], followup_ids: tuple[int, ...]) -> LesionChange:
        before = [self.baseline.lesions[n - 1] for n in baseline_ids]
        after = [self.followup.lesions[n - 1] for n in followup_ids]
        if before:
            weights = np.array([lesion.voxel_count for lesion in before], dtype=float)
            centroid = np.average([lesion.centroid_ras for lesion in before], axis=0, weights=weights)
        else:
            centroid = _apply(self.to_baseline_ras, np.atleast_2d(after[0].centroid_ras))[0]
        return LesionChange(
            change=change, baseline_ids=baseline_ids, followup_ids=followup_ids,
            baseline_volume_mm3=sum(lesion.volume_mm3 for lesion in before),
            followup_volume_mm3=sum(lesion.volume_mm3 for lesion in after),
            baseline_soft_volume_mm3=sum(lesion.soft_volume_mm3 for lesion in before)
            if self.baseline.has_soft else None,
            followup_soft_volume_mm3=sum(lesion.soft_volume_mm3 for lesion in after) if self.followup.has_soft else None,
            level=self._level(before, followup_ids), centroid_ras=tuple(float(v) for v in centroid),
            in_common_view=not (set(baseline_ids) & self.mapping.baseline_outside
                                or set(followup_ids) & self.mapping.followup_outside))

    def _level(self, before: list, followup_ids: tuple[int, ...]) -> int | None:
        """Primary level (most voxels; ties to the superior level, unassigned loses ties, as for ``stats``) of the
        baseline lesions, or of a new lesion's voxels mapped onto the baseline grid."""
        if self.levels is None:
            return None
        if before:
            counts = np.sum([lesion.level_voxels for lesion in before], axis=0)
        else:
            voxels = self.mapping.voxels.get(followup_ids[0], np.zeros(0, dtype=np.int64))
            codes = assign_levels(self.levels, self.image, voxels, cord=self.cord)
            counts = np.bincount(codes, minlength=MAX_LEVEL + 1)
        return int(primary_levels(counts)[0]) if counts.any() else UNASSIGNED


def _events(pairs: set[tuple[int, int]], baseline_count: int, followup_count: int, grade: _Grader,
            change_percent: float, min_change_mm3: float) -> list[LesionChange]:
    """One event per new, disappeared, merged (per follow-up lesion) and split (per baseline lesion) lesion and per
    one-to-one match, in the order of CLASSES, then by id."""
    touched_by: dict[int, set[int]] = defaultdict(set)  # follow-up id -> baseline ids
    touches: dict[int, set[int]] = defaultdict(set)  # baseline id -> follow-up ids
    for b, f in pairs:
        touched_by[f].add(b)
        touches[b].add(f)
    changes = [grade.event("new", (), (f,)) for f in range(1, followup_count + 1) if not touched_by[f]]
    changes += [grade.event("disappeared", (b,), ()) for b in range(1, baseline_count + 1) if not touches[b]]
    changes += [grade.event("merged", tuple(sorted(touched_by[f])), (f,))
                for f in range(1, followup_count + 1) if len(touched_by[f]) > 1]
    changes += [grade.event("split", (b,), tuple(sorted(touches[b])))
                for b in range(1, baseline_count + 1) if len(touches[b]) > 1]
    one_to_one = [(b, f) for b, f in sorted(pairs) if len(touches[b]) == 1 and len(touched_by[f]) == 1]
    changes += [grade_match(grade.event("stable", (b,), (f,)), change_percent, min_change_mm3)
                for b, f in one_to_one]
    return sorted(changes, key=lambda c: (CLASSES.index(c.change), c.baseline_ids or c.followup_ids))


def grade_match(match: LesionChange, change_percent: float = LESION_CHANGE_PERCENT,
                min_change_mm3: float = LESION_MIN_CHANGE_MM3) -> LesionChange:
    """A one-to-one match classified: enlarged at +``change_percent`` % or more with at least ``min_change_mm3``
    more, shrunk at -``change_percent`` % or less with at least ``min_change_mm3`` less, else stable."""
    before, after = match.baseline_volume_mm3, match.followup_volume_mm3
    slack = RELATIVE_SLACK * max(before, after)
    change = "stable"
    if after - before >= before * change_percent / 100.0 - slack and after - before >= min_change_mm3 - slack:
        change = "enlarged"
    elif before - after >= before * change_percent / 100.0 - slack and before - after >= min_change_mm3 - slack:
        change = "shrunk"
    return replace(match, change=change)


@dataclass(frozen=True)
class ComparisonOutputs:
    """Paths written by :func:`write_comparison` and the summary written to summary.json."""

    changes_csv: Path
    transform: Path
    figure: Path
    summary_json: Path
    summary: dict

    @property
    def files(self) -> list[Path]:
        """Every file written, summary.json last."""
        return [self.changes_csv, self.transform, self.figure, self.summary_json]


def write_comparison(result: LongitudinalResult, out_dir: str | os.PathLike[str], *,
                     inputs: dict | None = None) -> ComparisonOutputs:
    """Write lesion_changes.csv, followup_to_baseline.tfm, registration.png and summary.json (the manifest, last:
    the set is complete exactly when it exists). ``inputs`` is the summary's ``inputs`` entry (role -> path and
    sha256 for files; the Slicer panel names its nodes)."""
    out = Path(out_dir)
    paths = {role: out / name for role, name in FILES.items()}
    with ResultSet(out / SUMMARY, paths, overwrite=True) as result_set:
        result_set.stage_text("changes_csv", csv_text(CHANGE_COLUMNS, change_rows(result)))
        result_set.stage_text("transform", transform_text(result.registration.transform))
        result_set.stage_bytes("figure", result.figure)
        summary = comparison_summary(result, inputs or {})
        summary[WRITTEN_SHA256] = result_set.sha256()
        published = result_set.publish(json.dumps(summary, indent=2) + "\n")
    return ComparisonOutputs(changes_csv=published["changes_csv"], transform=published["transform"],
                             figure=published["figure"],
                             summary_json=published["sidecar"], summary=summary)


def change_rows(result: LongitudinalResult) -> list[dict]:
    """Rows of lesion_changes.csv: one per event, ids joined by ``;``, volumes in mm3, centroid in RAS mm."""
    return [{
        "change_id": number, "class": change.change,
        "baseline_ids": ";".join(map(str, change.baseline_ids)),
        "followup_ids": ";".join(map(str, change.followup_ids)),
        "baseline_volume_mm3": change.baseline_volume_mm3, "followup_volume_mm3": change.followup_volume_mm3,
        "volume_change_percent": change.volume_change_percent,
        "baseline_soft_volume_mm3": change.baseline_soft_volume_mm3,
        "followup_soft_volume_mm3": change.followup_soft_volume_mm3,
        "level": None if change.level is None else level_name(change.level),
        "centroid_r_mm": change.centroid_ras[0], "centroid_a_mm": change.centroid_ras[1],
        "centroid_s_mm": change.centroid_ras[2], "in_common_view": change.in_common_view,
    } for number, change in enumerate(result.changes, start=1)]


def comparison_summary(result: LongitudinalResult, inputs: dict) -> dict:
    """summary.json: event counts per class, lesion counts and volumes of both scans (own grids, mm3), per-level
    counts (with levels), the registration, the thresholds, the inputs and the software version."""
    soft = {f"{name}_soft_volume_mm3": sum(lesion.soft_volume_mm3 for lesion in analysis.lesions)
            if analysis.has_soft else None for name, analysis in (("baseline", result.baseline),
                                                                   ("followup", result.followup))}
    return {
        **result.counts(),
        "baseline_lesion_count": len(result.baseline.lesions),
        "followup_lesion_count": len(result.followup.lesions),
        "baseline_volume_mm3": sum(lesion.volume_mm3 for lesion in result.baseline.lesions),
        "followup_volume_mm3": sum(lesion.volume_mm3 for lesion in result.followup.lesions),
        **soft,
        "outside_common_view": sum(not change.in_common_view for change in result.changes),
        "per_level": _per_level(result) if result.levels is not None else None,
        "registration": {**result.registration.to_json(), "file": FILES["transform"], "figure": FIGURE},
        "thresholds": {"change_percent": result.change_percent, "min_change_mm3": result.min_change_mm3,
                       "touch_tolerance_mm": result.tolerance_mm, "connectivity": result.baseline.connectivity},
        "levels_source": None if result.levels is None else {"kind": result.levels.kind,
                                                              "path": str(result.levels.path)},
        "inputs": inputs,
        "software": {"name": "spinal-lesion-seg", "version": __version__},
    }


def _per_level(result: LongitudinalResult) -> dict[str, dict[str, int]]:
    """Events per class at each level the source covers or an event lies at (anatomical order, then
    unassigned); an event's level is its primary level."""
    codes = {change.level for change in result.changes} | result.levels.covered_levels()
    ordered = sorted(code for code in codes if code != UNASSIGNED) + [UNASSIGNED]
    return {level_name(code): {name: sum(c.change == name and c.level == code for c in result.changes)
                               for name in CLASSES} for code in ordered}


def transform_text(transform: sitk.Transform) -> str:
    """The transform as an ITK ``.tfm`` text file (what SimpleITK, ANTs and Slicer read)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "transform.tfm"
        sitk.WriteTransform(transform, str(path))
        return path.read_text(encoding="utf-8")
