"""The installed ``spinal-lesion-seg`` console command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from SpinalLesionSegLib import __version__
from SpinalLesionSegLib.cli.analysis import level_lines


def _command() -> list[str]:
    """The console script installed next to this interpreter (as the README's setup installs it)."""
    script = Path(sys.executable).with_name("spinal-lesion-seg")
    if not script.exists():
        found = shutil.which("spinal-lesion-seg")
        if found is None:
            pytest.fail("console script 'spinal-lesion-seg' is not installed; run scripts/setup.sh")
        script = Path(found)
    return [str(script)]


def test_version() -> None:
    result = subprocess.run([*_command(), "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.strip() == f"spinal-lesion-seg {__version__}"


def test_help_lists_commands() -> None:
    result = subprocess.run([*_command(), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "info" in result.stdout
    bare = subprocess.run(_command(), capture_output=True, text=True)
    assert bare.returncode == 0 and "usage:" in bare.stdout


def test_unknown_option_is_a_usage_error() -> None:
    result = subprocess.run([*_command(), "info", "--frobnicate", "x.nii"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_info_json_on_real_images(t2_path: Path, t2_ms_path: Path) -> None:
    result = subprocess.run([*_command(), "info", "--json", str(t2_path), str(t2_ms_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info[str(t2_path)]["size"] == [60, 55, 52]
    assert info[str(t2_path)]["orientation"] == "PSR"
    assert info[str(t2_ms_path)]["orientation"] == "LAS"
    assert info[str(t2_ms_path)]["orientation_sct"] == "RPI"
    assert info[str(t2_ms_path)]["voxel_volume_mm3"] == pytest.approx(0.6875 * 0.6875 * 7.5, rel=1e-5)


def test_info_reports_each_bad_file_and_still_describes_the_good_ones(t2_path: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.nii.gz"
    result = subprocess.run([*_command(), "info", str(missing), str(t2_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert str(t2_path) in result.stdout
    assert result.stderr.strip() == f"spinal-lesion-seg: error: {missing}: file not found"


def test_demo_prints_the_per_level_table_and_writes_the_statistics(tmp_path: Path) -> None:
    """The main job on the embedded default: phantom -> demo model -> outputs, summary and per-level statistics
    (levels from the phantom's labelled cord)."""
    result = subprocess.run([sys.executable, "-m", "SpinalLesionSegLib", "demo", "-o", str(tmp_path), "--device",
                             "cpu", "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["per_level"] and all(row["lesions_touching"] for row in summary["per_level"].values())
    assert {Path(p).name for p in summary["stats"]} >= {"lesions.csv", "levels.csv", "summary.json"}
    stats = json.loads((tmp_path / "stats" / "summary.json").read_text())
    assert abs(stats["total_volume_mm3"] - summary["predicted_volume_mm3"]) < 0.1
    assert [Path(p).name for p in summary["report"]] == ["report.html", "report.pdf"]
    assert all(Path(p).stat().st_size > 1000 for p in summary["report"])
    lines = level_lines(stats)
    assert lines[0].startswith(f"{stats['lesion_count']} lesion(s)") and any("(primary)" in line for line in lines)
