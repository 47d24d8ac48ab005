"""``spinal-lesion-seg stats``, ``evaluate`` and ``sweep`` through the installed console script, on real files."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from analysis_data import INTERIOR_SLICES, T2, box_lesion, disc_point_image, disc_points, load, save
from PIL import Image
from test_cli import _command


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*_command(), *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def case(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A lesion mask on the real cord (C2, C3 and C4 boxes plus one outside the cord), its soft map, discs."""
    folder = tmp_path_factory.mktemp("analysis")
    reference, labels = load(shared_data / T2 / "t2_seg-manual_labeled.nii.gz")
    cord = labels > 0
    lesions = {level: box_lesion(cord, INTERIOR_SLICES[level]) for level in (2, 3, 4)}
    mask = lesions[2] | lesions[3] | lesions[4]
    mask[2:4, 25:27, 2:4] = True  # outside the cord, > 10 mm from any label: counted as unassigned
    soft = np.where(mask, 0.75, 0.0) + np.where(cord & ~mask, 0.125, 0.0)  # exact in float32
    return {
        "mask": save(mask.astype(np.uint8), reference, folder / "sub-01_lesion.nii.gz"),
        "soft": save(soft.astype(np.float32), reference, folder / "sub-01_soft.nii.gz"),
        "discs": save(disc_point_image(labels.shape, disc_points(labels)), reference, folder / "discs.nii.gz"),
        "labels": shared_data / T2 / "t2_seg-manual_labeled.nii.gz",
        "cord": shared_data / T2 / "t2_seg-manual.nii.gz",
        "expected": {name: int(np.count_nonzero(lesions[level])) for name, level in
                     (("C2", 2), ("C3", 3), ("C4", 4))},
    }


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_help_lists_the_analysis_commands() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for command in ("stats", "evaluate", "sweep"):
        assert command in result.stdout


