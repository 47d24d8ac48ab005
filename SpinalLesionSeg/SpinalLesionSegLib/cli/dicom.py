"""The ``dicom-export`` subcommand of ``spinal-lesion-seg``: the DICOM outputs (SEG, fractional SEG, TID 1500 SR,
secondary-capture preview; :mod:`..dicom.export`, the builder ``predict`` uses) of a lesion mask made on a DICOM
series, typically one a person corrected. The Slicer panel's "Export to DICOM..." runs this command in a separate
Python (:mod:`..mrml.dicom_export`): highdicom needs pydicom 3, Slicer's own DICOM module pydicom 2.

Registered by :mod:`.app` through ``COMMAND_MODULES``; highdicom loads inside the command function only.

The masks must lie on the series' grid (the volume :func:`..dicom_series.read_series` gives), or on the same voxels
stored in another axis order (a NIfTI written by Slicer or SCT from that series): those are reordered, never
resampled. The files are published as one set (:class:`..result_set.ResultSet`) with the manifest
``<stem>_dicom_export.json`` last (inputs and their sha256, the new objects' UIDs, the lesion totals of the SR).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
from pathlib import Path
from typing import Any

#: The manifest of an export, after the series' stem.
MANIFEST_SUFFIX = "_dicom_export.json"


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``dicom-export`` to the ``spinal-lesion-seg`` subcommands."""
    export = commands.add_parser(
        "dicom-export", help="DICOM SEG, fractional SEG, structured report and PACS preview of a (corrected) mask",
        description="Write, for a lesion mask on a DICOM series (e.g. predict's mask after correction), "
        "OUTDIR/<series>_lesion_seg.dcm (BINARY SEG: lesions, and the cord with --cord), <series>_lesion_soft.dcm "
        "(FRACTIONAL SEG of --soft), <series>_lesion_sr.dcm (TID 1500 report: each lesion's volume, mean "
        "probability with --soft; the totals) and <series>_preview_N.dcm (secondary-capture pictures), all "
        "referencing the series, with <series>_dicom_export.json listing what they were made from.")
    export.add_argument("--series", required=True, metavar="DICOM_FOLDER", help="folder of the source series' files")
    export.add_argument("--series-uid", nargs="+", default=[], metavar="UID",
                        help="for a folder holding several series, the one the mask was made on")
    export.add_argument("--lesion", required=True, metavar="MASK", help="binary lesion mask on the series' grid")
    export.add_argument("--soft", metavar="SOFT", help="soft map (probabilities 0..1): the fractional SEG and each "
                        "lesion's mean probability")
    export.add_argument("--cord", metavar="CORD", help="spinal cord mask: the SEG's second segment")
    export.add_argument("--model", metavar="NAME", help="the model that made the mask (default: from predict's "
                        "<mask>.json beside --lesion)")
    export.add_argument("--model-version", metavar="VERSION", default="", help="its release (default: predict's)")
    export.add_argument("--reviewed", action="store_true", help="a person corrected or reviewed the mask: the "
                        "descriptions say so and the lesion segment is SEMIAUTOMATIC instead of AUTOMATIC")
    export.add_argument("--uid-root", metavar="ROOT",
                        help="your organisation's DICOM UID root for the new objects (default: 2.25. UUID UIDs)")
    export.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    export.set_defaults(func=_cmd_dicom_export)


def _cmd_dicom_export(args: argparse.Namespace) -> int:
    check_dicom_writer()
    from ..analysis.lesions import analyze_lesions
    from ..dicom import DICOM_FILES
    from ..dicom.export import dicom_objects, stage_objects
    from ..dicom_series import read_series
    from ..image_io import sha256_file
    from ..outputs import WRITTEN_SHA256, writable_folder
    from ..result_set import ResultSet

    image, series = read_series(args.series, args.series_uid)
    lesion, soft, cord = _inputs_on_grid(args, image, series.uid)
    model, version = _model(args)
    out = writable_folder(args.output)
    stem = series.stem()
    _refuse_predict_folder(out, stem)
    objects = dicom_objects(series, image, lesion, soft, cord, model=model, model_version=version,
                            uid_root=args.uid_root, reviewed=args.reviewed)
    analysis = analyze_lesions(_array(lesion) != 0, image)
    totals = {"count": len(analysis.lesions), "volume_mm3": round(sum(x.volume_mm3 for x in analysis.lesions), 4)}
    roles = {role: out / f"{stem}_{name}" for role, name in DICOM_FILES.items()}
    inputs = {role: str(Path(path).resolve()) for role, path in
              (("lesion", args.lesion), ("soft", args.soft), ("cord", args.cord)) if path}
    with ResultSet(out / f"{stem}{MANIFEST_SUFFIX}", roles) as result_set:
        uids = stage_objects(result_set, objects)
        manifest = {"series": series.record(), "inputs": {role: {"path": path, "sha256": sha256_file(path)}
                                                          for role, path in inputs.items()},
                    "model": {"name": model, "release": version}, "reviewed": args.reviewed, "lesions": totals,
                    "dicom_outputs": uids, "outputs": {role: str(roles[role]) for role in result_set.staged},
                    WRITTEN_SHA256: result_set.sha256()}
        published = result_set.publish(json.dumps(manifest, indent=2) + "\n")
    print(f"{totals['count']} lesion(s), {totals['volume_mm3']:.1f} mm3; series {series.uid}")
    print(f"wrote {len(published) - 1} DICOM file(s) and {out / (stem + MANIFEST_SUFFIX)}")
    return 0


