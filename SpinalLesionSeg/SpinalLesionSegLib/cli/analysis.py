"""The analysis subcommands of ``spinal-lesion-seg``: ``stats``, ``evaluate`` and ``sweep``.

Registered by :mod:`.app` through ``COMMAND_MODULES``. Only argparse is imported at module level; the analysis
modules (scipy, cc3d, matplotlib behind them) load inside the command functions, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``stats``, ``evaluate`` and ``sweep`` to the ``spinal-lesion-seg`` subcommands."""
    _register_stats(commands)
    _register_evaluate(commands)
    _register_sweep(commands)


def _register_stats(commands: argparse._SubParsersAction) -> None:
    from ..analysis.lesions import CONNECTIVITIES
    from ..analysis.level_sources import AUTO, KINDS  # numpy + SimpleITK only, already loaded by the CLI
    from ..defaults import CONNECTIVITY, LEVEL_MAX_DISTANCE_MM

    stats = _add_command(
        commands, "stats", _cmd_stats, help="lesion counts and volumes (mm3) per lesion and per vertebral level",
        description="Count the lesions of a mask (connected components) and measure each one: volume, soft "
        "volume, centroid, superior-inferior extent and vertebral levels. Writes lesions.csv, levels.csv, "
        "summary.json and <stem>_lesion_label.nii.gz into OUTDIR. Several --lesion masks are the stations of one "
        "exam (cervical, thoracic...): one table for the patient, the overlap counted once (stations_lesion_label"
        ".nii.gz on their union grid); give --soft, --cord and --levels once per station, in the same order. Rules: "
        "docs/conventions.md.")
    stats.add_argument("--lesion", required=True, nargs="+", metavar="MASK",
                       help="binary lesion mask (NIfTI/NRRD); several: the stations of one exam")
    stats.add_argument("--soft", nargs="+", metavar="SOFT", help="soft map (probabilities 0..1) for soft volumes")
    stats.add_argument("--levels", nargs="+", metavar="FILE", help="vertebral levels: SCT labelled cord, "
                       "TotalSpineSeg output, SCT disc points, or a Slicer .mrk.json point list naming discs; 'auto' "
                       "runs TotalSpineSeg on --image (cached in OUTDIR) and uses its discs and cord")
    stats.add_argument("--levels-kind", default=AUTO, choices=(AUTO, *KINDS),
                       help="kind of --levels (default: detected from the file)")
    stats.add_argument("--cord", nargs="+", metavar="CORD", help="spinal cord mask: centreline for disc points and for each "
                       "lesion's length, area and width, its damage ratio, the volume outside the cord, and the "
                       "lesion load (%% of cord volume) per level")
    stats.add_argument("--restrict-to-cord", action="store_true",
                       help="drop lesion voxels outside the cord mask dilated by --cord-dilation (reported)")
    stats.add_argument("--cord-dilation", type=non_negative, default=0.0, metavar="MM",
                       help="dilation of the cord mask for --restrict-to-cord, in mm (default 0)")
    stats.add_argument("--connectivity", type=int, choices=CONNECTIVITIES, default=CONNECTIVITY,
                       help=f"voxel connectivity of a lesion (default {CONNECTIVITY}, as sct_analyze_lesion)")
    stats.add_argument("--min-size", type=non_negative, default=0.0, metavar="MM3",
                       help="remove lesions smaller than this volume in mm3 (default 0; removals are reported)")
    stats.add_argument("--max-distance", type=non_negative, default=LEVEL_MAX_DISTANCE_MM, metavar="MM",
                       help="lesion voxels outside a labelled region take the level of the nearest labelled voxel "
                       f"within this distance in mm (default {LEVEL_MAX_DISTANCE_MM:g})")
    from .predict import add_outside_cord_options

    add_outside_cord_options(stats, drop=False, cord="--cord")
    stats.add_argument("--image", nargs="+", metavar="IMG", help="the scan the lesion mask was made from "
                       "(NIfTI/NRRD), one per station: TotalSpineSeg runs on it for --levels auto")
    add_auto_levels_options(stats)
    _add_resample(stats, "the soft map, cord mask and levels image onto the lesion mask's grid")
    _add_output_folder(stats)
    stats.set_defaults(usage_error=stats.error)


