"""``spinal-lesion-seg models ...`` through the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from fake_models import (
    fold_zip,
    malicious_checkpoint_bytes,
    trainer_files,
    write_tree,
    write_zip,
)
from test_cli import _command


@pytest.fixture
def run(tmp_path: Path):
    env = {**os.environ, "SPINAL_LESION_SEG_HOME": str(tmp_path / "home")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*_command(), "models", *args], capture_output=True, text=True, env=env, timeout=120)

    return run


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spinal-lesion-seg: error: ")
    return lines[0]


def test_models_workflow(run, tmp_path: Path) -> None:
    listing = run("list", "--json")
    assert listing.returncode == 0, listing.stderr
    assert {entry["name"]: entry["installed"] for entry in json.loads(listing.stdout)
            if entry["kind"] == "published"} == dict.fromkeys(
        ["lesion_ms", "lesion_ms_cropped", "lesion_ms_axial_t2", "lesion_ms_mp2rage", "cord_contrast_agnostic"],
        False)

    source = write_tree(tmp_path / "Dataset101_Fake", trainer_files((0, 1), prefix="nnUNetTrainer__P__3d_fullres/"))
    installed = run("install", "mine", "--from", str(source))
    assert installed.returncode == 0, installed.stderr
    assert "mine: installed at" in installed.stdout
    folder = Path(run("path", "mine").stdout.strip())
    assert folder == tmp_path / "home" / "models" / "mine" / "nnUNetTrainer__P__3d_fullres"
    assert "already installed" in run("install", "mine", "--from", str(source)).stdout

    text = run("list")
    assert text.returncode == 0 and "mine" in text.stdout and "custom" in text.stdout
    assert str(tmp_path / "home" / "models") in text.stdout

    ok = run("verify", "mine")
    assert ok.returncode == 0 and "OK (6 files verified)" in ok.stdout
    checkpoint = folder / "fold_0" / "checkpoint_final.pth"
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    failed = run("verify", "mine")
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert f"{checkpoint}: sha256 mismatch" in failed.stderr and "FAILED" in failed.stderr
    # a custom model cannot be downloaded again: the advice names the folder it came from
    assert f"models install mine --force --from {source.resolve()}'" in failed.stderr

    removed = run("remove", "mine")
    assert removed.returncode == 0 and not folder.exists()
    assert "unknown model 'mine'" in _one_line_error(run("path", "mine"))


def test_offline_install_of_a_known_model_from_fold_zips(run, tmp_path: Path) -> None:
    zips = [str(fold_zip(tmp_path / f"model_fold{fold}.zip", fold)) for fold in range(5)]
    result = run("install", "lesion_ms", *(arg for path in zips for arg in ("--from", path)))
    assert result.returncode == 0, result.stderr
    assert run("verify", "lesion_ms").returncode == 0


def test_bad_input_is_one_line_and_exit_2(run, tmp_path: Path) -> None:
    evil = write_zip(tmp_path / "evil.zip", {**trainer_files((0,), prefix="m/"), "../evil.txt": b"x"})
    assert "refusing unsafe archive member '../evil.txt'" in _one_line_error(run("install", "x", "--from", str(evil)))
    assert "not installed" in _one_line_error(run("verify", "lesion_ms"))
    assert "unknown model 'nope'" in _one_line_error(run("install", "nope"))
    assert "invalid model name" in _one_line_error(run("remove", "../x"))
    marker = tmp_path / "EXECUTED"
    files = trainer_files((0,), prefix="m/")
    files["m/fold_0/checkpoint_final.pth"] = malicious_checkpoint_bytes(marker)
    crafted = write_zip(tmp_path / "crafted.zip", files)
    assert "checkpoint_final.pth: refused" in _one_line_error(run("install", "x", "--from", str(crafted)))
    assert not marker.exists()
    assert not (tmp_path / "home" / "models" / "x").exists()
