"""Run the images of a batch in parallel worker processes, one record and one log per image.

Each of ``jobs`` slots drives its own background worker (:class:`..inference.worker_client.WorkerClient`: the
same process the Slicer panel uses, which loads the model once and keeps it), so a GPU gets one model load per
worker and a CPU's cores are split between workers (``OMP_NUM_THREADS``), never oversubscribed. One image per job:
a broken image fails alone, with its one-line error in its record, and the other images go on; a worker that dies
is restarted for the next image. Outputs are published atomically by the worker (:mod:`..result_set`), so a batch
killed at any moment resumes cleanly (:mod:`.plan`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import SimpleITK as sitk

from ..analysis.lesions import label_components
from ..bids import BidsImage, pipeline_dir
from ..defaults import CONNECTIVITY, POLL_INTERVAL_MS
from ..geometry import voxel_volume_mm3
from ..image_io import read_image
from ..inference.case import output_paths
from ..inference.protocol import Error, Job, Log, Message, Progress, Result
from ..inference.worker_client import WorkerClient
from .records import ImageRecord, logs_dir, write_record

#: Called after each image with its record and the number of images finished so far.
OnRecord = Callable[[ImageRecord, int], None]


def threads_per_worker(jobs: int) -> int:
    """CPU threads each of ``jobs`` workers may use: the machine's cores shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def worker_environment(jobs: int) -> dict[str, str]:
    """The environment of each worker: this one, with torch's (OpenMP's, MKL's) thread pools sized for ``jobs``."""
    threads = str(threads_per_worker(jobs))
    return {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


def now() -> str:
    """The current time (UTC, ISO 8601, seconds) for records."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def measure(outputs: dict[str, str]) -> dict[str, Any]:
    """Headline numbers of a result: lesion count (connected components, the default connectivity), total lesion
    volume (mm3) and the mean soft-map probability inside the lesions (None without lesions or soft map)."""
    mask_image = read_image(outputs["lesion_seg"])
    mask = sitk.GetArrayViewFromImage(mask_image) != 0
    count = label_components(mask, CONNECTIVITY)[1]
    mean = None
    if count and outputs.get("lesion_soft"):
        mean = float(sitk.GetArrayViewFromImage(read_image(outputs["lesion_soft"]))[mask].mean())
    return {"lesion_count": int(count), "volume_mm3": float(mask.sum() * voxel_volume_mm3(mask_image)),
            "mean_probability": mean}


def relative_outputs(root: Path, outputs: dict[str, str]) -> dict[str, str]:
    """Output paths relative to the pipeline folder (records stay valid when the dataset moves)."""
    base = pipeline_dir(root).resolve()
    return {role: Path(path).resolve().relative_to(base).as_posix() for role, path in outputs.items()}


@dataclass
class _Slot:
    """One worker and the image it is working on."""

    client: WorkerClient
    image: BidsImage | None = None
    started: float = 0.0
    log: IO[str] | None = None
    stages: list[str] = field(default_factory=list)


class BatchRunner:
    """Runs images with ``jobs`` workers; ``make_job(image)`` gives each image's :class:`Job`."""

    def __init__(self, root: Path, make_job: Callable[[BidsImage], Job], jobs: int = 1, *,
                 python: str | None = None, on_record: OnRecord | None = None) -> None:
        self.root = Path(root)
        self.make_job = make_job
        self.jobs = max(1, jobs)
        self.python = python
        self.on_record = on_record or (lambda record, finished: None)
        self.records: list[ImageRecord] = []

    def run(self, images: Sequence[BidsImage]) -> list[ImageRecord]:
        """Run every image; return their records (also written to ``logs/``). Ctrl-C kills the workers at once
        (their outputs stay complete or absent) and re-raises."""
        pending = deque(images)
        env = worker_environment(self.jobs)
        slots = [_Slot(WorkerClient(self.python, env)) for _ in range(min(self.jobs, len(images)))]
        logs_dir(self.root).mkdir(parents=True, exist_ok=True)
        try:
            while pending or any(slot.image for slot in slots):
                for slot in slots:
                    if slot.image is None and pending:
                        self._start(slot, pending.popleft())
                    for message in slot.client.poll():
                        self._handle(slot, message)
                time.sleep(POLL_INTERVAL_MS / 1000)
        except BaseException:
            for slot in slots:
                slot.client.cancel()
            raise
        finally:
            for slot in slots:
                slot.client.stop()
                if slot.log:
                    slot.log.close()
        return self.records

    def _start(self, slot: _Slot, image: BidsImage) -> None:
        slot.image, slot.started, slot.stages = image, time.monotonic(), []
        slot.log = (logs_dir(self.root) / f"{image.key}.log").open("w", encoding="utf-8")
        slot.log.write(f"{now()} {image.relative.as_posix()}\n")
        try:
            slot.client.submit(self.make_job(image))
        except RuntimeError as error:  # the worker cannot start (a wrong interpreter): this image fails
            self._finish(slot, "failed", error=str(error))

    def _handle(self, slot: _Slot, message: Message) -> None:
        if slot.image is None or slot.log is None:
            return
        if isinstance(message, Progress) and message.stage not in slot.stages:
            slot.stages.append(message.stage)
            slot.log.write(f"{now()} {message.stage}\n")
        elif isinstance(message, Log):
            slot.log.write(message.message.rstrip() + "\n")
        elif isinstance(message, Error):
            slot.log.write("\n".join([*message.log, f"error: {message.message}", ""]))
            self._finish(slot, "failed", error=message.message)
        elif isinstance(message, Result):
            self._finished_result(slot, message)

    def _finished_result(self, slot: _Slot, result: Result) -> None:
        case = result.results[0]
        seconds = sum(v for k, v in case["timings_s"].items() if k != "model_load_s")
        try:
            numbers = measure(case["outputs"])
        except Exception as error:  # the result vanished or is unreadable: say so, keep going
            self._finish(slot, "failed", error=f"result written but unreadable: {error}")
            return
        self._finish(slot, "done", seconds=round(seconds, 3), outputs=relative_outputs(self.root, case["outputs"]),
                     **numbers)

    def _finish(self, slot: _Slot, status: str, **values: Any) -> None:
        assert slot.image is not None and slot.log is not None
        if status == "failed":
            values.setdefault("seconds", round(time.monotonic() - slot.started, 3))
        record = ImageRecord.for_image(slot.image, status, finished=now(), **values)
        slot.log.write(f"{now()} {status}\n")
        slot.log.close()
        slot.image, slot.log = None, None
        write_record(self.root, record)
        self.records.append(record)
        self.on_record(record, len(self.records))


def reuse_record(root: Path, image: BidsImage, status: str, previous: ImageRecord | None) -> ImageRecord:
    """The record of an image that is not run (skipped, kept): its previous numbers when they describe the same
    outputs, else measured from the files on disk."""
    if previous is not None and previous.status in ("done", "skipped") and status == "skipped":
        return dataclasses.replace(previous, status=status, error=None, finished=now())
    outputs = {role: str(path) for role, path in output_paths(image.output_dir(), image.stem).items()
               if path.exists()}
    numbers = measure(outputs)
    return ImageRecord.for_image(image, status, outputs=relative_outputs(root, outputs), finished=now(), **numbers)