def _register_evaluate(commands: argparse._SubParsersAction) -> None:
    evaluate = _add_command(
        commands, "evaluate", _cmd_evaluate,
        help="Dice and lesion-wise TP/FP/FN, recall, PPV, F1 of predictions against references",
        description="Compare predicted masks with reference masks, pair by pair in the given order. Prints a table "
        "(and the means for several pairs); --json writes everything. Rules: docs/conventions.md.")
    _add_paired_files(evaluate, ("--ref", "REF", "reference mask(s)"), ("--pred", "PRED", "predicted mask(s)"))
    _add_resample(evaluate, "each prediction onto its reference's grid")
    evaluate.add_argument("--rules", choices=("paper", "anima"), default="paper",
                          help="lesion-wise rules: the seed paper's (default) or ANIMA's")
    evaluate.add_argument("--json", metavar="OUT", help="write per-pair metrics and means to this JSON file")


def _register_sweep(commands: argparse._SubParsersAction) -> None:
    sweep = _add_command(
        commands, "sweep", _cmd_sweep, help="Dice and lesion F1/PPV/recall for thresholds 0.05..0.95 of soft maps",
        description="Threshold soft maps at 0.05, 0.10, ..., 0.95 and score each against its reference (seed "
        "paper's rules). Two forms: --soft/--ref/-o writes sweep.csv, sweep.json (with the recommended threshold) "
        "and sweep.png into OUTDIR; --bids ROOT pairs every image's soft map (derivatives/spinal-lesion-seg) with "
        "its corrected mask (derivatives/labels/..._lesion-manual) and adds the best thresholds per subject, a "
        "FROC-style curve, the soft maps' calibration and bootstrap 95% intervals over subjects (sweep.csv, "
        "sweep.json, sweep.png, froc.png, calibration.png).")
    form = sweep.add_mutually_exclusive_group(required=True)
    form.add_argument("--soft", nargs="+", metavar="SOFT", help="soft map(s), values 0..1 (with --ref and -o)")
    form.add_argument("--bids", metavar="ROOT", help="root of a BIDS dataset pre-labelled by 'batch' and corrected")
    sweep.add_argument("--ref", nargs="+", metavar="REF", help="reference mask(s), same order as --soft")
    _add_resample(sweep, "each reference (manual mask) onto its soft map's grid")
    sweep.add_argument("-o", "--output", metavar="OUTDIR", help="output folder (required with --soft; with --bids "
                       "the default is ROOT/derivatives/spinal-lesion-seg/sweep)")
    sweep.set_defaults(usage_error=sweep.error)


def _add_resample(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--resample", action="store_true",
                        help=f"resample {what} (nearest neighbour) when the grids differ; without it a file on "
                        "another grid is refused, since it is usually a mix-up")


def _add_command(commands: argparse._SubParsersAction, name: str, func: Callable[[argparse.Namespace], int], *,
                 help: str, description: str) -> argparse.ArgumentParser:
    """A subcommand parser that runs ``func`` (which returns the exit code)."""
    parser = commands.add_parser(name, help=help, description=description)
    parser.set_defaults(func=func)
    return parser


def _add_paired_files(parser: argparse.ArgumentParser, *options: tuple[str, str, str]) -> None:
    """Required options taking one or more files each, matched by position (``--ref a b --pred c d``: a-c, b-d).

    ``options`` are (flag, metavar, help) triples."""
    for flag, metavar, text in options:
        parser.add_argument(flag, required=True, nargs="+", metavar=metavar, help=text)


