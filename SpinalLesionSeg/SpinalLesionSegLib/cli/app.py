"""The ``spinal-lesion-seg`` command.

Each subcommand is a small function here that parses its arguments and calls the library. Problems with the
user's input (:class:`~SpinalLesionSegLib.errors.InputError`) end in a one-line message on stderr and exit code 2,
never a traceback; genuine bugs still raise so they can be reported.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..defaults import PROG
from ..errors import InputError
from .predict import add_dicom_options

EXIT_BAD_INPUT = 2

#: Modules that add subcommands. Each defines ``register(commands)`` (``commands`` is the subparsers object) and
#: imports its heavy dependencies (torch, nnunetv2, matplotlib) inside its command functions, so that
#: ``spinal-lesion-seg --help`` stays fast.
COMMAND_MODULES: tuple[str, ...] = ("analysis", "batch", "dicom", "followup", "levels", "models", "phantom", "predict",
                                     "report")


def _cmd_info(args: argparse.Namespace) -> int:
    """Check images the way every other command will, and print their geometry."""
    from ..describe import describe_image, format_description
    from ..dicom_series import check_geometry, choose_series, is_dicom_folder
    from ..image_io import read_image

    failures = 0
    results = {}
    for path in args.images:
        try:
            info = describe_image(read_image(path, args.series_uid))
            if is_dicom_folder(path):
                series = check_geometry(choose_series(path, args.series_uid))
                info["dicom"] = {**series.record(), "output_stem": series.stem()}
        except InputError as error:
            failures += 1
            print(f"{PROG}: error: {error}", file=sys.stderr)
            continue
        results[path] = info
        if not args.json:
            print(format_description(path, info))
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    return EXIT_BAD_INPUT if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Segment multiple sclerosis lesions in spinal cord MRI with the published nnU-Net models, "
        "and report lesion counts and volumes per vertebral level.",
        epilog=f"Run '{PROG} COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    info = commands.add_parser(
        "info",
        help="check images and print their size, spacing (mm) and orientation",
        description="Check NIfTI/NRRD images or DICOM series as every command does (3D, scalar, finite, plausible "
        "spacing; for DICOM one regular stack of slices) and print their grid. Exit code 2 if any image is unusable.",
    )
    info.add_argument("images", nargs="+", metavar="IMAGE",
                      help="NIfTI (.nii, .nii.gz) or NRRD (.nrrd) file, or a folder of DICOM files")
    add_dicom_options(info)
    info.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")
    info.set_defaults(func=_cmd_info)

    for module_name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{module_name}").register(commands)
    return parser


def _check_outputs(args: argparse.Namespace) -> None:
    """Before any work (no model loaded, no image read): the output folder (``-o``) and an output file
    (``evaluate --json OUT``) must be writable, or the command stops in a second with one line."""
    from ..outputs import writable_file, writable_folder

    if getattr(args, "output", None) is not None:
        writable_folder(args.output)
    if isinstance(getattr(args, "json", None), str):
        writable_file(args.json)


def _show_warnings() -> None:
    """Show the library's logged warnings (plausibility, resampling) as one stderr line each, like predict's:
    ``spinal-lesion-seg: warning: FILE: what looks wrong``."""
    logger = logging.getLogger("SpinalLesionSegLib")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{PROG}: warning: %(message)s"))
        handler.setLevel(logging.WARNING)
        logger.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    _show_warnings()
    try:
        _check_outputs(args)
        return int(args.func(args))
    except InputError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:  # the machine, not a bug: a full disk, a folder that went away mid-run
        print(f"{PROG}: error: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
