"""The ``report`` subcommand of ``spinal-lesion-seg``: the clinical report of one scan (HTML and PDF).

Registered by :mod:`.app` through ``COMMAND_MODULES``. Only argparse is imported at module level; the report's
modules (ReportLab, matplotlib, the analysis) load inside the command function, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse

from .analysis import AUTO_LEVELS, add_auto_levels_options, auto_levels_inputs
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
    report.add_argument("--image", required=True, metavar="IMG", help="the scan the mask belongs to (NIfTI/NRRD, or a "
                        "folder of DICOM files)")
    report.add_argument("--lesion", required=True, metavar="MASK", help="binary lesion mask on the image's grid")
    report.add_argument("--soft", metavar="SOFT", help="soft map (probabilities 0..1): soft-weighted volumes and "
                        "each lesion's mean probability")
    report.add_argument("--levels", metavar="LEVELS", help="vertebral levels: SCT labelled cord, TotalSpineSeg "
                        "output, SCT disc points, or a Slicer .mrk.json point list naming discs; 'auto' runs "
                        "TotalSpineSeg on --image (cached in OUTDIR) and uses its discs and cord")
    report.add_argument("--levels-kind", default=AUTO, choices=(AUTO, *KINDS),
                        help="kind of --levels (default: detected from the file)")
    report.add_argument("--cord", metavar="CORD", help="spinal cord mask: the overview's slice, the disc points' "
                        "centreline, and each lesion's volume outside the cord")
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
    from ..reporting.change import compare_for_report
    from ..reporting.sections import totals
    from ..reporting.writer import make_report

    uids = args.series_uid
    levels, kind, cord = args.levels, args.levels_kind, args.cord
    if levels == AUTO_LEVELS:
        levels, kind, cord = auto_levels_inputs(args, args.image, args.output, cord, tuple(uids or ()))
    longitudinal = (compare_for_report(args.baseline_image, args.baseline_lesion, args.image, args.lesion, uids)
                    if args.baseline_image else None)
    outputs = make_report(args.image, args.lesion, args.output, soft_path=args.soft, levels_path=levels,
                          levels_kind=kind, cord_path=cord, patient_id=args.patient_id,
                          longitudinal=longitudinal, resample=args.resample, series_uids=uids,
                          dicom_out=args.dicom_out, uid_root=args.uid_root)
    print("; ".join(f"{label}: {value}" for label, value in totals(outputs.data)))
    print(f"wrote {outputs.pdf}, {outputs.html} ({len(outputs.pictures)} picture(s)) and {outputs.manifest.name}")
    return 0
