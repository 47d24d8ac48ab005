"""``spinal-lesion-seg predict`` and ``spinal-lesion-seg demo``: lesion segmentation from the command line.

Both run the same pipeline as the background worker (:mod:`..inference.case`), in this process, with a progress bar on
a terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from .. import defaults
from ..models.manifests import CORD_MODEL


class ProgressBar:
    """A one-line progress bar on stderr when it is a terminal; plain stage lines otherwise."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self.last_stage = ""

    def __call__(self, stage: str, fraction: float) -> None:
        if self.tty:
            filled = int(30 * fraction)
            sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%} {stage:<20}")
            if fraction >= 1.0:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif stage != self.last_stage and stage != "done":
            print(f"{self.label}: {stage}", file=sys.stderr)
        self.last_stage = stage


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=defaults.MODEL,
                        help=f"installed model name or nnU-Net model folder (default: {defaults.MODEL})")
    parser.add_argument("--contrast", default=defaults.CONTRAST, choices=defaults.CONTRAST_CHOICES,
                        help="contrast of the input (auto: from a BIDS suffix such as _T2w in the file name)")
    parser.add_argument("--threshold", type=float, default=defaults.THRESHOLD,
                        help=f"binary = soft >= threshold (probability, default {defaults.THRESHOLD:g})")
    parser.add_argument("--ensemble", default=defaults.ENSEMBLE, choices=defaults.ENSEMBLE_RULES,
                        help="mean: threshold the mean probability over folds; majority: SCT's vote of fold masks")
    parser.add_argument("--device", default=defaults.DEVICE, choices=defaults.DEVICE_CHOICES,
                        help=f"where to run (default {defaults.DEVICE})")
    parser.add_argument("--folds", type=int, nargs="+", help="folds to ensemble (default: all available)")
    parser.add_argument("--tta", action="store_true", help="test-time mirroring (slower; off as in SCT)")
    parser.add_argument("--precision", default=defaults.PRECISION, choices=defaults.PRECISION_CHOICES,
                        help=f"the network's arithmetic (default {defaults.PRECISION}: on the CPU the same numbers as "
                        "stock nnU-Net); bf16/fp16 run it in 16 bits under torch.autocast, faster where the "
                        "hardware has them; auto: bf16 on a CPU with native bf16, fp16 on a CUDA GPU with tensor "
                        "cores, else fp32 (the sidecar records the choice)")
    parser.add_argument("--tile-step", type=_tile_step, default=defaults.TILE_STEP, metavar="STEP",
                        help=f"sliding-window step as a fraction of the patch (default {defaults.TILE_STEP:g}, as "
                        "nnU-Net and SCT; up to 1: fewer tiles, faster, less averaging at tile borders)")
    parser.add_argument("--roi-tiles", default=defaults.ROI_TILES, choices=defaults.ROI_TILES_CHOICES,
                        help="tiles run inside a region of interest: exact (default; the whole image's tiles that "
                        "touch it, so values inside it equal a whole-image run's) or centred (tiles laid over the ROI, "
                        "one tile when it fits in a patch: faster, values differ slightly; the sidecar records it)")
    parser.add_argument("--compile", action="store_true",
                        help="run the network through torch.compile, for long runs on a GPU: the first image waits "
                        "while it compiles (half a minute to a minute); the bare lesion_ms network ran twice as fast "
                        "compiled on an H200 (the whole pipeline not yet measured there); no gain on a CPU; falls "
                        "back to the plain network with a warning where compiling fails (the sidecar records it)")


def _tile_step(text: str) -> float:
    """``--tile-step``: a number in :data:`..defaults.TILE_STEP_RANGE` (argparse reports anything else)."""
    low, high = defaults.TILE_STEP_RANGE
    value = float(text)
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}, got {text}")
    return value


