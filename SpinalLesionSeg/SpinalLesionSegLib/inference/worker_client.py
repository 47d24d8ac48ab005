"""Drive the background worker from a GUI without ever blocking it.

Slicer's GUI thread must never wait on a pipe (reading a child's output there froze SlicerTotalSegmentator). The
client starts ``python -m SpinalLesionSegLib.inference.worker --serve`` in its own process group, a daemon thread
reads the worker's JSON lines into a queue, and the GUI calls :meth:`WorkerClient.poll` from a timer: it returns
whatever arrived and never waits. :meth:`WorkerClient.cancel` kills the worker's whole process tree
(``PythonSlicer`` is a launcher: killing its pid alone would leave the real Python running), and the next job starts
a fresh worker.

The interpreter is Slicer's own (``PythonSlicer``) or any Python that has torch and nnunetv2 (a lab's CUDA
environment); this package is put on its ``PYTHONPATH``.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import IO, Any

from .protocol import Error, Job, Log, Message, ProtocolError, Result, message_from_json

#: Folder that holds the SpinalLesionSegLib package (the Slicer module folder, or site-packages).
PACKAGE_PARENT = Path(__file__).resolve().parents[2]


def start_package_process(python: str, args: list[str], env: dict[str, str] | None = None, *,
                          stdin: bool = False) -> subprocess.Popen[str]:
    """Start ``python ARGS`` with this package importable, in its own process group, with piped text output."""
    env = dict(env if env is not None else os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_PARENT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    options: dict[str, Any] = {}
    if os.name == "nt":  # its own process group, and no console window popping up beside Slicer
        options["creationflags"] = (subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
                                    | subprocess.CREATE_NO_WINDOW)  # type: ignore[attr-defined]
    else:
        options["start_new_session"] = True  # its own process group: one signal reaches the whole tree
    return subprocess.Popen([python, *args], stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, env=env, **options)


def kill_process_tree(process: subprocess.Popen[str] | None) -> None:
    """Kill a process started by :func:`start_package_process` and everything it started."""
    if process is None or process.poll() is not None:
        return
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True)
    else:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


class BackgroundCommand:
    """A ``spinal-lesion-seg`` command (e.g. ``models install``) run in the background; :meth:`poll` returns its
    new output lines and never blocks. Used by the panel for downloads that take minutes."""

    def __init__(self, python: str | os.PathLike[str] | None, args: list[str],
                 env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.process = start_package_process(os.fspath(python) if python else sys.executable,
                                             ["-m", "SpinalLesionSegLib", *args], env)
        self._lines: queue.Queue[str] = queue.Queue()
        self._readers = [threading.Thread(target=self._read, args=(stream,), daemon=True)
                         for stream in (self.process.stdout, self.process.stderr)]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self._lines.put(line.rstrip("\r\n"))

    def poll(self) -> tuple[list[str], int | None]:
        """(new output lines, exit code or None while running)."""
        code = self.process.poll()
        if code is not None:  # the process has ended: its pipes close at once, collect their last lines
            for reader in self._readers:
                reader.join(timeout=1.0)
        lines = []
        while True:
            try:
                lines.append(self._lines.get_nowait())
            except queue.Empty:
                return lines, code

    def cancel(self) -> None:
        kill_process_tree(self.process)


class WorkerClient:
    """One persistent worker process; jobs go in with :meth:`submit`, messages come out with :meth:`poll`."""

    def __init__(self, python: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> None:
        """``python``: the interpreter to run the worker with (default: this one)."""
        self.python = os.fspath(python) if python else sys.executable
        self.env = env
        self.process: subprocess.Popen[str] | None = None
        self._messages: queue.Queue[Message] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=200)
        self._stderr_reader: threading.Thread | None = None
        self._ids = itertools.count(1)
        self._pending: set[str] = set()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def busy(self) -> bool:
        """True while a submitted job has not yet produced its result or error."""
        return bool(self._pending)

    def _start(self) -> None:
        try:
            self.process = start_package_process(
                self.python, ["-m", "SpinalLesionSegLib.inference.worker", "--serve"], self.env, stdin=True)
        except OSError as error:
            self.process = None
            raise RuntimeError(f"cannot start the worker with {self.python}: {error}") from None
        self._stderr.clear()
        self._stderr_reader = threading.Thread(target=self._read_stderr, args=(self.process.stderr,), daemon=True)
        self._stderr_reader.start()
        threading.Thread(target=self._read_stdout, args=(self.process,), daemon=True).start()

    def _read_stdout(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            try:
                message: Message = message_from_json(line)
            except ProtocolError:  # not a protocol line (should not happen): show it in the log as it is
                message = Log(line.rstrip())
            self._messages.put(message)
        code = process.wait()
        if code != 0 and process is self.process:  # died on its own (not cancelled): tell the GUI, with the log
            if self._stderr_reader is not None:
                self._stderr_reader.join(timeout=2.0)  # its last stderr lines explain why
            self._messages.put(Error(f"the worker stopped unexpectedly (exit code {code})", list(self._stderr)))

    def _read_stderr(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self._stderr.append(line.rstrip())

    def submit(self, job: Job) -> str:
        """Send a job; start the worker first if needed. Returns the job id (one is given to a job without)."""
        if not self.running:
            self._start()
        if job.id is None:
            job = dataclasses.replace(job, id=f"job-{next(self._ids)}")
        assert self.process is not None and self.process.stdin is not None and job.id is not None
        self._pending.add(job.id)
        try:
            self.process.stdin.write(job.to_json() + "\n")
            self.process.stdin.flush()
        except OSError:
            pass  # the worker died at start-up; the reader thread reports its exit code and log
        return job.id

    def poll(self) -> list[Message]:
        """Every message that has arrived since the last call (possibly none). Never blocks."""
        messages = []
        while True:
            try:
                message = self._messages.get_nowait()
            except queue.Empty:
                return messages
            if isinstance(message, (Result, Error)):
                if message.id is None:  # the worker itself failed: no job of it will finish
                    self._pending.clear()
                self._pending.discard(str(message.id))
            messages.append(message)

    def cancel(self) -> None:
        """Kill the worker and everything it started, now. Outputs are never half-written (atomic writes)."""
        process, self.process = self.process, None
        self._pending.clear()
        kill_process_tree(process)

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the worker: close its input so it exits after the job in hand, kill it after ``timeout_s``."""
        process = self.process
        if process is None:
            return
        if process.poll() is None and process.stdin is not None:
            try:
                process.stdin.close()
                process.wait(timeout=timeout_s)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.cancel()
