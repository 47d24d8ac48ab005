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
#: How the worker is started: serving jobs from stdin, and ending itself when the process that started it dies
#: (Slicer's PythonSlicer is a launcher: killing it alone would leave the real interpreter running).
WORKER_ARGS = ("-m", "SpinalLesionSegLib.inference.worker", "--serve", "--exit-with-parent")
#: Seconds a stopped worker gets to finish the job in hand before it is killed (the caller never waits).
STOP_GRACE_S = 5.0


def package_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with this package importable and unbuffered output."""
    env = dict(env if env is not None else os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_PARENT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_package_process(python: str, args: list[str] | tuple[str, ...], env: dict[str, str] | None = None, *,
                          stdin: bool = False) -> subprocess.Popen[str]:
    """Start ``python ARGS`` with this package importable, in its own process group, with piped text output."""
    env = package_environment(env)
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


class WorkerSession:
    """What a client knows of its worker, whatever carries the bytes (threads here; Qt's QProcess in Slicer,
    :mod:`..mrml.qt_worker`): jobs in flight, messages decoded from stdout lines, recent stderr, the worker's
    death. The transport calls :meth:`stdout_line`, :meth:`stderr_line` and :meth:`exited`; the GUI calls
    :meth:`poll`."""

    def __init__(self) -> None:
        self._messages: queue.Queue[Message] = queue.Queue()
        self.stderr: deque[str] = deque(maxlen=200)
        self._ids = itertools.count(1)
        self._pending: set[str] = set()

    @property
    def busy(self) -> bool:
        """True while a submitted job has not yet produced its result or error."""
        return bool(self._pending)

    def job_line(self, job: Job) -> tuple[str, str]:
        """(job id, the JSON line to write to the worker's stdin); a job without an id gets one."""
        if job.id is None:
            job = dataclasses.replace(job, id=f"job-{next(self._ids)}")
        assert job.id is not None
        self._pending.add(job.id)
        return job.id, job.to_json() + "\n"

    def stdout_line(self, line: str) -> None:
        try:
            message: Message = message_from_json(line)
        except ProtocolError:  # not a protocol line (should not happen): show it in the log as it is
            message = Log(line.rstrip())
        self._messages.put(message)

    def stderr_line(self, line: str) -> None:
        self.stderr.append(line.rstrip())

    def exited(self, code: int) -> None:
        """The worker ended on its own: a non-zero code becomes an error message carrying its last stderr lines."""
        if code != 0:
            self._messages.put(Error(f"the worker stopped unexpectedly (exit code {code})", list(self.stderr)))

    def forget(self) -> None:
        """The worker was cancelled: no job of it will finish."""
        self._pending.clear()

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


class WorkerClient:
    """One persistent worker process; jobs go in with :meth:`submit`, messages come out with :meth:`poll`. Reader
    threads carry the bytes: right for scripts and tests; Slicer uses :mod:`..mrml.qt_worker` (same interface)."""

    def __init__(self, python: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> None:
        """``python``: the interpreter to run the worker with (default: this one); ``env``: its environment."""
        self.python = os.fspath(python) if python else sys.executable
        self.env = env
        self.process: subprocess.Popen[str] | None = None
        self.session = WorkerSession()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def busy(self) -> bool:
        return self.session.busy

    def _start(self) -> None:
        try:
            self.process = start_package_process(self.python, WORKER_ARGS, self.env, stdin=True)
        except OSError as error:
            self.process = None
            raise RuntimeError(f"cannot start the worker with {self.python}: {error}") from None
        self.session.stderr.clear()
        stderr_reader = threading.Thread(target=self._read_stderr, args=(self.process.stderr,), daemon=True)
        stderr_reader.start()
        threading.Thread(target=self._read_stdout, args=(self.process, stderr_reader), daemon=True).start()

    def _read_stdout(self, process: subprocess.Popen[str], stderr_reader: threading.Thread) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.session.stdout_line(line)
        code = process.wait()
        if process is self.process:  # ended on its own (not cancelled or stopped)
            stderr_reader.join(timeout=2.0)  # its last stderr lines explain why
            self.session.exited(code)

    def _read_stderr(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self.session.stderr_line(line)

    def submit(self, job: Job) -> str:
        """Send a job; start the worker first if needed. Returns the job id (one is given to a job without)."""
        if not self.running:
            self._start()
        assert self.process is not None and self.process.stdin is not None
        job_id, line = self.session.job_line(job)
        try:
            self.process.stdin.write(line)
            self.process.stdin.flush()
        except OSError:
            pass  # the worker died at start-up; the reader thread reports its exit code and log
        return job_id

    def poll(self) -> list[Message]:
        return self.session.poll()

    def cancel(self) -> None:
        """Kill the worker and everything it started, now. Outputs are never half-written (atomic writes)."""
        process, self.process = self.process, None
        self.session.forget()
        kill_process_tree(process)

    def stop(self) -> None:
        """End the worker without waiting: close its input, so it exits after the job in hand, and kill it after
        :data:`STOP_GRACE_S` seconds if it has not."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            assert process.stdin is not None
            process.stdin.close()
        except OSError:
            pass
        timer = threading.Timer(STOP_GRACE_S, kill_process_tree, args=(process,))
        timer.daemon = True
        timer.start()
