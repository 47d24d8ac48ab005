"""``spinal-lesion-seg compare`` on real anatomy with planted changes: one change of each class, the follow-up
moved by a known rigid transform, on the same grid or another (the cases and how they are made:
Testing/compare_cases.py). Expected volumes are voxel counts of the planted masks, never the code's own."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from analysis_data import paint_ellipsoids
from compare_cases import EVENTS, T2, build_case, save_like
from SpinalLesionSegLib.analysis.longitudinal import (
    CHANGE_COLUMNS,
    CLASSES,
    LesionChange,
    compare_scans,
    grade_match,
)
from SpinalLesionSegLib.analysis.registration import to_baseline
from SpinalLesionSegLib.cli.app import main


@pytest.fixture(scope="module")
def cases(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("compare")
    return {grid: build_case(folder / grid, shared_data, grid) for grid in ("same", "other", "still")}


def _compare(case: dict, out: Path, *extra: str, cords: bool = True) -> int:
    roles = [role for role in case["paths"] if cords or not role.endswith("cord")]
    return main(["compare", *[arg for role in roles for arg in (f"--{role.replace('_', '-')}", str(case["paths"][role]))],
                 *extra, "-o", str(out)])


def _rows(out: Path) -> list[dict]:
    with open(out / "lesion_changes.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _check_planted(case: dict, out: Path) -> dict:
    """Every planted class exactly once, with the planted volumes (within 1 %) on each scan's own grid."""
    summary = json.loads((out / "summary.json").read_text())
    assert {name: summary[name] for name in CLASSES} == {name: 1 for name in CLASSES}
    rows = {row["class"]: row for row in _rows(out)}
    assert len(rows) == len(CLASSES)
    for change, (before, after) in EVENTS.items():
        row = rows[change]
        assert row["baseline_ids"] == ";".join(str(i) for i in sorted(case["ids"][("baseline", n)] for n in before))
        assert row["followup_ids"] == ";".join(str(i) for i in sorted(case["ids"][("followup", n)] for n in after))
        expected = sum(case["volumes"][("baseline", n)] for n in before)
        assert float(row["baseline_volume_mm3"] or 0) == pytest.approx(expected, rel=0.01), change
        expected = sum(case["volumes"][("followup", n)] for n in after)
        assert float(row["followup_volume_mm3"] or 0) == pytest.approx(expected, rel=0.01), change
    total = sum(v for (scan, _), v in case["volumes"].items() if scan == "followup")
    assert summary["followup_volume_mm3"] == pytest.approx(total, rel=0.01)
    return summary


def _max_error_mm(recovered: sitk.Transform, case: dict) -> float:
    """Largest distance (mm) over the baseline cord between the recovered and the planted baseline-to-follow-up
    maps (the registration's transform is the inverse of the resampling motion that made the follow-up)."""
    planted = case["motion"].GetInverse()
    points = [case["image"].TransformIndexToPhysicalPoint([int(v) for v in p[::-1]]) for p in np.argwhere(case["cord"])]
    return max(np.linalg.norm(np.subtract(recovered.TransformPoint(p), planted.TransformPoint(p))) for p in points)


