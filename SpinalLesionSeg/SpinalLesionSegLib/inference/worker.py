"""The background worker: ``python -m SpinalLesionSegLib.inference.worker JOB.json | - | --serve``.

Slicer (and batch scripts) never run torch themselves: they start this process and read its stdout, which carries
one JSON object per line and nothing else. Jobs and messages are defined in :mod:`.protocol` (one job in; ``log``,
``progress``, ``result`` and ``error`` lines out, each carrying the job's ``"id"``).

``--serve`` reads one job per line from stdin until end of input and keeps loaded models in memory, so the second
job on the same model skips loading. Outputs are written under temporary names and renamed, so killing the
worker's process tree at any moment leaves no partial output file. Exit code: 0 done, 2 bad job or input, 1 bug.
``python -m SpinalLesionSegLib.worker`` (the module's former place) runs this too.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any, TextIO

from ..errors import InputError
from .protocol import Error, Job, Log, Message, Progress, ProtocolError, Result, decode_json, message_to_json


class Emitter:
    """Writes protocol lines to the real stdout and keeps the recent log for error reports."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.log: deque[str] = deque(maxlen=200)

    def __call__(self, message: Message) -> None:
        if isinstance(message, Log):
            self.log.append(message.message)
        self.stream.write(message_to_json(message) + "\n")
        self.stream.flush()

    def error(self, job_id: str | None, message: str) -> None:
        self(Error(message=message, log=list(self.log), id=job_id))


class Worker:
    """Runs jobs; caches loaded models by (model, folds, device, tta), one entry per model and device (a GPU holds
    every fold's weights of the entry, :class:`.predictor.LoadedModel`), loaded again when its files changed."""

    def __init__(self, emit: Emitter) -> None:
        self.emit = emit
        self.models: dict[tuple[Any, ...], Any] = {}

    def _model(self, job: Job) -> tuple[Any, dict[str, Any], float]:
        from .case import load_model

        key = (job.model, tuple(job.folds) if job.folds is not None else None, job.device, job.tta)
        if key in self.models and self.models[key][0].files_changed():
            self.emit(Log(f"model {job.model} changed on disk since it was loaded: loading it again", id=job.id))
            del self.models[key]
        if key in self.models:
            self.emit(Log(f"model {job.model} already loaded", id=job.id))
            return (*self.models[key], 0.0)
        for other in [k for k in self.models if k[0] == key[0] and k[2] == key[2]]:
            del self.models[other]  # other folds or TTA of this model: one weight set per model and device in memory
        self.emit(Progress("load model", 0.0, id=job.id))
        loaded, info = load_model(job.model, folds=key[1], device=job.device, tta=job.tta)
        self.emit(Log(f"device: {loaded.device.name} ({loaded.device.reason})", id=job.id))
        self.models[key] = (loaded, info)
        return loaded, info, loaded.load_seconds

    def run(self, raw: Any) -> int:
        """Run one decoded job object; report through the emitter. Returns the exit status it deserves."""
        job_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
        try:
            job = Job.from_dict(raw)
            job_id = job.id
            self._run(job)
            return 0
        except InputError as error:
            self.emit.error(job_id, str(error))
            return 2
        except Exception as error:  # a bug: report it in full, keep serving
            self.emit(Log(traceback.format_exc(), id=job_id))
            self.emit.error(job_id, f"internal error: {type(error).__name__}: {error}")
            return 1

    def _run(self, job: Job) -> None:
        from ..outputs import check_distinct_names, writable_folder
        from .case import group_cases, predict_case

        writable_folder(job.output_dir)  # before the model is loaded: a refusal in a second, not after minutes
        check_distinct_names(job.inputs)
        model, info, load_seconds = self._model(job)
        cases = group_cases(job.inputs, model.channel_names, job.channels, info["missing_sequences"])
        results = []
        for number, case in enumerate(cases, 1):
            def progress(stage: str, fraction: float, number: int = number) -> None:
                self.emit(Progress(stage, round(fraction, 4), id=job.id, case=number, cases=len(cases)))

            result = predict_case(model, case, job, info, progress)
            for warning in result["warnings"]:
                self.emit(Log(f"warning: {warning}", id=job.id))
            results.append(result)
        self.emit(Result(results=results, model_load_s=round(load_seconds, 3),
                         device={"name": model.device.name, "reason": model.device.reason}, id=job.id))


def _exit_with_parent(period_s: float = 0.25) -> None:
    """End this process as soon as its parent dies. Slicer's ``PythonSlicer`` is a launcher that runs the real
    interpreter as its child, and a Qt process can only kill the launcher: without this, Cancel would leave the
    worker computing. POSIX only (an orphan gets a new parent); on Windows the client kills the whole tree."""
    if os.name == "nt":
        return
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(period_s)
        os._exit(3)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _read_job(source: str) -> str:
    return sys.stdin.read() if source == "-" else Path(source).read_text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m SpinalLesionSegLib.inference.worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", nargs="?", help="job JSON file, or - for stdin")
    parser.add_argument("--serve", action="store_true", help="read one JSON job per line from stdin; keep models")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="end at once when the process that started this one dies (POSIX)")
    args = parser.parse_args(argv)
    if args.exit_with_parent:
        _exit_with_parent()
    # Only protocol lines may reach stdout: anything else printed (by nnunetv2, torch) goes to stderr.
    emit = Emitter(sys.stdout)
    sys.stdout = sys.stderr
    worker = Worker(emit)
    if args.serve:
        status = 0
        for line in sys.__stdin__:
            if line.strip():
                status = _run_text(worker, emit, line.strip())
        return status
    if not args.job:
        parser.error("give a job file, - for stdin, or --serve")
    try:
        text = _read_job(args.job)
    except OSError as error:
        emit.error(None, f"malformed job: {' '.join(str(error).split())}")
        return 2
    return _run_text(worker, emit, text)


def _run_text(worker: Worker, emit: Emitter, text: str) -> int:
    """Decode one job's JSON text (a one-line error when it is not JSON) and run it."""
    try:
        raw = decode_json(text, "malformed job")
    except ProtocolError as error:
        emit.error(None, str(error))
        return 2
    return worker.run(raw)


if __name__ == "__main__":
    sys.exit(main())
