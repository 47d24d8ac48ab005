"""``spinal-lesion-seg levels``: TotalSpineSeg's vertebral levels, discs and cord of one scan, cached in OUTDIR.

The same run and cache as ``stats --levels auto`` (:mod:`..anatomy.totalspineseg`): a later call on the same image
reuses the cached files without finding or running the tool. The Slicer panel's "Find levels (TotalSpineSeg)" runs
this command in the background (``--json``: one line naming the files) and loads what it names.
"""

from __future__ import annotations

import argparse
import json


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``levels`` to the ``spinal-lesion-seg`` subcommands."""
    from .analysis import add_auto_levels_options
    from .predict import add_dicom_options

    levels = commands.add_parser(
        "levels", help="vertebral levels, discs and cord of a scan by TotalSpineSeg (cached beside the outputs)",
        description="Run TotalSpineSeg on IMG (or reuse its cached outputs for the same image) and write, in OUTDIR: "
        "<stem>_totalspineseg_levels.nii.gz (its label map: vertebrae, discs, cord, canal), "
        "<stem>_totalspineseg_discs.mrk.json (its discs as a Slicer point list, with at least two discs), "
        "<stem>_totalspineseg_cord.nii.gz (its cord) and <stem>_totalspineseg.json (what made them). Give them to "
        "'stats --levels' and '--cord', or use 'stats --levels auto', which runs this itself. Exit code 2 with one "
        "line when TotalSpineSeg or its weights are missing.")
    levels.add_argument("--image", required=True, metavar="IMG", help="the scan (NIfTI/NRRD, or a folder of DICOM "
                        "files)")
    levels.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder of the cached outputs")
    add_auto_levels_options(levels)
    add_dicom_options(levels)
    levels.add_argument("--json", action="store_true", help="print one JSON line naming the files (levels, discs, "
                        "cord, manifest; null when absent), the tool's version and whether the cache was reused")
    levels.set_defaults(func=_cmd_levels)


def _cmd_levels(args: argparse.Namespace) -> int:
    from ..anatomy.totalspineseg import auto_levels
    from .analysis import TSS_DEVICES

    found = auto_levels(args.image, args.output, tool=args.totalspineseg, series_uids=tuple(args.series_uid),
                        device=None if args.device == TSS_DEVICES[0] else args.device)
    files = {"levels": found.levels, "discs": found.discs, "cord": found.cord, "manifest": found.manifest}
    if args.json:
        print(json.dumps({**{role: str(path) if path else None for role, path in files.items()},
                          "version": found.version, "reused": found.reused}))
        return 0
    print(f"TotalSpineSeg {found.version} ({'cached outputs reused' if found.reused else 'run now'})")
    for role, path in files.items():
        print(f"{role}: {path if path else 'none'}")
    return 0