def check_dicom_writer() -> None:
    """InputError (one line) when this Python cannot write DICOM SEG: highdicom needs pydicom 3 (3D Slicer's own
    Python has pydicom 2 for its DICOM module, and must keep it: the Slicer panel puts pydicom 3 in a private folder,
    :func:`..slicer_requirements.use_dicom_packages`)."""
    from ..errors import InputError
    from ..slicer_requirements import use_dicom_packages

    private = use_dicom_packages()
    try:
        pydicom = importlib.metadata.version("pydicom")
        importlib.metadata.version("highdicom")
    except importlib.metadata.PackageNotFoundError as missing:
        pydicom = f"no {missing.name}"
    if pydicom[:1].isdigit() and int(pydicom.split(".")[0]) >= 3:
        return
    if private:
        raise InputError(None, f"DICOM export needs highdicom with pydicom 3 ({pydicom} here; Slicer keeps its own "
                               f"pydicom 2), which are not installed in {private}: click 'Install dependencies' in "
                               "the Spinal Lesion Seg panel")
    raise InputError(None, f"DICOM export needs highdicom with pydicom 3 ({pydicom} here): run it with a Python where "
                           "'pip install spinal-lesion-seg' was done (in Slicer: click 'Install dependencies', or "
                           "set the panel's 'Python for inference')")


def _array(image: Any) -> Any:
    import SimpleITK as sitk

    return sitk.GetArrayViewFromImage(image)


def _inputs_on_grid(args: argparse.Namespace, image: Any, series_uid: str) -> tuple[Any, Any, Any]:
    """The lesion mask, soft map (None) and cord mask (None) on the series' grid (see the module docstring)."""
    import numpy as np

    from ..analysis.report import read_mask, soft_values
    from ..image_io import array_to_image, read_image

    lesion = _on_grid(read_mask(args.lesion), image, args.lesion, series_uid)
    cord = _on_grid(read_mask(args.cord), image, args.cord, series_uid) if args.cord else None
    soft = None
    if args.soft:
        values = soft_values(_on_grid(read_image(args.soft), image, args.soft, series_uid), args.soft)
        soft = array_to_image(values.astype(np.float32), image)
    return lesion, soft, cord


def _on_grid(mask: Any, image: Any, path: str, series_uid: str) -> Any:
    """``mask`` on ``image``'s grid: as it is, or with its voxels reordered (never resampled); InputError else."""
    import SimpleITK as sitk

    from ..errors import InputError
    from ..geometry import axcodes, reorient
    from ..image_io import same_grid

    if not same_grid(mask, image):
        mask = reorient(mask, axcodes(image))
    if not same_grid(mask, image):
        raise InputError(path, f"is not on the grid of series {series_uid} (size {mask.GetSize()} vs "
                               f"{image.GetSize()}): export a mask made on that series")
    copy = sitk.Image(mask)
    copy.CopyInformation(image)  # within the grid tolerance: the series' exact geometry
    return copy


def _model(args: argparse.Namespace) -> tuple[str, str]:
    """(model name, release): as given, else from predict's sidecar ``<mask stem>.json`` beside the mask."""
    from .. import safe_json
    from ..errors import InputError
    from ..image_io import split_image_suffix

    name, version = args.model, args.model_version
    sidecar = Path(args.lesion).with_name(split_image_suffix(args.lesion)[0] + ".json")
    if name is None and sidecar.is_file():
        record = safe_json.load_file(sidecar)
        record = record.get("model", {}) if isinstance(record, dict) else {}
        record = record if isinstance(record, dict) else {}
        name, version = record.get("name"), version or str(record.get("release") or "")
    if not name:
        raise InputError(args.lesion, "has no predict sidecar beside it: name the model that made it with --model")
    return str(name), version


def _refuse_predict_folder(out: Path, stem: str) -> None:
    """predict's DICOM outputs of this series have the same names: never replace them (they are in its set)."""
    from ..errors import InputError

    sidecar = out / f"{stem}_lesion_seg.json"
    if sidecar.exists():
        raise InputError(out, f"holds predict's outputs of this series ({sidecar.name}), whose DICOM files have the "
                              "same names: write the export into another folder")
