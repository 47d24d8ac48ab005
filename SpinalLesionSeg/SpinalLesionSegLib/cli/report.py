"""The ``report`` subcommand of ``spinal-lesion-seg``: the clinical report of one scan, or of the stations of one
exam (HTML and PDF).

Registered by :mod:`.app` through ``COMMAND_MODULES``. Only argparse is imported at module level; the report's
modules (ReportLab, matplotlib, the analysis) load inside the command function, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse

from .analysis import AUTO_LEVELS, add_auto_levels_options, auto_levels_inputs, station_auto_levels
from .predict import add_dicom_options


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``report`` to the ``spinal-lesion-seg`` subcommands."""
    from ..analysis.level_sources import AUTO, KINDS  # numpy + SimpleITK only, already loaded by the CLI
    from ..reporting.data import MAX_PATIENT_ID

    report = commands.add_parser(
        "report", help="clinical report of one scan (HTML and PDF): lesion load, levels, key slices, change",
        description="Write OUTDIR/report.html and OUTDIR/report.pdf (with the pictures beside the HTML and "
        "report.json listing what they were made from): lesion count and volume (mm3), the soft-weighted volume "
        "with --soft, a per-level table and chart with --levels, the lesion list, a sagittal overview and an "
        "axial slice through each of the largest lesions, the change since a baseline scan with --baseline-*, and "
        "the model and settings when the lesion mask is a prediction with its <stem>_lesion_seg.json. The numbers "
        "are those of 'stats' on the same files. The images may be folders of DICOM files; for a DICOM image the "
        "PDF is also written as report.dcm (Encapsulated PDF in the scan's study).")
    report.add_argument("--image", required=True, nargs="+", metavar="IMG", help="the scan the mask belongs to "
                        "(NIfTI/NRRD, or a folder of DICOM files); several: the stations of one exam (cervical, "
                        "thoracic...), merged into one report, each lesion counted once")
    report.add_argument("--lesion", required=True, nargs="+", metavar="MASK",
                        help="binary lesion mask on the image's grid (one per --image)")
    report.add_argument("--soft", nargs="+", metavar="SOFT", help="soft map (probabilities 0..1): soft-weighted "
                        "volumes and each lesion's mean probability (one per --image)")
    report.add_argument("--levels", nargs="+", metavar="LEVELS", help="vertebral levels (one per --image): SCT "
                        "labelled cord, TotalSpineSeg output, SCT disc points, or a Slicer .mrk.json point list "
                        "naming discs; 'auto' runs TotalSpineSeg on --image (cached in OUTDIR) and uses its discs "
                        "and cord")
    report.add_argument("--levels-kind", default=AUTO, choices=(AUTO, *KINDS),
                        help="kind of --levels (default: detected from the file)")
    report.add_argument("--cord", nargs="+", metavar="CORD", help="spinal cord mask (one per --image): the "
                        "overview's slice, the disc points' centreline, and each lesion's volume outside the cord")
    report.add_argument("--baseline-image", metavar="IMG0", help="an earlier scan of the same patient (with "
                        "--baseline-lesion): adds the change since then")
    report.add_argument("--baseline-lesion", metavar="MASK0", help="the lesion mask of --baseline-image")
    report.add_argument("--patient-id", metavar="ID", help="patient identifier printed on every page "
                        f"(at most {MAX_PATIENT_ID} characters; default: not given)")
    report.add_argument("--resample", action="store_true",
                        help="resample the image, soft map, cord mask and levels image onto the lesion mask's grid "
                        "(nearest neighbour) when the grids differ; without it a file on another grid is refused")
    add_auto_levels_options(report)
    add_dicom_options(report, writes="the PDF as report.dcm (Encapsulated PDF in the scan's study)")
    report.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    report.set_defaults(func=_cmd_report, usage_error=report.error)


def _cmd_report(args: argparse.Namespace) -> int:
    if (args.baseline_image is None) != (args.baseline_lesion is None):
        args.usage_error("--baseline-image and --baseline-lesion go together")
    from ..reporting.sections import totals

    counts = {name: len(getattr(args, name)) for name in ("image", "soft", "levels", "cord")
              if getattr(args, name) and getattr(args, name) != [AUTO_LEVELS]}
    if any(count != len(args.lesion) for count in counts.values()):
        args.usage_error("give one --image (and one --soft, --levels, --cord, if any) per --lesion, in the same order")
    outputs = _station_report(args) if len(args.lesion) > 1 else _one_scan_report(args)
    print("; ".join(f"{label}: {value}" for label, value in totals(outputs.data)))
    print(f"wrote {outputs.pdf}, {outputs.html} ({len(outputs.pictures)} picture(s)) and {outputs.manifest.name}")
    return 0


def _one_scan_report(args: argparse.Namespace):
    """The report of one scan (every option a single file)."""
    from ..reporting.change import compare_for_report
    from ..reporting.writer import make_report

    image, lesion, uids = args.image[0], args.lesion[0], args.series_uid
    soft, levels, cord = ((getattr(args, name) or [None])[0] for name in ("soft", "levels", "cord"))
    kind = args.levels_kind
    if levels == AUTO_LEVELS:
        levels, kind, cord = auto_levels_inputs(args, image, args.output, cord, tuple(uids or ()))
    longitudinal = (compare_for_report(args.baseline_image, args.baseline_lesion, image, lesion, uids)
                    if args.baseline_image else None)
    return make_report(image, lesion, args.output, soft_path=soft, levels_path=levels, levels_kind=kind,
                       cord_path=cord, patient_id=args.patient_id, longitudinal=longitudinal, resample=args.resample,
                       series_uids=uids, dicom_out=args.dicom_out, uid_root=args.uid_root)


def _station_report(args: argparse.Namespace):
    """The report of a multi-station exam: one report, each lesion once (:mod:`..reporting.stations`)."""
    from ..reporting.writer import make_station_report

    if args.baseline_image or args.series_uid or args.dicom_out:
        args.usage_error("--baseline-*, --series-uid and --dicom-out take one station: give one --image")
    levels, kind, cord = args.levels or (), args.levels_kind, args.cord or ()
    if list(levels) == [AUTO_LEVELS]:
        levels, kind, cord = station_auto_levels(args, args.image, args.cord)
    return make_station_report(args.image, args.lesion, args.output, soft_paths=args.soft or (), cord_paths=cord or (),
                               levels_paths=levels, levels_kind=kind, patient_id=args.patient_id,
                               resample=args.resample)
