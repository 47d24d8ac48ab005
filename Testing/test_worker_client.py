"""The GUI-side worker client: non-blocking polling, persistent model, cancel kills the whole process tree."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from SpinalLesionSegLib import __version__
from SpinalLesionSegLib.image_io import write_image
from SpinalLesionSegLib.inference.protocol import Error, Job, Message, Progress, Result
from SpinalLesionSegLib.inference.worker_client import BackgroundCommand, WorkerClient
from SpinalLesionSegLib.phantom import make_phantom


def _wait_for(client: WorkerClient, kind: type, timeout_s: float = 240) -> tuple[Message, list[Message]]:
    """Poll as a GUI timer would, until a message of type ``kind`` (or an error) arrives; return it and all seen."""
    seen: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for message in client.poll():
            seen.append(message)
            if isinstance(message, (kind, Error)):
                return message, seen
        time.sleep(0.05)
    pytest.fail(f"no {kind} message within {timeout_s} s; saw {seen[-3:]}")


def _job(source: Path, out: Path) -> Job:
    return Job(inputs=[str(source)], output_dir=str(out), model="demo", device="cpu")


def test_jobs_run_in_the_background_and_the_model_stays_loaded(tmp_path: Path, t2_path: Path) -> None:
    client = WorkerClient()
    try:
        first = client.submit(_job(t2_path, tmp_path / "a"))
        assert client.busy
        assert not any(isinstance(m, Result) for m in client.poll()), "poll must return at once, not wait"
        result, seen = _wait_for(client, Result)
        assert isinstance(result, Result) and result.id == first, result
        assert any(isinstance(m, Progress) for m in seen)
        assert not client.busy
        assert result.model_load_s > 0
        second = client.submit(_job(t2_path, tmp_path / "b"))
        result, _ = _wait_for(client, Result)
        assert result.id == second and result.model_load_s == 0.0
        assert Path(result.results[0]["outputs"]["lesion_soft"]).is_file()
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
            message, _ = _wait_for(client, Progress)
            if isinstance(message, Progress) and message.stage.startswith("predict fold"):
                break
        pid = client.process.pid
        client.cancel()
        assert not client.running and not client.busy
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # no process of the worker's group is left
        assert not (tmp_path / "cancelled").exists() or not any((tmp_path / "cancelled").iterdir())
        assert not any(isinstance(m, Error) for m in client.poll())
        client.submit(_job(source, tmp_path / "again"))
        result, _ = _wait_for(client, Result)
        assert isinstance(result, Result), result
    finally:
        client.stop()


def test_a_worker_that_cannot_start_or_dies_is_reported(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="cannot start the worker"):
        WorkerClient(python=str(tmp_path / "no-such-python")).submit(Job(inputs=[], output_dir="x"))
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named torch' >&2\nexit 3\n")
    broken.chmod(0o755)
    client = WorkerClient(python=str(broken))
    client.submit(Job(inputs=["x.nii.gz"], output_dir=str(tmp_path)))
    message, _ = _wait_for(client, Result, timeout_s=30)
    assert isinstance(message, Error) and "exit code 3" in message.message
    assert any("torch" in line for line in message.log)
    assert not client.busy


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


def test_the_session_decodes_lines_tracks_jobs_and_reports_a_death() -> None:
    """The bookkeeping both transports share (reader threads here, QProcess signals in Slicer)."""
    from SpinalLesionSegLib.inference.protocol import Log
    from SpinalLesionSegLib.inference.worker_client import WorkerSession

    session = WorkerSession()
    job_id, line = session.job_line(Job(inputs=["a.nii.gz"], output_dir="out"))
    assert line.endswith("\n") and Job.from_json(line).id == job_id and session.busy
    session.stdout_line('{"type": "progress", "stage": "predict fold 0", "fraction": 0.5, "id": "%s"}\n' % job_id)
    session.stdout_line("not a protocol line\n")
    session.stderr_line("RuntimeError: CUDA out of memory\n")
    session.exited(1)
    messages = session.poll()
    assert isinstance(messages[0], Progress) and isinstance(messages[1], Log)
    assert isinstance(messages[2], Error) and "exit code 1" in messages[2].message
    assert messages[2].log == ["RuntimeError: CUDA out of memory"] and not session.busy
    session.exited(0)
    assert session.poll() == []


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads the process tree from /proc (Linux)")
def test_the_worker_ends_with_the_launcher_that_started_it() -> None:
    """Slicer's PythonSlicer is a launcher running the real interpreter as a child; a Qt process can kill only the
    launcher. A shell stands in for it here: killing it must end the worker (--exit-with-parent)."""
    import signal
    import subprocess
    import sys

    from SpinalLesionSegLib.inference.worker_client import WORKER_ARGS, package_environment

    command = " ".join([sys.executable, *WORKER_ARGS]) + "; true"  # '; true': the shell keeps the worker a child
    launcher = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=package_environment())
    try:
        deadline = time.monotonic() + 30
        while not _children(launcher.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        (worker,) = _children(launcher.pid)
        time.sleep(1.0)  # the worker is up and serving
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        deadline = time.monotonic() + 5
        while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        state = Path(f"/proc/{worker}/stat").read_text().split()[2] if Path(f"/proc/{worker}").exists() else "gone"
        assert state in ("gone", "Z"), f"the worker outlived its launcher (state {state})"
    finally:
        launcher.kill()


def test_stopping_never_blocks_the_caller(tmp_path: Path) -> None:
    """Closing the scene stops the worker: the GUI must not wait for the job in hand."""
    client = WorkerClient()
    client.submit(Job(inputs=[], output_dir=str(tmp_path)))
    started = time.monotonic()
    client.stop()
    assert time.monotonic() - started < 0.5 and not client.running
