"""The worker driven by Qt's event loop, for Slicer's GUI: the one module of the package that needs Qt.

Python threads reading a pipe only run while Slicer's main thread runs Python (PythonQt does not release the GIL
in Qt's event loop), so the reader threads of :class:`..inference.worker_client.WorkerClient` would deliver
progress late or not at all inside Slicer. Here ``QProcess`` signals deliver the worker's output on the GUI thread
as it arrives, as SlicerNNUnet does; the bookkeeping (jobs, message decoding, the worker's death) is the shared
:class:`..inference.worker_client.WorkerSession`. Same interface as ``WorkerClient``; imported only by the module
file inside Slicer (``qt`` is PythonQt), so it is checked statically and by the self-test, not under pytest.
"""

from __future__ import annotations

import os
import subprocess

import qt

from ..inference.protocol import Job, Message
from ..inference.worker_client import STOP_GRACE_S, WORKER_ARGS, WorkerSession, package_environment


class _WorkerProcess:
    """One started worker: its ``QProcess`` and the unfinished last line of its output. Its signals feed the
    client's session only while it is the client's current worker (a stopped or cancelled one stays silent)."""

    def __init__(self, client: QtWorkerClient) -> None:
        self.client = client
        self.process = qt.QProcess()
        self.tail = ""
        # UTF-8 decoders that keep a character split across two reads (codecForUtfText would assume Latin-1
        # without a byte order mark, and a pipe has none).
        self.decoders = [qt.QTextCodec.codecForName("UTF-8").makeDecoder() for _ in range(2)]
        environment = qt.QProcessEnvironment()
        for name, value in package_environment(client.env).items():
            environment.insert(name, value)
        self.process.setProcessEnvironment(environment)
        self.process.connect("readyReadStandardOutput()", self.read_stdout)
        self.process.connect("readyReadStandardError()", self.read_stderr)
        self.process.connect("finished(int,QProcess::ExitStatus)", self.finished)

    @property
    def current(self) -> bool:
        return self.client.worker is self

    def read_stdout(self) -> None:
        text = self.tail + self.decoders[0].toUnicode(self.process.readAllStandardOutput())
        *lines, self.tail = text.split("\n")
        for line in lines if self.current else []:
            if line.strip():
                self.client.session.stdout_line(line)

    def read_stderr(self) -> None:
        text = self.decoders[1].toUnicode(self.process.readAllStandardError())
        for line in text.splitlines() if self.current else []:
            self.client.session.stderr_line(line)

    def finished(self, code: int, status: int) -> None:
        if self.current:
            self.read_stdout()
            self.read_stderr()
            self.client.worker = None
            self.client.session.exited(code if status == qt.QProcess.NormalExit else -1)

    def running(self) -> bool:
        return self.process.state() != qt.QProcess.NotRunning

    def kill(self) -> None:
        """The whole tree on Windows; elsewhere the launcher, whose death the worker follows at once."""
        if os.name == "nt":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(self.process.processId())], capture_output=True,
                           creationflags=subprocess.CREATE_NO_WINDOW)  # type: ignore[attr-defined]
        self.process.kill()


class QtWorkerClient:
    """One persistent worker process, read through ``QProcess`` signals. ``env``: its environment (Slicer's
    startup environment for an external interpreter); ``None`` inherits Slicer's."""

    def __init__(self, python: str, env: dict[str, str] | None = None) -> None:
        self.python = python
        self.env = env
        self.worker: _WorkerProcess | None = None
        self.session = WorkerSession()
        self._stopping: list[_WorkerProcess] = []  # stopped workers kept alive until they end or are killed

    @property
    def running(self) -> bool:
        return self.worker is not None and self.worker.running()

    @property
    def busy(self) -> bool:
        return self.session.busy

    def _start(self) -> None:
        self.worker = _WorkerProcess(self)
        self.session.stderr.clear()
        self.worker.process.start(self.python, list(WORKER_ARGS))
        if not self.worker.process.waitForStarted(10000):
            error, self.worker = self.worker.process.errorString(), None
            raise RuntimeError(f"cannot start the worker with {self.python}: {error}")

    def submit(self, job: Job) -> str:
        """Send a job; start the worker first if needed. Returns the job id."""
        if not self.running:
            self._start()
        job_id, line = self.session.job_line(job)
        self.worker.process.write(line.encode("utf-8"))
        return job_id

    def poll(self) -> list[Message]:
        return self.session.poll()

    def cancel(self) -> None:
        """Kill the worker now (``--exit-with-parent`` ends the real interpreter behind Slicer's launcher).
        Outputs are never half-written (atomic writes)."""
        worker, self.worker = self.worker, None
        self.session.forget()
        if worker is not None and worker.running():
            worker.kill()

    def stop(self) -> None:
        """End the worker without blocking the GUI: close its input (it exits after the job in hand) and kill it
        after :data:`..inference.worker_client.STOP_GRACE_S` seconds if it has not ended."""
        worker, self.worker = self.worker, None
        if worker is None or not worker.running():
            return
        worker.process.closeWriteChannel()
        self._stopping.append(worker)

        def finish() -> None:
            if worker.running():
                worker.kill()
            self._stopping.remove(worker)

        qt.QTimer.singleShot(int(STOP_GRACE_S * 1000), finish)
