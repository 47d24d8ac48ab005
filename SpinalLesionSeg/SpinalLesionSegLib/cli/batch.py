"""The ``batch`` subcommand of ``spinal-lesion-seg``: pre-label a BIDS dataset, resumably, in parallel.

Registered by :mod:`.app` through ``COMMAND_MODULES``; heavy imports happen inside the command function.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .. import defaults
from .predict import add_dicom_options, add_model_options, add_outside_cord_options


def register(commands: Any) -> None:
    batch = commands.add_parser(
        "batch", help="pre-label a BIDS dataset or a tree of DICOM studies: resumable, parallel, with a QC page",
        description="Run a model over every anatomical image of a BIDS dataset, or every MR series of a folder tree "
        "of DICOM studies. Outputs (the files predict writes) go to ROOT/derivatives/spinal-lesion-seg/sub-XX/"
        "[ses-YY/]anat/, or for DICOM to ROOT/derivatives/spinal-lesion-seg/<PatientID>/<study>/<series>/ with the "
        "DICOM outputs, with dataset_description.json, batch.tsv, logs/ and a QC page qc/index.html. Nothing else is written. A re-run "
        "skips images whose results are current, re-runs what a changed model or setting affects, and never "
        "overwrites a result edited by hand (unless --overwrite).")
    batch.add_argument("root", type=Path, metavar="ROOT", help="root folder of the BIDS dataset or DICOM tree")
    add_model_options(batch)
    add_dicom_options(batch, series=False, writes="DICOM outputs for DICOM series (SEG, structured report, "
                      "preview)")
    batch.add_argument("--roi-label", metavar="LABEL",
                       help="crop each image to the cord mask derivatives/labels/.../<stem>_LABEL.nii.gz when it "
                       "exists (e.g. seg-manual), plus --roi-margin")
    batch.add_argument("--roi-margin", type=float, default=defaults.ROI_MARGIN_MM, metavar="MM",
                       help=f"margin around the --roi-label mask in mm (default {defaults.ROI_MARGIN_MM:g})")
    add_outside_cord_options(batch, cord="the --roi-label mask, else the model's cord output")
    batch.add_argument("--jobs", type=int, default=1, metavar="N",
                       help="images run at once, each in its own worker (CPU threads are shared out; default 1)")
    batch.add_argument("--include", nargs="+", default=[], metavar="LABEL",
                       help="only these subjects, sessions or images (sub-01 ses-02 ..., or @FILE such as a QC "
                       "page's qc_fail.yml)")
    batch.add_argument("--exclude", nargs="+", default=[], metavar="LABEL",
                       help="leave out these subjects, sessions or images (or @FILE)")
    batch.add_argument("--suffix", nargs="+", metavar="SUFFIX",
                       help="which images, by the end of their name: T2w, acq-sag_T2w ... (default: every image "
                       "whose BIDS suffix is a contrast the model was trained on; every image for a custom model)")
    batch.add_argument("--overwrite", action="store_true", help="re-run images whose results were edited by hand")
    batch.add_argument("--dry-run", action="store_true", help="list what would run and why; write nothing")
    batch.add_argument("--num-parts", type=int, default=1, metavar="N",
                       help="split the images into N parts (e.g. a SLURM array; nnU-Net's convention)")
    batch.add_argument("--part-id", type=int, default=0, metavar="K", help="run part K (0..N-1) only")
    batch.add_argument("--compare-sessions", action="store_true",
                       help="then compare each subject's consecutive sessions (and, from three on, the first with "
                       "the last), as compare does, using manual corrections where they exist; results under "
                       "sub-XX/longitudinal/, longitudinal.tsv and a timeline in the QC page")
    batch.add_argument("--levels", choices=("auto",),
                       help="'auto': then run TotalSpineSeg on each image (cached beside its outputs) and write its "
                       "per-level lesion table (S_stats/: lesions.csv, levels.csv, summary.json, as stats does), using "
                       "the manual correction where one exists; all images in levels.tsv. Checked before anything "
                       "runs: TotalSpineSeg and its weights must be installed unless every image has them cached")
    batch.add_argument("--totalspineseg", metavar="CMD", help="TotalSpineSeg for --levels auto: its 'totalspineseg' "
                       "command or the Python that has it (default: SPINAL_LESION_SEG_TOTALSPINESEG, else "
                       "'totalspineseg' on PATH or beside this Python); it runs on --device")
    batch.add_argument("--qc-only", action="store_true",
                       help="rebuild batch.tsv and the QC page from what is on disk; run nothing")
    batch.set_defaults(func=_cmd_batch)


def _cmd_batch(args: argparse.Namespace) -> int:
    from ..batch.level_stats import images_to_run, require_tool
    from ..batch.session import BatchSession

    session = BatchSession(args.root)
    if args.qc_only:
        print(session.rebuild_views())
        return 0
    if args.jobs < 1:
        from ..errors import InputError

        raise InputError(None, f"--jobs must be at least 1, got {args.jobs}")
    images = session.select(args.suffix, args.include, args.exclude, args.num_parts, args.part_id, args.model)
    for line in session.skipped:
        print(f"{defaults.PROG}: note: left out: {line}", file=sys.stderr)
    decisions = session.plan(images, _job_template(args), args.roi_label, args.overwrite, args.dry_run)
    if args.levels and not args.dry_run:
        to_run = require_tool(images, args.totalspineseg)
        print(f"{defaults.PROG}: levels: TotalSpineSeg runs on {to_run} image(s), cached for {len(images) - to_run}",
              file=sys.stderr)
    if args.dry_run:
        for decision in decisions:
            print(f"{decision.action:4}  {decision.image.relative.as_posix()}  ({decision.reason})")
        for image in images_to_run(images) if args.levels else []:
            print(f"levels  {image.relative.as_posix()}  (TotalSpineSeg not cached yet)")
        for pair in session.pairs() if args.compare_sessions else []:
            print(f"compare  {pair.subject} {pair.series} {pair.baseline.session} -> {pair.followup.session}  "
                  f"({pair.kind}; skipped if current)")
        return 0
    bar = _BatchProgress(sum(d.action == "run" for d in decisions))
    records = session.run(decisions, args.jobs, on_record=bar)
    pairs = session.compare_sessions(args.roi_label, on_pair=_pair_progress) if args.compare_sessions else []
    levels = session.level_stats(args.roi_label, args.totalspineseg, _tss_device(args.device),
                                 on_image=_levels_progress) if args.levels else []
    print(session.rebuild_views())
    failed = [(r.image, r.error) for r in records if r.status == "failed"]
    failed += [(f"{r.image} levels", r.error) for r in levels if r.status == "failed"]
    failed += [(f"{p.subject} {p.series} {p.baseline_session} -> {p.followup_session}", p.error)
               for p in pairs if p.status == "failed"]
    for what, error in failed:
        print(f"spinal-lesion-seg: error: {what}: {error}", file=sys.stderr)
    return 2 if failed else 0


def _job_template(args: argparse.Namespace) -> dict[str, Any]:
    """The Job fields every image shares (inputs, output folder and ROI mask are set per image)."""
    return {"model": args.model, "device": args.device, "folds": args.folds, "tta": args.tta,
            "contrast": args.contrast, "threshold": args.threshold, "ensemble": args.ensemble,
            "precision": args.precision, "tile_step": args.tile_step, "roi_tiles": args.roi_tiles,
            "compile": args.compile,
            "roi_margin_mm": args.roi_margin, "overwrite": args.overwrite, "dicom_out": args.dicom_out,
            "uid_root": args.uid_root, "drop_outside_cord": args.drop_outside_cord,
            "outside_cord_margin_mm": args.outside_cord_margin}


class _BatchProgress:
    """One line per finished image with the count, and an ETA from the images run so far (s per image)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.started = time.monotonic()

    def __call__(self, record: Any, finished: int) -> None:
        elapsed = time.monotonic() - self.started
        eta = elapsed / finished * (self.total - finished)
        what = f"{record.lesion_count} lesion(s)" if record.status == "done" else record.error
        print(f"[{finished}/{self.total}] {record.name}: {record.status} ({what}); "
              f"ETA {_duration(eta) if finished < self.total else 'done'}", file=sys.stderr, flush=True)


def _tss_device(device: str) -> str | None:
    """TotalSpineSeg's ``--device`` for the model's: cuda and cpu as they are, else its own default (cuda when
    available; it has no mps)."""
    return device if device in ("cuda", "cpu") else None


def _levels_progress(record: Any, finished: int, total: int) -> None:
    """One line per image's per-level statistics: where they are, or why not."""
    print(f"[levels {finished}/{total}] {record.image}: {record.status} ({record.error or record.folder})",
          file=sys.stderr, flush=True)


def _pair_progress(record: Any, finished: int, total: int) -> None:
    """One line per session comparison: its status and, when compared, the change counts."""
    from ..analysis.longitudinal import CLASSES

    what = ", ".join(f"{record.summary[c]} {c}" for c in CLASSES if record.summary.get(c)) or "no lesion change"
    print(f"[compare {finished}/{total}] {record.subject} {record.series} {record.baseline_session} -> "
          f"{record.followup_session}: {record.status} ({record.error or what})", file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
