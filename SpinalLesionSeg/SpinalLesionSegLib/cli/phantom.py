"""``spinal-lesion-seg phantom``: write a synthetic spinal cord MRI with its exact ground truth.

Useful to try the tool without patient data, to test a pipeline end to end, and to make training data for the
demo model. The generator lives in :mod:`..phantom`; this module only parses arguments.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..defaults import PHANTOM_CONTRAST
from ..phantom import CONTRASTS


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``phantom`` subcommand to the ``spinal-lesion-seg`` subparsers."""
    parser = commands.add_parser(
        "phantom",
        help="generate a synthetic spinal cord MRI with lesion, cord, level and disc ground truth",
        description="Generate a synthetic cervical spine MRI (curved cord, CSF, vertebrae, discs, MS lesions inside "
        "the cord) with noise, bias field, anisotropic voxels and a random voxel orientation, and write the image "
        "(<stem>_<contrast>.nii.gz), its ground truth (_lesion, _cord, _levels, _discs .nii.gz, on the image's "
        "grid) and <stem>_lesions.json (per-lesion centre in RAS mm, volume in mm3, vertebral level). "
        "The same seed always gives the same phantom.",
    )
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR", help="folder to write into")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--contrast", choices=CONTRASTS, default=PHANTOM_CONTRAST,
                        help=f"MRI contrast to imitate (default: {PHANTOM_CONTRAST})")
    parser.add_argument("--count", type=int, default=None, metavar="N",
                        help="number of lesions (default: random, 1-6, rarely 0)")
    parser.add_argument("--spacing", type=float, nargs=3, default=None, metavar=("RL", "AP", "SI"),
                        help="voxel size in mm along R-L, A-P, S-I (default: drawn from the seed)")
    parser.add_argument("--orientation", default=None, metavar="AXCODES",
                        help="voxel orientation such as RAS or PSR (default: drawn from the seed)")
    parser.add_argument("--stem", default="phantom", help="file name prefix (default: phantom)")
    parser.set_defaults(func=_cmd_phantom)


def _cmd_phantom(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..phantom import make_phantom, write_phantom

    try:
        phantom = make_phantom(args.seed, args.contrast, spacing=args.spacing, orientation=args.orientation,
                               lesion_count=args.count)
    except ValueError as error:  # a bad option value, e.g. a negative count or an orientation code typo
        raise InputError(None, str(error)) from None
    paths = write_phantom(phantom, args.output, stem=args.stem)
    total = sum(lesion.volume_mm3 for lesion in phantom.lesions)
    print(f"{len(phantom.lesions)} lesion(s), {total:.1f} mm3 in total; wrote {paths['image']} and ground truth "
          f"in {args.output}")
    return 0
