"""Output locations checked before any work, corrected masks never overwritten, same-name inputs refused
(outputs.py; data-safety findings 2 and 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import MODULE_DIR
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.image_io import remove_stale_temporaries, sha256_file
from SpinalLesionSegLib.outputs import check_distinct_names, check_not_corrected, writable_file, writable_folder

DEMO = MODULE_DIR / "Resources" / "Models" / "demo"


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "SpinalLesionSegLib", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_an_unwritable_output_is_refused_in_one_line(tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        writable_folder(a_file)
    with pytest.raises(InputError, match="cannot write here"):
        writable_folder(a_file / "out")  # root passes permission checks: only a real attempt tells
    with pytest.raises(InputError, match="is a folder"):
        writable_file(tmp_path)
    assert writable_folder(tmp_path / "new" / "deep").is_dir()
    assert not [p for p in (tmp_path / "new" / "deep").iterdir()], "the probe file is removed"


@pytest.mark.parametrize("command", [
    ["predict", "{image}", "--device", "cpu", "-o", "{out}"],
    ["demo", "--device", "cpu", "-o", "{out}"],
    ["stats", "--lesion", "{image}", "-o", "{out}"],
    ["sweep", "--soft", "{image}", "--ref", "{image}", "-o", "{out}"],
    ["phantom", "-o", "{out}"],
    ["evaluate", "--ref", "{image}", "--pred", "{image}", "--json", "{out}/metrics.json"],
    ["report", "--image", "{image}", "--lesion", "{image}", "-o", "{out}"],
    ["compare", "--baseline", "{image}", "--baseline-lesion", "{image}", "--followup", "{image}",
     "--followup-lesion", "{image}", "-o", "{out}"],
], ids=lambda c: c[0])
def test_every_writing_command_checks_its_output_before_any_work(tmp_path: Path, t2_path: Path, command) -> None:
    """An output path under an existing file: one line, exit 2, no traceback, before any model or image is read."""
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    args = [part.format(image=t2_path, out=a_file / "out") for part in command]
    started = time.monotonic()
    result = _cli(*args, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert str(a_file / "out") in result.stderr and time.monotonic() - started < 20


def _predict(image: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return _cli("predict", str(image), "-o", str(out), "--model", str(DEMO), "--device", "cpu", "--folds", "0",
                *extra)


def test_a_corrected_mask_is_never_overwritten(tmp_path: Path, t2_path: Path) -> None:
    out = tmp_path / "out"
    assert _predict(t2_path, out).returncode == 0
    mask = out / "t2_lesion_seg.nii.gz"
    sidecar = json.loads((out / "t2_lesion_seg.json").read_text())
    assert set(sidecar["written_sha256"]) >= {"lesion_seg", "lesion_soft"}
    assert _predict(t2_path, out).returncode == 0, "our own untouched outputs are replaced"

    corrected = sitk.ReadImage(str(mask))
    array = sitk.GetArrayFromImage(corrected)
    array[10:12, 20:22, 30:32] = 1  # a person paints a lesion
    painted = sitk.GetImageFromArray(array)
    painted.CopyInformation(corrected)
    sitk.WriteImage(painted, str(mask))
    before = mask.read_bytes()
    result = _predict(t2_path, out)
    assert result.returncode == 2 and "differs from what spinal-lesion-seg wrote" in result.stderr
    assert str(mask) in result.stderr and "Traceback" not in result.stderr
    assert mask.read_bytes() == before, "the correction is intact"
    assert _predict(t2_path, out, "--overwrite").returncode == 0
    assert mask.read_bytes() != before


def test_the_rule_itself(tmp_path: Path) -> None:
    mask, sidecar = tmp_path / "a_lesion_seg.nii.gz", tmp_path / "a_lesion_seg.json"
    outputs = {"lesion_seg": mask, "sidecar": sidecar}
    check_not_corrected(outputs, sidecar, overwrite=False)  # nothing there yet
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4), np.uint8)), str(mask))
    check_not_corrected(outputs, sidecar, overwrite=False)  # no sidecar: a killed run's leftovers
    sidecar.write_text(json.dumps({"outputs": {}}))
    with pytest.raises(InputError, match="not vouched for"):
        check_not_corrected(outputs, sidecar, overwrite=False)
    check_not_corrected(outputs, sidecar, overwrite=True)


def test_inputs_with_the_same_name_are_refused_up_front(tmp_path: Path, t2_path: Path) -> None:
    copy = tmp_path / "other" / "t2.nii.gz"
    copy.parent.mkdir()
    copy.write_bytes(t2_path.read_bytes())
    with pytest.raises(InputError, match="same name"):
        check_distinct_names([t2_path, copy])
    check_distinct_names([t2_path, t2_path.with_name("t2_seg-manual.nii.gz")])
    started = time.monotonic()
    result = _predict(t2_path, tmp_path / "out")  # one input: fine
    assert result.returncode == 0
    result = _cli("predict", str(t2_path), str(copy), "-o", str(tmp_path / "out2"), "--model", str(DEMO),
                  "--device", "cpu")
    assert result.returncode == 2 and "same name" in result.stderr and not list((tmp_path / "out2").glob("*.nii.gz"))
    assert time.monotonic() - started < 120


def test_concurrent_runs_into_one_folder_never_crash_or_mix(tmp_path: Path, t2_path: Path) -> None:
    """Three predictions of the same scan into one folder at once: each ends with its result or a one-line refusal
    (never a traceback: a clean-up spares live writers' temporaries), and the set left is complete and consistent."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "SpinalLesionSegLib", "predict", str(t2_path), "-o", str(out), "--model",
               str(DEMO), "--device", "cpu", "--folds", "0"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    assert all(code in (0, 2) and "Traceback" not in err for code, err in results), results
    assert any(code == 0 for code, _ in results)
    sidecar = json.loads((out / "t2_lesion_seg.json").read_text())
    for role, digest in sidecar["written_sha256"].items():
        assert sha256_file(sidecar["outputs"][role]) == digest, role
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "no temporary left behind"


def test_a_killed_writers_temporaries_are_removed_a_live_writers_kept(tmp_path: Path) -> None:
    target = tmp_path / "case_lesion_seg.nii.gz"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".{target.name}.{dead.pid}.abc123.partial.nii.gz"
    live = tmp_path / f".{target.name}.{os.getppid()}.def456.partial.nii.gz"
    mine = tmp_path / f".{target.name}.{os.getpid()}.ghi789.partial.nii.gz"
    for path in (stale, live, mine):
        path.write_bytes(b"partial")
    remove_stale_temporaries(target)
    assert not stale.exists() and live.exists() and mine.exists()