def test_same_grid_gives_the_planted_changes_and_motion(cases: dict, shared_data: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    case = cases["same"]
    levels = shared_data / T2 / "t2_seg-manual_labeled.nii.gz"
    soft = str(case["paths"]["followup_lesion"])  # a 0/1 map is a valid soft map: soft volume = volume
    assert _compare(case, tmp_path, "--levels", str(levels), "--followup-soft", soft) == 0
    assert "new 1, disappeared 1, merged 1, split 1, enlarged 1, shrunk 1, stable 1" in capsys.readouterr().out
    summary = _check_planted(case, tmp_path)
    registration = summary["registration"]
    assert registration["accepted"] and registration["registered"]
    assert registration["transform"]["rotation_deg"] == pytest.approx(3.0, abs=0.3)
    assert registration["checks"]["cord_dice"]["value"] > 0.9
    assert _max_error_mm(sitk.ReadTransform(str(tmp_path / "followup_to_baseline.tfm")), case) < 0.5
    per_level = summary["per_level"]
    assert list(per_level)[-1] == "unassigned"
    assert {name: sum(row[name] for row in per_level.values()) for name in CLASSES} == {n: 1 for n in CLASSES}
    rows = {row["class"]: row for row in _rows(tmp_path)}
    assert rows["new"]["level"] == "C4" and rows["stable"]["level"] == "C2"
    assert per_level["C4"]["new"] == 1
    assert set(summary) >= {*CLASSES, "baseline_volume_mm3", "followup_volume_mm3", "registration", "thresholds",
                            "inputs", "written_sha256"}
    assert summary["thresholds"] == {"change_percent": 30.0, "min_change_mm3": 3.0, "touch_tolerance_mm": 0.0,
                                     "connectivity": 18}
    assert summary["inputs"]["levels"]["sha256"] and len(summary["inputs"]) == 8
    assert summary["followup_soft_volume_mm3"] == summary["followup_volume_mm3"]
    assert summary["baseline_soft_volume_mm3"] is None
    assert all(row["followup_soft_volume_mm3"] == row["followup_volume_mm3"] and row["baseline_soft_volume_mm3"] == ""
               for row in rows.values())
    assert (tmp_path / "registration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Centroids in baseline RAS mm: the baseline lesion's, and for a new lesion its follow-up voxels mapped back.
    for change, name in (("stable", "stable"), ("new", "new")):
        planted = case["baseline" if change == "stable" else "followup"][name]
        lps = np.mean([case["image"].TransformIndexToPhysicalPoint([int(v) for v in p[::-1]])
                       for p in np.argwhere(planted)], axis=0)
        found = [float(rows[change][f"centroid_{axis}_mm"]) for axis in "ras"]
        assert found == pytest.approx([-lps[0], -lps[1], lps[2]], abs=1e-6 if change == "stable" else 0.5)


def test_other_grid_gives_the_planted_changes(cases: dict, tmp_path: Path) -> None:
    case = cases["other"]
    assert _compare(case, tmp_path) == 0
    summary = _check_planted(case, tmp_path)
    assert summary["registration"]["checks"]["cord_dice"]["value"] > 0.85
    assert _max_error_mm(sitk.ReadTransform(str(tmp_path / "followup_to_baseline.tfm")), case) < 0.5
    rows = _rows(tmp_path)
    assert list(rows[0]) == list(CHANGE_COLUMNS)
    merged = next(row for row in rows if row["class"] == "merged")
    split = next(row for row in rows if row["class"] == "split")
    assert len(merged["baseline_ids"].split(";")) == 2 and len(split["followup_ids"].split(";")) == 2
    assert all(row["in_common_view"] == "True" for row in rows)
    stable = next(row for row in rows if row["class"] == "stable")
    assert float(stable["centroid_s_mm"]) > float(next(r for r in rows if r["class"] == "new")["centroid_s_mm"])


def test_no_register_on_the_same_grid(cases: dict, tmp_path: Path) -> None:
    case = cases["still"]
    assert _compare(case, tmp_path, "--no-register", cords=False) == 0
    summary = _check_planted(case, tmp_path)
    assert not summary["registration"]["registered"] and summary["registration"]["transform"]["rotation_deg"] == 0
    assert summary["registration"]["checks"]["cord_dice"]["value"] is None
    assert sitk.ReadTransform(str(tmp_path / "followup_to_baseline.tfm")).GetParameters() == (0.0,) * 6


def test_an_unrelated_followup_is_refused_in_one_line(cases: dict, t2_ms_path: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    case = dict(cases["same"], paths=dict(cases["same"]["paths"]))
    unrelated = sitk.ReadImage(str(t2_ms_path))
    mask = sitk.Image(unrelated.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(unrelated)
    sitk.WriteImage(mask, str(tmp_path / "empty.nii.gz"))
    case["paths"].update(followup=t2_ms_path, followup_lesion=tmp_path / "empty.nii.gz")
    assert _compare(case, tmp_path / "out", cords=False) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"spinal-lesion-seg: error: {t2_ms_path}: registration") and "\n" not in error
    assert "implausible" in error
    assert not (tmp_path / "out" / "summary.json").exists()


def test_bad_inputs_end_in_one_line(cases: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    case = cases["other"]
    wrong = dict(case, paths=dict(case["paths"], followup_lesion=cases["same"]["paths"]["followup_lesion"]))
    assert _compare(wrong, tmp_path / "a") == 2
    assert "is not on the voxel grid of its image" in capsys.readouterr().err
    soft = sitk.ReadImage(str(case["paths"]["followup"]))
    sitk.WriteImage(sitk.Cast(soft, sitk.sitkFloat32) / 1000.0, str(tmp_path / "soft.nii.gz"))
    probability = dict(case, paths=dict(case["paths"], followup_lesion=tmp_path / "soft.nii.gz"))
    assert _compare(probability, tmp_path / "b") == 2
    assert "probability map" in capsys.readouterr().err
    missing = dict(case, paths=dict(case["paths"], baseline=tmp_path / "missing.nii.gz"))
    assert _compare(missing, tmp_path / "c") == 2
    (tmp_path / "file").write_text("")
    assert _compare(case, tmp_path / "file") == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("spinal-lesion-seg: error: ") for line in errors)
    assert "is a file" in errors[1]


def test_tolerance_lets_a_lesion_beside_its_old_place_match(cases: dict, tmp_path: Path) -> None:
    """Baseline lesion and follow-up lesion one empty voxel apart: new + disappeared when touching means sharing
    a voxel, one match (enlarged: 19 -> 28 voxels) within a 2 mm tolerance."""
    case = cases["still"]
    cord = case["cord"]
    before = paint_ellipsoids(cord, {"a": (20, (1.5, 1.5, 1.5))})["a"]
    after = paint_ellipsoids(cord, {"a": (24.5, (2.0, 2.0, 2.0))})["a"]
    assert not np.any(before & after)
    paths = dict(case["paths"])
    paths["baseline_lesion"] = save_like(before.astype(np.uint8), case["image"], tmp_path / "b.nii.gz")
    paths["followup_lesion"] = save_like(after.astype(np.uint8), case["image"], tmp_path / "f.nii.gz")
    for tolerance, expected in (("0", {"new": 1, "disappeared": 1}), ("2", {"enlarged": 1})):
        out = tmp_path / tolerance
        assert _compare(dict(case, paths=paths), out, "--no-register", "--tolerance", tolerance) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert {n: summary[n] for n in CLASSES} == {n: expected.get(n, 0) for n in CLASSES}


def test_a_lesion_between_the_baseline_voxel_centres_is_not_lost(cases: dict) -> None:
    """A one-voxel follow-up lesion on a 0.5 mm grid that no baseline voxel centre samples (pull misses it) still
    reaches the baseline grid through its own centre (push): one shrunk lesion, not a new and a disappeared one."""
    image, cord = cases["same"]["image"], cases["same"]["cord"]
    j = 30
    k, i = (round(v) for v in np.argwhere(cord[:, j, :]).mean(axis=0))
    before = np.zeros(cord.shape, dtype=bool)
    before[k - 1:k + 2, j - 1:j + 2, i - 1:i + 2] = True
    fine = sitk.Image([2 * n for n in image.GetSize()], sitk.sitkFloat32)
    fine.SetSpacing([0.5] * 3)
    fine.SetDirection(image.GetDirection())
    fine.SetOrigin(image.TransformContinuousIndexToPhysicalPoint([0.2, 0.2, 0.2]))  # centres at n + 0.2 + m / 2
    followup = sitk.Resample(image, fine, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    after = np.zeros(tuple(reversed(fine.GetSize())), dtype=bool)
    after[2 * k - 1, 2 * j - 1, 2 * i - 1] = True  # centre at baseline index (k, j, i) - 0.3: rounds to (k, j, i)
    assert not to_baseline(after.astype(np.uint8), followup, image, sitk.Euler3DTransform()).any()  # pull misses
    result = compare_scans(image, before, followup, after, register=False)
    assert result.counts() == {name: int(name == "shrunk") for name in CLASSES}
    assert result.changes[0].followup_volume_mm3 == 0.125 and result.changes[0].baseline_volume_mm3 == 27.0


def _match(before: float, after: float) -> LesionChange:
    return LesionChange("stable", (1,), (1,), before, after, None, None, None, (0.0, 0.0, 0.0), True)


@pytest.mark.parametrize(("before", "after", "expected"), [
    (10.0, 13.0, "enlarged"),  # exactly +30 % and 3 mm3: both limits count
    (10.0, 12.9, "stable"),
    (10.0, 7.0, "shrunk"),  # exactly -30 %
    (4.0, 6.0, "stable"),  # +50 % but only 2 mm3: a voxel or two on a tiny lesion
    (0.512 * 20, 0.512 * 26, "enlarged"),  # +30 % on 0.8 mm voxels, whatever the rounding
])
def test_one_to_one_thresholds(before: float, after: float, expected: str) -> None:
    assert grade_match(_match(before, after)).change == expected
