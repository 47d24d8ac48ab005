"""The background worker: ``python -m SpinalLesionSegLib.worker JOB.json | - | --serve``.

Slicer (and batch scripts) never run torch themselves: they start this process and read its stdout, which carries
one JSON object per line and nothing else:

* ``{"type": "log", "message": ...}``
* ``{"type": "progress", "stage": ..., "fraction": 0..1, "case": n, "cases": N}``
* ``{"type": "result", "results": [...per case: outputs, timings_s, device...], "model_load_s": ...}``
* ``{"type": "error", "message": <one line>, "log": [...recent log lines, for support]}``

Every line of a job carries the job's ``"id"``. A job is a JSON object::

    {"id": "1", "inputs": ["t2.nii.gz"], "output_dir": "out", "model": "demo", "device": "auto",
     "folds": null, "tta": false, "contrast": "auto", "threshold": 0.5, "ensemble": "mean",
     "roi_mask": null, "roi_margin_mm": 10, "roi_box": null}

``--serve`` reads one job per line from stdin until end of input and keeps loaded models in memory, so the second
job on the same model skips loading. Outputs are written under temporary names and renamed, so killing the
worker's process tree at any moment leaves no partial output file. Exit code: 0 done, 2 bad job or input, 1 bug.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InputError

JOB_KEYS = {"id", "inputs", "output_dir", "model", "device", "folds", "tta", "contrast", "threshold", "ensemble",
            "roi_mask", "roi_margin_mm", "roi_box"}


class Emitter:
    """Writes protocol lines to the real stdout and keeps the recent log for error reports."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.log: deque[str] = deque(maxlen=200)

    def __call__(self, kind: str, job_id: Any = None, **fields: Any) -> None:
        if kind == "log":
            self.log.append(str(fields.get("message")))
        line = {"type": kind, **({"id": job_id} if job_id is not None else {}), **fields}
        self.stream.write(json.dumps(line) + "\n")
        self.stream.flush()


def parse_job(job: Any) -> dict[str, Any]:
    """Check a job object; raise InputError with a one-line reason for anything malformed."""
    if not isinstance(job, dict):
        raise InputError(None, "a job must be a JSON object")
    unknown = set(job) - JOB_KEYS
    if unknown:
        raise InputError(None, f"unknown job key(s): {', '.join(sorted(unknown))}")
    for key in ("inputs", "output_dir"):
        if key not in job:
            raise InputError(None, f"job has no {key!r}")
    if not isinstance(job["inputs"], list) or not all(isinstance(p, str) for p in job["inputs"]):
        raise InputError(None, "job 'inputs' must be a list of file paths")
    threshold = job.get("threshold", 0.5)
    if not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise InputError(None, f"job 'threshold' must be a number between 0 and 1, got {threshold!r}")
    return job


class Worker:
    """Runs jobs; caches loaded models by (model, folds, device, tta)."""

    def __init__(self, emit: Emitter) -> None:
        self.emit = emit
        self.models: dict[tuple[Any, ...], Any] = {}

    def _model(self, job: dict[str, Any], job_id: Any) -> tuple[Any, dict[str, Any], float]:
        from .case import load_model

        folds = tuple(job["folds"]) if job.get("folds") is not None else None
        key = (job.get("model", "demo"), folds, job.get("device", "auto"), bool(job.get("tta", False)))
        if key in self.models:
            self.emit("log", job_id, message=f"model {key[0]} already loaded")
            return (*self.models[key], 0.0)
        self.emit("progress", job_id, stage="load model", fraction=0.0)
        loaded, info = load_model(key[0], folds=folds, device=key[2], tta=key[3])
        self.emit("log", job_id, message=f"device: {loaded.device.name} ({loaded.device.reason})")
        self.models[key] = (loaded, info)
        return loaded, info, loaded.load_seconds

    def run(self, raw: Any) -> int:
        job_id = raw.get("id") if isinstance(raw, dict) else None
        try:
            job = parse_job(raw)
            from .case import CaseOptions, group_cases, predict_case
            from .roi import box_from_corners

            model, info, load_seconds = self._model(job, job_id)
            box = job.get("roi_box")
            options = CaseOptions(
                contrast=job.get("contrast", "auto"), threshold=float(job.get("threshold", 0.5)),
                ensemble=job.get("ensemble", "mean"),
                roi_mask=Path(job["roi_mask"]) if job.get("roi_mask") else None,
                roi_margin_mm=float(job.get("roi_margin_mm", 10.0)),
                roi_box=box_from_corners(box["ras_min"], box["ras_max"], "job roi_box") if box else None,
                model_info=info,
            )
            cases = group_cases(job["inputs"], len(model.channel_names))
            results = []
            for number, case in enumerate(cases, 1):
                def progress(stage: str, fraction: float, number: int = number) -> None:
                    self.emit("progress", job_id, stage=stage, fraction=round(fraction, 4), case=number,
                              cases=len(cases))

                result = predict_case(model, case, Path(job["output_dir"]), options, progress)
                for warning in result["warnings"]:
                    self.emit("log", job_id, message=f"warning: {warning}")
                results.append(result)
            self.emit("result", job_id, results=results, model_load_s=round(load_seconds, 3),
                      device={"name": model.device.name, "reason": model.device.reason})
            return 0
        except InputError as error:
            self.emit("error", job_id, message=str(error), log=list(self.emit.log))
            return 2
        except Exception as error:  # a bug: report it in full, keep serving
            self.emit("log", job_id, message=traceback.format_exc())
            self.emit("error", job_id, message=f"internal error: {type(error).__name__}: {error}",
                      log=list(self.emit.log))
            return 1


def _read_job(source: str) -> Any:
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    return json.loads(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m SpinalLesionSegLib.inference.worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", nargs="?", help="job JSON file, or - for stdin")
    parser.add_argument("--serve", action="store_true", help="read one JSON job per line from stdin; keep models")
    args = parser.parse_args(argv)
    # Only protocol lines may reach stdout: anything else printed (by nnunetv2, torch) goes to stderr.
    emit = Emitter(sys.stdout)
    sys.stdout = sys.stderr
    worker = Worker(emit)
    if args.serve:
        status = 0
        for line in sys.__stdin__:
            if not line.strip():
                continue
            status = _run_line(worker, emit, line.strip(), json.loads)
        return status
    if not args.job:
        parser.error("give a job file, - for stdin, or --serve")
    return _run_line(worker, emit, args.job, _read_job)


def _run_line(worker: Worker, emit: Emitter, source: str, reader: Callable[[str], Any]) -> int:
    try:
        raw = reader(source)
    except (OSError, json.JSONDecodeError) as error:
        emit("error", message=f"malformed job: {' '.join(str(error).split())}", log=list(emit.log))
        return 2
    return worker.run(raw)


if __name__ == "__main__":
    sys.exit(main())
