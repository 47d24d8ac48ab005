"""The GUI-side worker client: non-blocking polling, persistent model, cancel kills the whole process tree."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from SpinalLesionSegLib.image_io import write_image
from SpinalLesionSegLib.phantom import make_phantom
from SpinalLesionSegLib import __version__
from SpinalLesionSegLib.inference.worker_client import BackgroundCommand, WorkerClient


def _wait_for(client: WorkerClient, kind: str, timeout_s: float = 240) -> tuple[dict, list[dict]]:
    """Poll as a GUI timer would, until a message of ``kind`` arrives; return it and everything seen."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for message in client.poll():
            seen.append(message)
            if message["type"] == kind or message["type"] == "error":
                return message, seen
        time.sleep(0.05)
    pytest.fail(f"no {kind} message within {timeout_s} s; saw {seen[-3:]}")


def _job(source: Path, out: Path) -> dict:
    return {"inputs": [str(source)], "output_dir": str(out), "model": "demo", "device": "cpu"}


def test_jobs_run_in_the_background_and_the_model_stays_loaded(tmp_path: Path, t2_path: Path) -> None:
    client = WorkerClient()
    try:
        first = client.submit(_job(t2_path, tmp_path / "a"))
        assert client.busy
        assert not any(m["type"] == "result" for m in client.poll()), "poll must return at once, not wait"
        result, seen = _wait_for(client, "result")
        assert result["type"] == "result" and result["id"] == first, result
        assert any(m["type"] == "progress" for m in seen)
        assert not client.busy
        assert result["model_load_s"] > 0
        second = client.submit(_job(t2_path, tmp_path / "b"))
        result, _ = _wait_for(client, "result")
        assert result["id"] == second and result["model_load_s"] == 0.0
        assert Path(result["results"][0]["outputs"]["lesion_soft"]).is_file()
    finally:
        client.stop()
    assert not client.running


def test_cancel_kills_the_whole_process_tree_and_the_next_job_restarts(tmp_path: Path) -> None:
    phantom = make_phantom(5, contrast="T2w", spacing=(0.5, 0.5, 0.5))  # large enough to take seconds
    source = write_image(phantom.image, tmp_path / "big_T2w.nii.gz")
    client = WorkerClient()
    try:
        client.submit(_job(source, tmp_path / "cancelled"))
        while True:
            message, _ = _wait_for(client, "progress")
            if message.get("stage", "").startswith("predict fold"):
                break
        pid = client.process.pid
        client.cancel()
        assert not client.running and not client.busy
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # no process of the worker's group is left
        assert not (tmp_path / "cancelled").exists() or not any((tmp_path / "cancelled").iterdir())
        assert client.poll() == [] or all(m["type"] != "error" for m in client.poll())
        client.submit(_job(source, tmp_path / "again"))
        result, _ = _wait_for(client, "result")
        assert result["type"] == "result", result
    finally:
        client.stop()


def test_a_worker_that_cannot_start_or_dies_is_reported(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="cannot start the worker"):
        WorkerClient(python=str(tmp_path / "no-such-python")).submit({"inputs": [], "output_dir": "x"})
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named torch' >&2\nexit 3\n")
    broken.chmod(0o755)
    client = WorkerClient(python=str(broken))
    client.submit({"inputs": ["x.nii.gz"], "output_dir": str(tmp_path)})
    message, _ = _wait_for(client, "result", timeout_s=30)
    assert message["type"] == "error" and "exit code 3" in message["message"]
    assert any("torch" in line for line in message["log"])


def test_background_command_reports_output_and_exit_code() -> None:
    command = BackgroundCommand(None, ["--version"])
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new, code = command.poll()
        lines += new
        if code is not None:
            break
        time.sleep(0.05)
    assert code == 0 and f"spinal-lesion-seg {__version__}" in lines
    failing = BackgroundCommand(None, ["info", "/no/such/file.nii.gz"])
    while (result := failing.poll())[1] is None:
        time.sleep(0.05)
    assert result[1] == 2
