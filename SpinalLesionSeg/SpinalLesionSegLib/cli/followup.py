"""``spinal-lesion-seg compare``: the change in a patient's lesions since the last scan.

Registered by :mod:`.app` through ``COMMAND_MODULES``. Only argparse and the defaults load at module level; the
registration and analysis modules (SimpleITK registration, scipy, matplotlib) load inside the command, so
``--help`` stays fast. The files are read and checked here; the comparison itself is
:func:`..analysis.longitudinal.compare_scans`, which the Slicer panel calls with its nodes' images.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from ..defaults import CONNECTIVITY, LESION_CHANGE_PERCENT, LESION_MIN_CHANGE_MM3, TOUCH_TOLERANCE_MM
from .analysis import non_negative

if TYPE_CHECKING:
    import numpy as np
    import SimpleITK as sitk

    from ..analysis.levels import LevelSource


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
        parser.add_argument(f"--{scan}", required=True, metavar="IMG", help=f"{name} image (NIfTI/NRRD)")
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
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    parser.set_defaults(func=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:
    from ..analysis.longitudinal import CLASSES, compare_scans, write_comparison
    from ..image_io import sha256_file
    from ..outputs import writable_folder

    out = writable_folder(args.output)
    scans = {scan: _read_scan(args, scan) for scan in ("baseline", "followup")}
    levels = _read_levels(args.levels, scans["baseline"][0], args.baseline) if args.levels else None
    (baseline, baseline_mask, baseline_soft, baseline_cord), (followup, followup_mask, followup_soft,
                                                              followup_cord) = scans.values()
    result = compare_scans(baseline, baseline_mask, followup, followup_mask, baseline_soft=baseline_soft,
                           followup_soft=followup_soft, baseline_cord=baseline_cord, followup_cord=followup_cord,
                           levels=levels, register=not args.no_register, change_percent=args.change_percent,
                           min_change_mm3=args.min_change, tolerance_mm=args.tolerance,
                           connectivity=args.connectivity, followup_source=args.followup)
    roles = [f"{scan}{part}" for scan in ("baseline", "followup") for part in ("", "_lesion", "_soft", "_cord")]
    outputs = write_comparison(result, out, inputs={role: {"path": str(path), "sha256": sha256_file(path)}
                                                    for role in [*roles, "levels"] if (path := getattr(args, role))})
    summary, registration = outputs.summary, result.registration
    print(", ".join(f"{name} {summary[name]}" for name in CLASSES))
    print(f"lesion volume {summary['baseline_volume_mm3']:.6g} -> {summary['followup_volume_mm3']:.6g} mm3")
    print("registration: " + (f"rotation {registration.rotation_deg:.1f} deg, translation "
                              f"{registration.translation_mm:.1f} mm, MI fraction {registration.mi_fraction:.2f}"
                              if registration.registered else "none (--no-register)"))
    print(f"wrote {outputs.summary_json}, " + ", ".join(path.name for path in outputs.files[:-1]))
    return 0


def _read_scan(args: argparse.Namespace, scan: str) -> tuple[sitk.Image, np.ndarray, np.ndarray | None,
                                                             np.ndarray | None]:
    """A scan's image and its lesion mask, soft map and cord (``[k, j, i]`` arrays), all on the image's grid."""
    from ..analysis.report import read_mask, soft_values
    from ..image_io import image_to_array, read_image

    path = getattr(args, scan)
    image = read_image(path)
    lesion_path, soft_path, cord_path = (getattr(args, f"{scan}_{what}") for what in ("lesion", "soft", "cord"))
    own = f"its image {path}"
    lesion = image_to_array(_on_grid(read_mask(lesion_path), image, lesion_path, own)) != 0
    soft = soft_values(_on_grid(read_image(soft_path), image, soft_path, own), soft_path) if soft_path else None
    cord = image_to_array(_on_grid(read_mask(cord_path), image, cord_path, own)) != 0 if cord_path else None
    return image, lesion, soft, cord


def _on_grid(image: sitk.Image, reference: sitk.Image, path: str | os.PathLike[str], what: str) -> sitk.Image:
    """``image`` (read from ``path``) unchanged when on ``reference``'s grid (``what`` names it); InputError
    otherwise: a scan's masks are drawn on that scan, and one on another grid is a mix-up (only registration
    brings the two scans together)."""
    from ..errors import InputError
    from ..image_io import same_grid

    if not same_grid(image, reference):
        raise InputError(path, f"is not on the voxel grid of {what} (size {list(image.GetSize())} vs "
                               f"{list(reference.GetSize())}, spacing {image.GetSpacing()} vs "
                               f"{reference.GetSpacing()} mm); give the file made on that scan")
    return image


def _read_levels(path: str | os.PathLike[str], baseline: sitk.Image, baseline_path: str) -> LevelSource:
    """The level source, whose label image (if any) must lie on the baseline grid."""
    from ..analysis.level_sources import load_level_source

    source = load_level_source(path)
    if source.regions is not None:
        _on_grid(source.regions, baseline, path, f"the baseline image {baseline_path}")
    return source