def add_outside_cord_options(parser: argparse.ArgumentParser, *, drop: bool = True,
                             cord: str = "--roi-mask, else the model's cord output") -> None:
    """``--outside-cord-margin`` and (``drop``) ``--drop-outside-cord``: the outside-cord rule's settings
    (:mod:`..analysis.outside_cord`), shared by predict, batch and stats; ``cord`` says where the cord comes from."""
    from .analysis import non_negative

    parser.add_argument("--outside-cord-margin", type=non_negative, default=defaults.OUTSIDE_CORD_MARGIN_MM,
                        metavar="MM", help="a lesion none of whose voxels lies within this distance of the cord is "
                        f"outside the cord: flagged (mm, default {defaults.OUTSIDE_CORD_MARGIN_MM:g}; the cord: "
                        f"{cord})")
    if drop:
        parser.add_argument("--drop-outside-cord", action="store_true",
                            help="drop the lesions outside the cord (their soft map zeroed too, so the mask stays "
                            "soft >= threshold); by default they are kept and listed in the sidecar")


def add_dicom_options(parser: argparse.ArgumentParser, *, writes: str | None = None, series: bool = True) -> None:
    """``--series-uid`` (which series of a DICOM folder; not for batch, which takes every series) and, when the
    command writes DICOM (``writes`` says what), ``--dicom-out`` and ``--uid-root``."""
    if series:
        parser.add_argument("--series-uid", nargs="+", default=[], metavar="UID",
                            help="for a DICOM folder holding several series, the one to read (several UIDs: each "
                            "folder uses the one it holds)")
    if writes:
        parser.add_argument("--dicom-out", action=argparse.BooleanOptionalAction, default=None,
                            help=f"also write {writes} (default: on for DICOM input)")
        parser.add_argument("--uid-root", metavar="ROOT",
                            help="your organisation's DICOM UID root for the new objects (default: 2.25. UUID UIDs)")