@pytest.mark.parametrize("levels", ["labels", "discs"])
def test_stats_writes_the_four_outputs(case: dict, tmp_path: Path, levels: str) -> None:
    result = _run("stats", "--lesion", case["mask"], "--soft", case["soft"], "--levels", case[levels],
                  "--cord", case["cord"], "-o", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "4 lesion(s)" in result.stdout
    levels_rows = _read_csv(tmp_path / "levels.csv")
    assert list(levels_rows[0]) == ["level", "lesion_count", "lesions_touching", "volume_mm3", "soft_volume_mm3",
                                    "voxel_count", "cord_volume_mm3", "lesion_load_pct"]
    by_level = {row["level"]: row for row in levels_rows}
    assert [row["level"] for row in levels_rows][-1] == "unassigned"
    # The 8-voxel lesion outside the cord lies > 10 mm from the labelled cord (unassigned), but between the
    # C2/C3 and C3/C4 discs, which bound C3 whatever the distance from the cord.
    expected = dict(case["expected"])
    if levels == "labels":
        expected["unassigned"] = 8
    else:
        expected["C3"] += 8
    for name, voxels in expected.items():
        assert float(by_level[name]["volume_mm3"]) == voxels
        assert float(by_level[name]["soft_volume_mm3"]) == pytest.approx(0.75 * voxels)
        assert by_level[name]["lesion_count"] == ("2" if name == "C3" and levels == "discs" else "1")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["lesion_count"] == 4
    assert summary["total_volume_mm3"] == sum(case["expected"].values()) + 8
    assert summary["unassigned_volume_mm3"] == expected.get("unassigned", 0)
    assert summary["connectivity"] == 18
    assert summary["levels_source"]["kind"] == {"labels": "cord-labels", "discs": "disc-points"}[levels]
    assert len(summary["inputs"]["lesion"]["sha256"]) == 64
    lesions = _read_csv(tmp_path / "lesions.csv")
    assert len(lesions) == 4
    outside = [row for row in lesions if float(row["outside_cord_volume_mm3"]) > 0]
    assert len(outside) == 1 and float(outside[0]["volume_mm3"]) == 8.0
    assert outside[0]["primary_level"] == {"labels": "unassigned", "discs": "C3"}[levels]
    label = sitk.ReadImage(str(tmp_path / "sub-01_lesion_lesion_label.nii.gz"))
    assert int(sitk.GetArrayViewFromImage(label).max()) == 4


def test_stats_options_connectivity_min_size_and_restriction(case: dict, tmp_path: Path) -> None:
    result = _run("stats", "--lesion", case["mask"], "--cord", case["cord"], "--restrict-to-cord",
                  "--connectivity", "6", "--min-size", "5", "-o", tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["lesion_count"] == 3
    assert summary["connectivity"] == 6
    assert summary["cord_restriction"]["removed_volume_mm3"] == 8.0
    assert summary["levels_source"] is None
    assert summary["unassigned_volume_mm3"] == summary["total_volume_mm3"]


@pytest.mark.parametrize(("args", "message"), [
    (("--lesion", "missing.nii.gz"), "file not found"),
    (("--lesion", "{soft}"), "probability map"),
    (("--lesion", "{mask}", "--levels", "{soft}"), "non-integer"),
    (("--lesion", "{mask}", "--restrict-to-cord"), "needs a cord mask"),
])
def test_stats_bad_input_is_one_line_and_exit_2(case: dict, tmp_path: Path, args: tuple, message: str) -> None:
    result = _run("stats", *(a.format(**case) for a in args), "-o", tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_stats_rejects_negative_sizes(case: dict, tmp_path: Path) -> None:
    result = _run("stats", "--lesion", case["mask"], "--min-size", "-1", "-o", tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_evaluate_pairs_and_json(case: dict, tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    result = _run("evaluate", "--ref", case["mask"], case["mask"], "--pred", case["mask"], case["cord"],
                  "--json", out)
    assert result.returncode == 0, result.stderr
    assert "mean" in result.stdout
    document = json.loads(out.read_text())
    first, second = document["cases"]
    assert first["dice"] == 1.0 and first["f1"] == 1.0 and first["tp"] == 4
    # The whole cord as prediction: one component covering the three cord lesions; the outside one is missed.
    assert (second["tp"], second["fp"], second["fn"]) == (3, 0, 1)
    assert document["mean"]["dice"] == pytest.approx((1.0 + second["dice"]) / 2)
    anima = _run("evaluate", "--ref", case["mask"], "--pred", case["cord"], "--rules", "anima")
    assert anima.returncode == 0 and "anima" in anima.stdout


def test_evaluate_unpaired_is_exit_2(case: dict) -> None:
    result = _run("evaluate", "--ref", case["mask"], case["mask"], "--pred", case["mask"])
    assert result.returncode == 2 and "pairs" in result.stderr and "Traceback" not in result.stderr


def test_sweep_writes_csv_json_and_a_png(case: dict, tmp_path: Path) -> None:
    result = _run("sweep", "--soft", case["soft"], case["soft"], "--ref", case["mask"], case["mask"], "-o", tmp_path)
    assert result.returncode == 0, result.stderr
    document = json.loads((tmp_path / "sweep.json").read_text())
    # Lesions are 0.75 and the rest of the cord 0.125: thresholds 0.15..0.70 give a perfect prediction.
    assert document["recommended"]["threshold"] == 0.15
    assert document["recommended"]["mean_f1"] == 1.0 and document["recommended"]["mean_dice"] == 1.0
    rows = _read_csv(tmp_path / "sweep.csv")
    assert len(rows) == 19 * 3  # mean + two cases
    assert {row["case"] for row in rows} == {"mean", str(case["soft"]), f"{case['soft']}#2"}
    with Image.open(tmp_path / "sweep.png") as png:
        assert png.format == "PNG" and png.size[0] >= 800
