"""``spinal-lesion-seg compare``: the change in a patient's lesions since the last scan.

Registered by :mod:`.app` through ``COMMAND_MODULES``. Only argparse and the defaults load at module level; the
registration and analysis modules (SimpleITK registration, scipy, matplotlib) load inside the command, so
``--help`` stays fast. The files are read, checked and compared by :func:`..analysis.scan_files.compare_files`
(which ``batch --compare-sessions`` uses too).
"""

from __future__ import annotations

import argparse

from ..defaults import CONNECTIVITY, LESION_CHANGE_PERCENT, LESION_MIN_CHANGE_MM3, TOUCH_TOLERANCE_MM
from .analysis import non_negative
from .predict import add_dicom_options


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``compare`` to the ``spinal-lesion-seg`` subcommands."""
    from ..analysis.lesions import CONNECTIVITIES  # numpy + SimpleITK only, already loaded by the CLI

    parser = commands.add_parser(
        "compare", help="new, disappeared, merged, split, enlarged, shrunk and stable lesions since a baseline scan",
        description="Register the follow-up scan to the baseline (rigid, around the cord when --baseline-cord is "
        "given), map its lesions onto the baseline and classify every change: new, disappeared, merged, split, "
        "enlarged, shrunk, stable. Volumes are measured on each scan's own grid. Writes summary.json, "
        "lesion_changes.csv, followup_to_baseline.tfm and registration.png into OUTDIR. An implausible registration "
        "is refused. Rules: docs/conventions.md, 'Longitudinal change'.")
    for scan, name in (("baseline", "baseline"), ("followup", "follow-up")):
        parser.add_argument(f"--{scan}", required=True, metavar="IMG",
                            help=f"{name} image (NIfTI/NRRD, or a folder of DICOM files)")
        parser.add_argument(f"--{scan}-lesion", required=True, metavar="MASK",
                            help=f"{name} binary lesion mask, on the {name} image's grid")
        parser.add_argument(f"--{scan}-soft", metavar="SOFT", help=f"{name} soft map (0..1), for soft volumes")
        parser.add_argument(f"--{scan}-cord", metavar="CORD", help=f"{name} spinal cord mask" + (
            ": registration looks at the cord and its surroundings" if scan == "baseline" else
            ": checks the registration (cord overlap)"))
    parser.add_argument("--levels", metavar="FILE", help="vertebral levels on the baseline grid (as for stats): "
                        "per-level changes")
    parser.add_argument("--no-register", action="store_true",
                        help="take the scans as already aligned in scanner space (no registration)")
    parser.add_argument("--change-percent", type=non_negative, default=LESION_CHANGE_PERCENT, metavar="PCT",
                        help=f"volume change for enlarged/shrunk, in percent (default {LESION_CHANGE_PERCENT:g})")
    parser.add_argument("--min-change", type=non_negative, default=LESION_MIN_CHANGE_MM3, metavar="MM3",
                        help="smallest volume change for enlarged/shrunk, in mm3 (default "
                        f"{LESION_MIN_CHANGE_MM3:g})")
    parser.add_argument("--tolerance", type=non_negative, default=TOUCH_TOLERANCE_MM, metavar="MM",
                        help="lesions touch within this distance in mm after mapping (default "
                        f"{TOUCH_TOLERANCE_MM:g}: they share a voxel)")
    parser.add_argument("--connectivity", type=int, choices=CONNECTIVITIES, default=CONNECTIVITY,
                        help=f"voxel connectivity of a lesion (default {CONNECTIVITY})")
    add_dicom_options(parser)
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    parser.set_defaults(func=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:
    from ..analysis.longitudinal import CLASSES
    from ..analysis.scan_files import ScanFiles, compare_files
    from ..outputs import writable_folder

    out = writable_folder(args.output)
    baseline, followup = (ScanFiles(getattr(args, scan), *(getattr(args, f"{scan}_{part}")
                                                           for part in ("lesion", "soft", "cord")))
                          for scan in ("baseline", "followup"))
    outputs = compare_files(baseline, followup, out, levels=args.levels, register=not args.no_register,
                            change_percent=args.change_percent, min_change_mm3=args.min_change,
                            tolerance_mm=args.tolerance, connectivity=args.connectivity, series_uids=args.series_uid)
    summary, registration = outputs.summary, outputs.summary["registration"]
    print(", ".join(f"{name} {summary[name]}" for name in CLASSES))
    print(f"lesion volume {summary['baseline_volume_mm3']:.6g} -> {summary['followup_volume_mm3']:.6g} mm3")
    motion = registration["transform"]
    print("registration: " + (f"rotation {motion['rotation_deg']:.1f} deg, translation {motion['translation_mm']:.1f}"
                              f" mm, MI fraction {registration['metric']['mi_fraction']:.2f}"
                              if registration["registered"] else "none (--no-register)"))
    print(f"wrote {outputs.summary_json}, " + ", ".join(path.name for path in outputs.files[:-1]))
    return 0