def _cmd_predict(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..inference.case import group_cases, load_model, predict_case
    from ..inference.protocol import Job
    from ..outputs import check_distinct_names

    if args.roi_margin < 0:
        raise InputError(None, f"--roi-margin must be >= 0 mm, got {args.roi_margin}")
    if args.roi == "auto" and args.roi_mask:
        raise InputError(None, "--roi auto finds the cord itself: give it without --roi-mask")
    if bool(args.images) == bool(args.named):
        args.usage_error("give the images either as IMAGE arguments or as --input NAME=IMAGE, not both")
    names, images = _named_inputs(args.named) if args.named else (None, args.images)
    check_distinct_names(images, args.series_uid)  # before the model is loaded
    model, info = load_model(args.model, folds=args.folds, device=args.device, tta=args.tta)
    print(f"model {model.name} (folds {model.folds}) on {model.device.name}: {model.device.reason}", file=sys.stderr)
    cases = group_cases(images, model.channel_names, names, info["missing_sequences"])
    job = Job(inputs=[str(p) for p in images], output_dir=str(args.output), model=args.model, channels=names,
              device=args.device, folds=args.folds, tta=args.tta, contrast=args.contrast, threshold=args.threshold,
              ensemble=args.ensemble, roi_mask=str(args.roi_mask) if args.roi_mask else None,
              roi_margin_mm=args.roi_margin, overwrite=args.overwrite, series_uids=args.series_uid,
              dicom_out=args.dicom_out, uid_root=args.uid_root, drop_outside_cord=args.drop_outside_cord,
              outside_cord_margin_mm=args.outside_cord_margin, roi_auto=args.roi == "auto",
              cord_model=args.cord_model, register=args.register, precision=args.precision,
              tile_step=args.tile_step, roi_tiles=args.roi_tiles, compile=args.compile)
    failures = 0
    for number, case in enumerate(cases, 1):
        shown = next(path for path in case if path is not None)  # a missing sequence is None
        try:
            result = predict_case(model, case, job, info, ProgressBar(f"[{number}/{len(cases)}] {shown.name}"))
        except InputError as error:
            failures += 1
            print(f"{defaults.PROG}: error: {error}", file=sys.stderr)
            continue
        for warning in result["warnings"]:
            print(f"{defaults.PROG}: warning: {warning}", file=sys.stderr)
        if "cord_voxels" in result:
            print(f"{shown}: {result['cord_voxels']} cord voxels -> {result['outputs']['sc_seg']}")
        else:
            print(f"{shown}: {result['lesion_voxels']} lesion voxels -> {result['outputs']['lesion_seg']}")
    return 2 if failures else 0


def _named_inputs(named: list[str]) -> tuple[list[str], list[Path]]:
    """(channel names, images) of ``--input NAME=IMAGE`` options, in the order given."""
    from ..inference.channels import parse_named_input

    pairs = [parse_named_input(text) for text in named]
    return [name for name, _ in pairs], [path for _, path in pairs]


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..analysis.report import run_stats
    from ..inference.case import load_model, predict_case
    from ..inference.protocol import Job
    from ..phantom import make_phantom, write_phantom
    from ..reporting.writer import make_report
    from .analysis import level_lines

    started = time.perf_counter()
    phantom = make_phantom(args.seed, contrast=defaults.PHANTOM_CONTRAST)
    inputs = write_phantom(phantom, args.output / "input", stem=f"demo-seed{args.seed}")
    model, info = load_model("demo", device=args.device)
    job = Job(inputs=[str(inputs["image"])], output_dir=str(args.output), device=args.device)
    result = predict_case(model, [inputs["image"]], job, info, ProgressBar("demo"))
    outputs = result["outputs"]
    # A region-based demo model segments the cord itself: levels then come from the phantom's disc points along
    # the model's cord (as a user's disc markups would), with no labelled cord given; else the phantom's labels.
    model_cord = outputs.get("sc_seg")
    levels, cord = (inputs["discs"], model_cord) if model_cord else (inputs["levels"], inputs["cord"])
    levels_from = ("the phantom's disc points along the model's cord" if model_cord
                   else "the phantom's labelled cord")
    stats = run_stats(outputs["lesion_seg"], args.output / "stats", soft_path=outputs["lesion_soft"],
                      levels_path=levels, cord_path=cord)
    report = make_report(inputs["image"], outputs["lesion_seg"], args.output / "report",
                         soft_path=outputs["lesion_soft"], levels_path=levels, cord_path=cord,
                         patient_id=f"demo-seed{args.seed}")
    summary = _demo_summary(phantom, result, time.perf_counter() - started)
    summary["levels_from"] = levels_from
    if model_cord:
        summary["cord_dice"] = _cord_dice(phantom, model_cord)
    summary["per_level"] = {level: row for level, row in stats.summary["per_level"].items() if row["lesions_touching"]}
    summary["stats"] = [str(path) for path in stats.files]
    summary["report"] = [str(report.html), str(report.pdf)]
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print("\n".join([_format_demo(summary), f"  per vertebral level (levels: {levels_from}):",
                         *("  " + line for line in level_lines(stats.summary)),
                         f"  report: {report.pdf} and {report.html.name} beside it"]))
    return 0


def _demo_summary(phantom: Any, result: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Compare the demo's prediction with the phantom's truth (seed paper's lesion-wise rules)."""
    import SimpleITK as sitk

    from ..analysis.metrics import evaluate
    from ..geometry import voxel_volume_mm3

    predicted = sitk.GetArrayFromImage(sitk.ReadImage(result["outputs"]["lesion_seg"])) > 0
    truth = sitk.GetArrayViewFromImage(phantom.lesion) > 0
    scores = evaluate(truth, predicted, voxel_volume_mm3(phantom.image))
    return {"input": result["inputs"][0], "outputs": result["outputs"],
            "true_lesions": scores.ref_lesion_count, "found_lesions": scores.tp,
            "false_positive_lesions": scores.fp, "true_volume_mm3": round(scores.ref_volume_mm3, 1),
            "predicted_volume_mm3": round(scores.pred_volume_mm3, 1), "dice": round(scores.dice, 3),
            "lesion_f1": round(scores.f1, 3), "device": result["device"]["name"], "seconds": round(seconds, 1)}


def _cord_dice(phantom: Any, cord_path: Any) -> float:
    """Dice of the model's cord against the phantom's true cord."""
    import SimpleITK as sitk

    predicted = sitk.GetArrayFromImage(sitk.ReadImage(str(cord_path))) > 0
    truth = sitk.GetArrayViewFromImage(phantom.cord) > 0
    return round(2 * float((predicted & truth).sum()) / max(1, int(predicted.sum()) + int(truth.sum())), 3)


def _format_demo(summary: dict[str, Any]) -> str:
    lines = [f"demo: synthetic T2w phantom {summary['input']}",
             f"  lesions: {summary['true_lesions']} true ({summary['true_volume_mm3']} mm3), "
             f"{summary['found_lesions']} found, {summary['false_positive_lesions']} false positive; "
             f"predicted {summary['predicted_volume_mm3']} mm3",
             (f"  Dice {summary['dice']}, lesion-wise F1 {summary['lesion_f1']}"
              + (f"; cord Dice {summary['cord_dice']} (the model's cord)" if "cord_dice" in summary else "")),
             f"  {summary['seconds']} s on {summary['device']}; outputs:"]
    lines += [f"    {path}" for path in summary["outputs"].values()]
    return "\n".join(lines)


def register(commands: Any) -> None:
    predict = commands.add_parser(
        "predict", help="segment MS lesions in images with an nnU-Net model",
        description="Segment MS lesions. Writes per input <stem>_lesion_seg.nii.gz (uint8), "
        "<stem>_lesion_soft.nii.gz (float32 probability), <stem>_sc_seg.nii.gz (region-based models, --roi auto) "
        "and the sidecar <stem>_lesion_seg.json, all on the input's grid (a cord-only model such as "
        "cord_contrast_agnostic: <stem>_sc_seg.nii.gz, <stem>_sc_soft.nii.gz and <stem>_sc_seg.json); for DICOM "
        "input also <stem>_lesion_seg.dcm and <stem>_lesion_soft.dcm (DICOM SEG). For a model with several input "
        "channels, give "
        "the images of each case consecutively.")
    predict.add_argument("images", nargs="*", type=Path, metavar="IMAGE",
                         help="NIfTI or NRRD image(s), or folder(s) of DICOM files (one series each, or --series-uid)")
    predict.add_argument("--input", action="append", dest="named", metavar="NAME=IMAGE",
                         help="an image named by the model channel it feeds (e.g. --input T2w=sag_t2.nii.gz --input "
                         "STIR=sag_stir.nii.gz): one case, in any order, instead of positional images")
    predict.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR", help="output folder")
    add_model_options(predict)
    add_dicom_options(predict, writes="DICOM SEG (lesions and probability), a structured report (TID 1500) "
                      "and a preview series next to the NIfTI outputs")
    predict.add_argument("--roi-mask", type=Path, metavar="CORD_MASK",
                         help="run only in the bounding box of this mask (e.g. a cord segmentation) plus a margin")
    predict.add_argument("--roi", choices=["auto"], metavar="auto",
                         help="crop to cord, automatically: find the cord first (the model's own cord output, else "
                         "the cord model, --cord-model), use it as --roi-mask and write it as <stem>_sc_seg.nii.gz")
    predict.add_argument("--cord-model", metavar="NAME_OR_FOLDER",
                         help=f"the cord model --roi auto runs (default {CORD_MODEL}; installed with 'models install')")
    predict.add_argument("--roi-margin", type=float, default=defaults.ROI_MARGIN_MM, metavar="MM",
                         help=f"margin around --roi-mask in mm (default {defaults.ROI_MARGIN_MM:g}); models trained "
                         "on crops use their own crop margins instead (crop_metadata.json, or the model's documented "
                         "ones)")
    predict.add_argument("--no-register", dest="register", action="store_false",
                         help="multi-channel models: take the sequences as aligned in scanner space (only resampled "
                         "onto the reference sequence's grid) instead of registering them to it")
    predict.add_argument("--overwrite", action="store_true",
                         help="replace existing outputs even when they differ from what the last run wrote (by "
                         "default a corrected mask is never overwritten)")
    add_outside_cord_options(predict)
    predict.set_defaults(func=_cmd_predict, usage_error=predict.error)

    demo = commands.add_parser(
        "demo", help="generate a synthetic scan, segment it with the bundled demo model, print a summary",
        description="Generate a synthetic spinal cord MRI phantom with known lesions, run the bundled demo model "
        "on it, write the outputs and compare them with the truth, the per-level statistics (stats/) and the report "
        "(report/report.pdf and report.html). Runs in seconds on a CPU, offline.")
    demo.add_argument("-o", "--output", type=Path, default=Path("spinal-lesion-seg-demo"), metavar="OUTDIR",
                      help="output folder (default ./spinal-lesion-seg-demo)")
    demo.add_argument("--seed", type=int, default=1, help="phantom seed (default 1)")
    demo.add_argument("--device", default=defaults.DEVICE, choices=defaults.DEVICE_CHOICES)
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.set_defaults(func=_cmd_demo)
