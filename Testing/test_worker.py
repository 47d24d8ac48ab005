"""The background worker process: JSON lines protocol, serve mode, clear errors, and no partial outputs when killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import MODULE_DIR
from SpinalLesionSegLib import defaults
from SpinalLesionSegLib.image_io import write_image
from SpinalLesionSegLib.phantom import make_phantom

DEMO = MODULE_DIR / "Resources" / "Models" / "demo"


def _worker(*args: str, stdin: str | None = None, timeout: float = 300) -> tuple[int, list[dict]]:
    result = subprocess.run([sys.executable, "-m", "SpinalLesionSegLib.inference.worker", *args], input=stdin,
                            capture_output=True, text=True, timeout=timeout)
    lines = [json.loads(line) for line in result.stdout.splitlines()]  # stdout must be JSON lines only
    return result.returncode, lines


def _job(tmp_path: Path, inputs: list[str], **extra) -> dict:
    return {"id": "job-1", "inputs": inputs, "output_dir": str(tmp_path / "out"), "model": str(DEMO),
            "device": "cpu", **extra}


def test_a_job_reports_progress_and_a_result(tmp_path: Path, t2_path: Path) -> None:
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(_job(tmp_path, [str(t2_path)])))
    code, lines = _worker(str(job_file))
    assert code == 0, lines
    kinds = [line["type"] for line in lines]
    assert "progress" in kinds and kinds[-1] == "result"
    assert all(line.get("id") == "job-1" for line in lines)
    fractions = [line["fraction"] for line in lines if line["type"] == "progress"]
    assert fractions[-1] == 1.0
    result = lines[-1]["results"][0]
    for key in ("lesion_seg", "lesion_soft", "sidecar"):
        assert Path(result["outputs"][key]).is_file()
    assert result["device"]["name"] == "cpu"


@pytest.mark.parametrize("payload, phrase", [
    ("{not json", "malformed job"),
    (json.dumps(["a list"]), "JSON object"),
    (json.dumps({"inputs": ["x.nii.gz"]}), "output_dir"),
    (json.dumps({"inputs": ["x.nii.gz"], "output_dir": "o", "speed": "fast"}), "unknown job key"),
])
def test_malformed_jobs_get_one_clear_error_line(payload: str, phrase: str) -> None:
    code, lines = _worker("-", stdin=payload)
    assert code == 2
    assert len(lines) == 1 and lines[0]["type"] == "error"
    assert phrase in lines[0]["message"]
    assert "\n" not in lines[0]["message"]


def test_a_bad_image_is_named_in_the_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken_T2w.nii.gz"
    bad.write_bytes(b"not an image at all" * 10)
    code, lines = _worker("-", stdin=json.dumps(_job(tmp_path, [str(bad)])))
    assert code == 2
    error = lines[-1]
    assert error["type"] == "error" and str(bad) in error["message"]
    assert isinstance(error["log"], list)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_serve_mode_keeps_the_model_loaded(tmp_path: Path, t2_path: Path) -> None:
    jobs = [dict(_job(tmp_path, [str(t2_path)]), id=str(n), output_dir=str(tmp_path / f"out{n}")) for n in (1, 2)]
    code, lines = _worker("--serve", stdin="\n".join(json.dumps(j) for j in jobs) + "\n")
    assert code == 0
    results = {line["id"]: line for line in lines if line["type"] == "result"}
    assert set(results) == {"1", "2"}
    assert results["1"]["model_load_s"] > 0
    assert results["2"]["model_load_s"] == 0.0
    assert not any(line["type"] == "progress" and line["stage"] == "load model" and line["id"] == "2"
                   for line in lines)


@pytest.mark.parametrize("kill_at", ["predict fold", "export"])
def test_killing_the_worker_leaves_no_partial_output(tmp_path: Path, kill_at: str) -> None:
    """Killed while predicting: nothing under an output name. Killed while exporting: whatever exists under an
    output name is complete (written to a hidden temporary name, then renamed), and the sidecar, written last,
    exists only if every image does."""
    import SimpleITK as sitk

    phantom = make_phantom(3, contrast="T2w")
    source = str(write_image(phantom.image, tmp_path / "in" / "case_T2w.nii.gz"))
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "SpinalLesionSegLib.inference.worker", "-"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    process.stdin.write(json.dumps(dict(_job(tmp_path, [source]), output_dir=str(out))))
    process.stdin.close()
    deadline = time.monotonic() + 240
    for line in process.stdout:  # wait for the stage, then kill the whole process group at once
        if json.loads(line).get("stage", "").startswith(kill_at) or time.monotonic() > deadline:
            break
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    finals = sorted(p for p in out.glob("*") if not p.name.startswith(".")) if out.exists() else []
    if kill_at == "predict fold":
        assert finals == []
    for path in finals:
        if path.suffix == ".gz":
            assert sitk.ReadImage(str(path)).GetSize() == phantom.image.GetSize()
    if any(p.name.endswith(".json") for p in finals):
        assert len(finals) == 3
    # A new run cleans any hidden temporary file the killed one left, and completes.
    code, lines = _worker("-", stdin=json.dumps(dict(_job(tmp_path, [source]), output_dir=str(out))))
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(v).name for v in lines[-1]["results"][0]["outputs"].values())


def test_the_former_entry_point_and_job_keys_still_work(tmp_path: Path, t2_path: Path) -> None:
    """Scripts written before the worker moved: ``python -m SpinalLesionSegLib.worker`` and a job spelled as then
    (integer id, nulls for defaults, roi_box corners as ras_min/ras_max) give the same outputs and fields."""
    job = {"id": 7, "inputs": [str(t2_path)], "output_dir": str(tmp_path / "out"), "model": str(DEMO),
           "device": "cpu", "folds": [0], "threshold": None, "contrast": None,
           "roi_box": {"ras_min": [-30.0, -40.0, -60.0], "ras_max": [30.0, 40.0, 60.0]}}
    result = subprocess.run([sys.executable, "-m", "SpinalLesionSegLib.worker", "-"], input=json.dumps(job),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert {line["type"] for line in lines} <= {"log", "progress", "result"} and lines[-1]["type"] == "result"
    assert all(line["id"] == "7" for line in lines)
    assert {"results", "model_load_s", "device"} <= set(lines[-1])
    sidecar = json.loads(Path(lines[-1]["results"][0]["outputs"]["sidecar"]).read_text())
    assert sidecar["threshold"] == defaults.THRESHOLD and sidecar["roi"]["ras_min_mm"] == [-30.0, -40.0, -60.0]