def _add_output_folder(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")


def non_negative(text: str) -> float:
    """argparse type: a finite number >= 0 (mm, mm3, %)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _cmd_stats(args: argparse.Namespace) -> int:
    from ..analysis.report import run_stats
    from ..analysis.station_stats import run_station_stats

    options = {"levels_kind": args.levels_kind, "restrict_to_cord": args.restrict_to_cord,
               "cord_dilation_mm": args.cord_dilation, "connectivity": args.connectivity,
               "min_size_mm3": args.min_size, "max_distance_mm": args.max_distance, "resample": args.resample,
               "outside_cord_margin_mm": args.outside_cord_margin}
    if args.levels == [AUTO_LEVELS] or args.image is not None:
        _auto_levels_for_stats(args)
    if len(args.lesion) > 1:
        outputs = run_station_stats(args.lesion, args.output, soft_paths=args.soft or (), cord_paths=args.cord or (),
                                    levels_paths=args.levels or (), **options)
    else:
        single = {name: (getattr(args, name) or [None])[0] for name in ("soft", "levels", "cord")}
        if any(len(getattr(args, name) or []) > 1 for name in single):
            args.usage_error("--soft, --cord and --levels take one file each for one --lesion")
        outputs = run_stats(args.lesion[0], args.output, soft_path=single["soft"], levels_path=single["levels"],
                            cord_path=single["cord"], **options)
    if line := outside_cord_warning(outputs.summary):
        print(line, file=sys.stderr)
    print("\n".join(level_lines(outputs.summary)))
    for path in (outputs.lesions_csv, outputs.levels_csv, outputs.summary_json, outputs.label_image):
        print(f"wrote {path}")
    return 0


def _auto_levels_for_stats(args: argparse.Namespace) -> None:
    """``stats --levels auto --image IMG [IMG2 ...]``: replace ``args.levels`` (and ``args.cord`` when none was
    given, and ``args.levels_kind``) with TotalSpineSeg's cached outputs for each station's image. Stations get
    levels of one kind: its discs along the cord when every station has a cord, else its vertebrae."""
    if args.levels != [AUTO_LEVELS] or args.image is None:
        args.usage_error("--image and --levels auto go together (TotalSpineSeg runs on the image)")
    if len(args.image) != len(args.lesion) or (args.cord and len(args.cord) != len(args.lesion)):
        args.usage_error("give one --image (and one --cord, if any) per --lesion station, in the same order")
    args.levels, args.levels_kind, args.cord = station_auto_levels(args, args.image, args.cord)


def station_auto_levels(args: argparse.Namespace, images: list[str], cords: list[str] | None
                        ) -> tuple[list[str], str, list[str] | None]:
    """(levels file per station, their one kind, cord per station or None) from TotalSpineSeg's outputs for each
    station's image (cached in ``args.output``): its discs along each cord when every station has a cord and two
    discs, else its vertebrae for all (the stations' levels are merged, so they must be of one kind)."""
    runs = [run_auto_levels(args, image, args.output) for image in images]
    cords = [cord or (str(run.cord) if run.cord else None) for cord, run in zip(cords or [None] * len(runs), runs)]
    by_vertebrae = not all(cord and run.discs for cord, run in zip(cords, runs))
    found = [chosen_levels(run, cord, by_vertebrae) for run, cord in zip(runs, cords)]
    cords = [cord for _, _, cord in found]
    return [levels for levels, _, _ in found], found[0][1], cords if all(cords) else None


AUTO_LEVELS = "auto"
#: ``--device`` for TotalSpineSeg: its own choices (no mps); the default leaves the flag out (cuda when available).
TSS_DEVICES = ("auto", "cuda", "cpu")


def add_auto_levels_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``--levels auto`` (``stats``, ``report``): which TotalSpineSeg, and on what device."""
    parser.add_argument("--totalspineseg", metavar="CMD", help="TotalSpineSeg for --levels auto: its "
                        "'totalspineseg' command or the Python that has it (default: SPINAL_LESION_SEG_TOTALSPINESEG, "
                        "else 'totalspineseg' on PATH or beside this Python)")
    from ..defaults import DEVICE

    parser.add_argument("--device", default=DEVICE, choices=(DEVICE, *TSS_DEVICES[1:]),
                        help="device TotalSpineSeg runs on for --levels auto (default: cuda when available)")


def auto_levels_inputs(args: argparse.Namespace, image: str, out_dir: str, cord: str | None,
                       series_uids: tuple[str, ...] = ()) -> tuple[str, str, str | None]:
    """(levels file, its kind, cord mask) from TotalSpineSeg's outputs for ``image`` (cached in ``out_dir``): its
    discs along the cord when a cord is known (``cord``, else its own), else its vertebrae."""
    return chosen_levels(run_auto_levels(args, image, out_dir, series_uids), cord)


def run_auto_levels(args: argparse.Namespace, image: str, out_dir: str, series_uids: tuple[str, ...] = ()):
    """TotalSpineSeg's outputs for ``image``, cached in ``out_dir`` (:func:`..anatomy.totalspineseg.auto_levels`)."""
    from ..anatomy.totalspineseg import auto_levels

    if args.levels_kind != "auto":
        args.usage_error("--levels-kind does not apply to --levels auto")
    return auto_levels(image, out_dir, tool=args.totalspineseg, series_uids=series_uids,
                       device=None if args.device == TSS_DEVICES[0] else args.device)


def chosen_levels(found, cord: str | None, by_vertebrae: bool = False) -> tuple[str, str, str | None]:
    """(levels file, its kind, cord mask) of TotalSpineSeg's outputs ``found``: its discs along ``cord`` (else its
    own cord) unless ``by_vertebrae`` or no cord is known, else its vertebrae. One line on stderr says which."""
    cord = cord or (str(found.cord) if found.cord else None)
    levels, kind = found.level_source(cord is not None and not by_vertebrae)
    print(f"levels: TotalSpineSeg {found.version} ({'cached' if found.reused else 'run now'}, {found.manifest.name})"
          f": {'its discs along the cord' if kind == 'markups' else 'its vertebrae'}, cord from "
          f"{'--cord' if cord and cord != str(found.cord) else 'TotalSpineSeg' if cord else 'nowhere'}",
          file=sys.stderr)
    return str(levels), kind, cord


def outside_cord_warning(summary: dict) -> str | None:
    """The warning line for lesions outside the dilated cord in a stats summary (None when none or no cord)."""
    from ..defaults import PROG

    found = summary.get("outside_cord")
    if not found or not found["count"]:
        return None
    listed = ", ".join(f"{o['id']} ({o['distance_to_cord_mm']:.1f} mm away)" for o in found["lesions"])
    return (f"{PROG}: warning: {found['count']} lesion(s) outside the cord (farther than {found['margin_mm']:g} mm, "
            f"{found['volume_mm3']:.6g} mm3): {listed}; flagged in lesions.csv (outside_cord = 1)")


def level_lines(summary: dict) -> list[str]:
    """The terminal's per-level table of a stats summary: the totals, then each level a lesion touches (and the
    unassigned volume) with its lesion count (by primary level) and volume (mm3)."""
    lines = [f"{summary['lesion_count']} lesion(s), {summary['total_volume_mm3']:.6g} mm3 in total"]
    for level, row in summary["per_level"].items():
        if row["lesions_touching"] or level == "unassigned":
            lines.append(f"  {level:>10}: {row['lesion_count']} lesion(s) (primary), {row['volume_mm3']:.6g} mm3")
    return lines


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ..analysis.metrics import NUMERIC_FIELDS, evaluate, mean_metrics
    from ..analysis.report import read_mask, read_mask_on
    from ..errors import InputError
    from ..geometry import voxel_volume_mm3
    from ..image_io import image_to_array

    if len(args.ref) != len(args.pred):
        raise InputError(None, f"{len(args.ref)} reference(s) but {len(args.pred)} prediction(s): give them in "
                               "pairs, in the same order")
    results = []
    for ref_path, pred_path in zip(args.ref, args.pred):
        ref_image = read_mask(ref_path)
        pred = read_mask_on(pred_path, ref_image, f"the reference {ref_path}", resample=args.resample)
        voxel_volume = voxel_volume_mm3(ref_image)
        results.append(evaluate(image_to_array(ref_image) != 0, pred, voxel_volume, args.rules))

    columns = ("dice", "tp", "fp", "fn", "recall", "ppv", "f1", "ref_lesion_count", "pred_lesion_count",
               "volume_difference_mm3")
    header = ("pred", "dice", "TP", "FP", "FN", "recall", "PPV", "F1", "n_ref", "n_pred", "dV_mm3")
    names = [Path(p).name for p in args.pred]
    width = max(len("mean"), *(len(n) for n in names))
    print(f"{header[0]:<{width}} " + " ".join(f"{h:>7}" for h in header[1:]) + f"   (rules: {args.rules})")
    for name, result in zip(names, results):
        print(f"{name:<{width}} " + " ".join(_cell(getattr(result, c)) for c in columns))
    mean = mean_metrics(results)
    if len(results) > 1:
        print(f"{'mean':<{width}} " + " ".join(_cell(mean[c]) for c in columns))
    if args.json:
        from ..image_io import write_text

        document = {"rules": args.rules,
                    "cases": [{"ref": r, "pred": p, **m.as_dict()} for r, p, m in zip(args.ref, args.pred, results)],
                    "mean": {name: mean[name] for name in NUMERIC_FIELDS}}
        write_text(json.dumps(document, indent=2) + "\n", args.json)
        print(f"wrote {args.json}")
    return 0


def _cell(value: float | int) -> str:
    return f"{value:>7d}" if isinstance(value, int) else f"{value:>7.3f}"


def _cmd_sweep(args: argparse.Namespace) -> int:
    if args.bids is not None:
        if args.ref:
            args.usage_error("--ref goes with --soft; with --bids the manual masks are found in the dataset")
        return _cmd_sweep_bids(args)
    if not args.ref or args.output is None:
        args.usage_error("--soft needs --ref (one reference mask per soft map) and -o/--output")
    from ..analysis.sweep import run_sweep

    result = run_sweep(args.soft, args.ref, args.output, resample=args.resample)
    print(f"{'threshold':>9} {'dice':>6} {'F1':>6} {'PPV':>6} {'recall':>6} {'n_pred':>7}")
    for row in result.mean:
        print(f"{row['threshold']:>9.2f} {row['dice']:>6.3f} {row['f1']:>6.3f} {row['ppv']:>6.3f} "
              f"{row['recall']:>6.3f} {row['pred_lesion_count']:>7.1f}")
    best = result.recommended
    print(f"recommended threshold {best['threshold']:.2f} (mean lesion F1 {best['mean_f1']:.3f}, "
          f"mean Dice {best['mean_dice']:.3f})")
    print(f"wrote {Path(args.output) / 'sweep.csv'}, sweep.json, sweep.png")
    return 0


def _cmd_sweep_bids(args: argparse.Namespace) -> int:
    """``sweep --bids``: a few lines; everything else is in sweep.json."""
    from ..analysis.bids_sweep import run_bids_sweep

    result = run_bids_sweep(args.bids, args.output, resample=args.resample)
    document = result.document
    counts = document["pairing"]["counts"]
    print(f"{counts['images']} image(s): {counts['paired']} with a soft map and a manual mask (scored), "
          f"{counts['soft_only']} with only a soft map, {counts['manual_only']} with only a manual mask, "
          f"{counts['neither']} with neither; {len(document['subjects'])} subject(s)")
    for key, label in (("f1", "best lesion F1"), ("dice", "best Dice")):
        best = document["recommended"][key]
        ci = best["ci95"]
        print(f"{label} at threshold {best['threshold']:.2f}: mean F1 {best['mean_f1']:.3f} {_ci(ci['mean_f1'])}, "
              f"mean Dice {best['mean_dice']:.3f} {_ci(ci['mean_dice'])}")
        print(f"    lesion sensitivity {_number(best['lesion_sensitivity'])} {_ci(ci['lesion_sensitivity'])}, "
              f"false-positive lesions per scan {best['fp_per_scan']:.3f} {_ci(ci['fp_per_scan'])}")
    bootstrap = document["bootstrap"]
    print(f"[low, high]: 95% intervals, {bootstrap['resamples']} bootstrap resamples of the {bootstrap['subjects']} "
          "subject(s)" + (" (one subject: they cannot show any spread)" if bootstrap["subjects"] == 1 else ""))
    per_subject = [subject["recommended"]["f1"]["threshold"] for subject in document["subjects"]]
    if len(per_subject) > 1:
        print(f"best lesion F1 threshold per subject: {min(per_subject):.2f} to {max(per_subject):.2f} "
              "(each subject's in sweep.json)")
    print(f"wrote {result.files[-1]}, " + ", ".join(path.name for path in result.files[:-1]))
    return 0


def _ci(interval: list[float] | None) -> str:
    """A 95% interval as printed: ``[0.61, 0.83]``, or ``[n/a]`` when undefined."""
    return f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "[n/a]"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
