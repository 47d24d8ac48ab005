"""One ``batch`` invocation: choose the images, decide what must run, run it, rebuild the table and QC page.

The steps are separate so that ``--dry-run`` stops after the plan (writing nothing) and ``--qc-only`` only
rebuilds the views. Everything written lives under ``ROOT/derivatives/spinal-lesion-seg``; the raw data is only read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..bids import BidsImage, check_root, find_images, is_bids_root, pipeline_dir, read_selection, select, split_part
from ..errors import InputError
from ..image_io import write_text
from ..inference.case import CODE_URL, model_info, result_settings
from ..inference.channels import model_channels
from ..inference.protocol import Job
from ..models.resolve import ResolvedModel, resolve_model
from ..outputs import writable_folder
from .dicom_tree import find_dicom_images
from .level_stats import LevelRecord, image_level_stats, write_levels_tsv
from .pair_runs import PAIR_STATUSES, PairRecord, compare_pair, read_pair_records, write_pair_tsv
from .pairs import Pair, owned_pairs
from .plan import RUN, Decision, decide
from .records import STATUSES, ImageRecord, read_record, read_records, record_path, write_record, write_tsv
from .runner import BatchRunner, OnRecord, reuse_record
from .sequence_cases import group_sequences, job_inputs

#: Called after each session comparison with its record, the number finished and the number to do.
OnPair = Callable[[PairRecord, int, int], None]
#: Called after each image's per-level statistics (``--levels auto``) with its record, the number finished and the
#: number to do.
OnLevels = Callable[[LevelRecord, int, int], None]

BIDS_VERSION = "1.9.0"


class BatchSession:
    """A batch over the dataset at ``root``: a BIDS root (sub-* folders), else a tree of DICOM studies
    (:mod:`.dicom_tree`: every MR series is an image)."""

    def __init__(self, root: str | Path) -> None:
        self.dicom = Path(root).is_dir() and not is_bids_root(root)
        self.root = (Path(root) if self.dicom else check_root(root)).resolve()
        #: DICOM series left out because they are not one regular volume (one line each).
        self.skipped: list[str] = []
        self.pipeline = pipeline_dir(self.root)
        self.model: ResolvedModel | None = None
        self.jobs: dict[BidsImage, Job] = {}
        #: Every selected image, and those of this part (``--num-parts``): pairs are formed among the former.
        self.candidates: list[BidsImage] = []
        self.part: list[BidsImage] = []

    def select(self, suffixes: Sequence[str] | None, include: Sequence[str], exclude: Sequence[str],
               num_parts: int, part_id: int, model: str) -> list[BidsImage]:
        """The images to consider: by suffix (default: the contrasts ``model`` was trained on), by the include
        and exclude lists, then this part of ``num_parts``. InputError when nothing is left."""
        self.model = resolve_model(model)
        if self.dicom:
            images, self.skipped = find_dicom_images(self.root, suffixes)
        else:
            images = find_images(self.root, suffixes)
        trained_on = self.model.manifest.contrasts if self.model.manifest and not suffixes and not self.dicom \
            else None
        if trained_on:
            images = [image for image in images if image.suffix in trained_on]
        if len(channels := model_channels(self.model.dataset)) > 1:
            images = self._sequence_cases(images, channels)
        self.candidates = select(images, read_selection(include), read_selection(exclude))
        self.part = split_part(self.candidates, num_parts, part_id)
        if not self.part:
            what = f"no image with suffix {', '.join(suffixes or trained_on or ['(any)'])}"
            why = ""
            if self.skipped:  # exams left out: say why, or the user sees only that nothing was selected
                more = f"; {len(self.skipped) - 1} more" if len(self.skipped) > 1 else ""
                why = f" (left out: {self.skipped[0]}{more})"
            raise InputError(self.root, f"{what} is selected: nothing to do{why}")
        return self.part

    def _sequence_cases(self, images: list[BidsImage], channels: list[str]) -> list[BidsImage]:
        """A multi-sequence model's cases (:mod:`.sequence_cases`; exams it cannot run are noted in
        :attr:`skipped`); refused for a DICOM tree, whose series carry no sequence names to group by."""
        assert self.model is not None
        if self.dicom:
            raise InputError(self.root, f"is a DICOM tree: batch groups the sequences of model {self.model.name} "
                             f"({', '.join(channels)}) by BIDS suffix only; convert to BIDS, or run predict "
                             "--input NAME=SERIES per exam")
        info = model_info(self.model)
        cases, notes = group_sequences(images, channels, info["reference_channel"], info["missing_sequences"],
                                       self.model.name)
        self.skipped += notes
        return cases

    def plan(self, images: Sequence[BidsImage], template: dict[str, Any], roi_label: str | None,
             overwrite: bool, dry_run: bool = False) -> list[Decision]:
        """Each image's :class:`.plan.Decision`, from the job it would get (``template`` + its paths)."""
        assert self.model is not None, "select() first"
        decisions = []
        for image in images:
            roi = image.label(roi_label) if roi_label else None
            inputs, channels = job_inputs(image)
            job = Job(inputs=inputs, channels=channels, output_dir=str(image.output_dir()),
                      series_uids=list(image.series_uids), roi_mask=str(roi) if roi and roi.is_file() else None,
                      **template)
            self.jobs[image] = job
            decisions.append(decide(image, result_settings(job), self.model.fingerprint, overwrite,
                                    dry_run=dry_run))
        return decisions

    def run(self, decisions: Sequence[Decision], jobs: int, on_record: OnRecord | None = None
            ) -> list[ImageRecord]:
        """Run what must run (``jobs`` at once); record the images that are skipped or kept too."""
        writable_folder(self.pipeline)
        self.write_description()
        records = [self._unrun_record(d) for d in decisions if d.action != RUN]
        runner = BatchRunner(self.root, self.jobs.__getitem__, jobs, on_record=on_record)
        return records + runner.run([d.image for d in decisions if d.action == RUN])

    def _unrun_record(self, decision: Decision) -> ImageRecord:
        path = record_path(self.root, decision.image.key)
        try:
            previous = read_record(path) if path.exists() else None
        except InputError:
            previous = None
        status = "skipped" if decision.action == "skip" else "kept"
        try:
            record = reuse_record(self.root, decision.image, status, previous)
        except (InputError, OSError, ValueError, IndexError) as error:  # an unreadable edited mask: say so, go on
            record = ImageRecord.for_image(decision.image, "failed", error=f"{status} but unreadable: {error}")
        write_record(self.root, record)
        return record

    def pairs(self) -> list[Pair]:
        """The session pairs this part compares (``--compare-sessions``; :mod:`.pairs`)."""
        return owned_pairs(self.candidates, self.part)

    def compare_sessions(self, roi_label: str | None, on_pair: OnPair | None = None) -> list[PairRecord]:
        """Compare each pair of :meth:`pairs` unless current (:func:`.pair_runs.compare_pair`), one after another
        (a registration uses every core); ``on_pair(record, finished, total)`` after each."""
        pairs, records = self.pairs(), []
        for pair in pairs:
            records.append(compare_pair(pair, roi_label))
            if on_pair:
                on_pair(records[-1], len(records), len(pairs))
        return records

    def level_stats(self, roi_label: str | None, tool: str | None, device: str | None,
                    on_image: OnLevels | None = None) -> list[LevelRecord]:
        """``--levels auto``: TotalSpineSeg (cached) and the per-level statistics of each image of this part
        (:mod:`.level_stats`), one after another (TotalSpineSeg uses every core); ``on_image`` after each."""
        records = []
        for image in self.part:
            records.append(image_level_stats(image, roi_label, tool, device))
            if on_image:
                on_image(records[-1], len(records), len(self.part))
        return records

    def write_description(self) -> Path:
        """``dataset_description.json`` of the derivatives folder (BIDS 1.9 derivative), naming the model and
        the sha256 fingerprint of its weights."""
        assert self.model is not None
        model = {"Name": self.model.name, "Release": self.model.release, "SHA256": self.model.fingerprint}
        description = {
            "Name": "SpinalLesionSeg MS lesion predictions", "BIDSVersion": BIDS_VERSION,
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "SpinalLesionSeg", "Version": __version__, "CodeURL": CODE_URL,
                             "Description": f"MS lesion segmentation with nnU-Net model {self.model.name} "
                                            f"(weights sha256 {self.model.fingerprint})", "Model": model}],
        }
        return write_text(json.dumps(description, indent=2) + "\n", self.pipeline / "dataset_description.json")

    def rebuild_views(self) -> str:
        """Rebuild ``batch.tsv`` and the QC page from every record on disk; return a summary for the terminal."""
        from .qc_page import build_qc

        records = read_records(self.root)
        if not records:
            raise InputError(self.pipeline, "holds no batch results yet: run batch first")
        pairs = read_pair_records(self.root)
        tsv = write_tsv(self.root, records)
        page = build_qc(self.root, records, pairs)
        lines = [f"{len(records)} image(s): {_counts(records, STATUSES)}", f"  table: {tsv}"]
        if pairs:
            lines += [f"{len(pairs)} session comparison(s): {_counts(pairs, PAIR_STATUSES)}",
                      f"  table: {write_pair_tsv(self.root, pairs)}"]
        if levels := write_levels_tsv(self.root):
            lines.append(f"  per-level table: {levels}")
        return "\n".join([*lines, f"  QC page: {page}"])


def _counts(records: Sequence[ImageRecord | PairRecord], statuses: Sequence[str]) -> str:
    """``3 done, 1 failed``: how many records have each status (those with none left out)."""
    return ", ".join(f"{n} {status}" for status in statuses if (n := sum(r.status == status for r in records)))
