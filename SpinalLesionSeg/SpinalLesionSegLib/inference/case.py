"""One prediction job from files to files: read and check the inputs, run the model, write outputs and sidecar.

Shared by the ``spinal-lesion-seg predict`` command and the background worker, so both give identical outputs.
Outputs per case (``<stem>`` = the first input's file name without its extension):

* ``<stem>_lesion_seg.nii.gz``  -- uint8 0/1 lesion mask
* ``<stem>_lesion_soft.nii.gz`` -- float32 mean lesion probability over folds, in [0, 1]
* ``<stem>_sc_seg.nii.gz``      -- uint8 0/1 spinal cord mask (region-based models only)
* ``<stem>_lesion_seg.json``    -- sidecar: model, folds, threshold, ensemble rule, device, orientation, ROI,
  contrast hint, timings, software version, BIDS-style ``GeneratedBy``.

All are written atomically (temporary name, then rename) and the sidecar last, so a complete sidecar means a
complete set of outputs.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from .. import __version__
from ..errors import InputError
from ..contrasts import resolve_contrast
from ..image_io import read_image, sha256_file, split_image_suffix, write_image, write_text
from .predictor import LoadedModel, Progress
from .roi import Box, box_from_mask, crop_margins_mm

CODE_URL = "https://github.com/SpinalLesionSeg/SpinalLesionSeg"


@dataclass
class CaseOptions:
    """What the user chose for one prediction (units: threshold in probability, margin in mm)."""

    contrast: str = "auto"
    threshold: float = 0.5
    ensemble: str = "mean"
    roi_mask: Path | None = None
    roi_margin_mm: float = 10.0
    roi_box: Box | None = None
    model_info: dict[str, Any] = field(default_factory=dict)


def load_model(model: str, *, folds: Sequence[int] | None = None, device: str = "auto",
               tta: bool = False) -> tuple[LoadedModel, dict[str, Any]]:
    """Resolve a model name or folder (checksums verified) and load it; also return what the sidecar records."""
    loaded = LoadedModel(model, folds=folds, device=device, tta=tta)
    resolved = loaded.resolved
    manifest = resolved.manifest
    info: dict[str, Any] = {"release": resolved.release, "fingerprint": resolved.fingerprint,
                            "checksum_verified": resolved.verified,
                            "contrasts": list(manifest.contrasts) if manifest else None,
                            "invert_psir": bool(manifest.invert_psir) if manifest else False,
                            "crop": manifest.crop.description if manifest and manifest.crop else None,
                            "crop_margins_mm": crop_margins_mm(resolved.crop_metadata) if resolved.crop_metadata
                            else None}
    return loaded, info


def group_cases(paths: Sequence[str | os.PathLike[str]], n_channels: int) -> list[list[Path]]:
    """Split input paths into cases: one path per case for single-channel models, else consecutive groups of
    ``n_channels`` (e.g. ``T2w.nii.gz STIR.nii.gz T2w_2.nii.gz STIR_2.nii.gz`` for a two-channel model)."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError(None, "no input image given")
    if len(paths) % n_channels:
        raise InputError(None, f"the model takes {n_channels} images per case; got {len(paths)} images, "
                               f"not a multiple of {n_channels}")
    return [paths[i:i + n_channels] for i in range(0, len(paths), n_channels)]


def output_paths(out_dir: Path, stem: str) -> dict[str, Path]:
    return {
        "lesion_seg": out_dir / f"{stem}_lesion_seg.nii.gz",
        "lesion_soft": out_dir / f"{stem}_lesion_soft.nii.gz",
        "sc_seg": out_dir / f"{stem}_sc_seg.nii.gz",
        "sidecar": out_dir / f"{stem}_lesion_seg.json",
    }


def predict_case(model: LoadedModel, inputs: Sequence[Path], out_dir: Path, options: CaseOptions,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Predict one case (one input per model channel) and write its outputs; return the result record."""
    started = time.perf_counter()
    inputs = [Path(p) for p in inputs]
    images = [read_image(p) for p in inputs]
    contrast, contrast_source = resolve_contrast(options.contrast, inputs[0])
    warnings: list[str] = []
    trained_on = options.model_info.get("contrasts")
    if contrast and trained_on and contrast not in trained_on:
        warnings.append(f"model {model.name} was not trained on {contrast} (trained on {', '.join(trained_on)}); "
                        "check the result carefully")
    if contrast == "PSIR" and options.model_info.get("invert_psir"):
        # Some models were trained on sign-inverted PSIR (SCT multiplied PSIR by -1 for them); only those get it.
        images = [sitk.Cast(images[0], sitk.sitkFloat32) * -1.0] + images[1:]
        warnings.append("PSIR intensities multiplied by -1, as this model expects")
    roi = options.roi_box
    if options.roi_mask is not None:
        # A crop-trained model gets the margins it was trained with (crop_metadata.json), as SCT crops for it.
        margin = options.model_info.get("crop_margins_mm") or options.roi_margin_mm
        roi = box_from_mask(read_image(options.roi_mask), margin, source=str(options.roi_mask))
    if roi is None and options.model_info.get("crop"):
        warnings.append(f"model {model.name} was trained on images cropped around the cord "
                        f"({options.model_info['crop']}); give a cord mask (--roi-mask) or an ROI")
    read_seconds = time.perf_counter() - started

    prediction = model.predict(images, threshold=options.threshold, ensemble=options.ensemble, roi=roi,
                               progress=progress)

    stem = split_image_suffix(inputs[0])[0]
    paths = output_paths(out_dir, stem)
    write_started = time.perf_counter()
    for path in paths.values():  # hidden temporary files left by a run killed while writing these outputs
        for stale in path.parent.glob(f".{path.name}.*.partial*"):
            stale.unlink(missing_ok=True)
    write_image(prediction.binary, paths["lesion_seg"])
    write_image(prediction.soft, paths["lesion_soft"])
    outputs = {"lesion_seg": str(paths["lesion_seg"]), "lesion_soft": str(paths["lesion_soft"])}
    if prediction.cord is not None:
        write_image(prediction.cord, paths["sc_seg"])
        outputs["sc_seg"] = str(paths["sc_seg"])
    timings = {"read_s": read_seconds, **prediction.timings_s, "write_s": time.perf_counter() - write_started,
               "model_load_s": model.load_seconds}
    sidecar = {
        "model": {"name": model.name, "folder": str(model.folder), "trainer": model.trainer_name,
                  **{k: v for k, v in options.model_info.items() if k != "contrasts"}},
        "folds": model.folds,
        "threshold": options.threshold,
        "ensemble": {"rule": options.ensemble,
                     "definition": "binary = mean lesion probability over folds >= threshold"
                     if options.ensemble == "mean" else
                     "binary = majority vote of per-fold argmax masks (mean of fold masks > 0.5), as SCT"},
        "soft_map": "mean lesion probability over folds (float32, 0..1)",
        "test_time_augmentation": model.tta,
        "device": {"name": model.device.name, "reason": model.device.reason},
        "orientation": {"model_sct": model.orientation_sct, "model_axcodes": model.orientation_axcodes,
                        "source": model.orientation_source},
        "roi": roi.as_dict() if roi else None,
        "contrast": {"hint": options.contrast, "used": contrast, "source": contrast_source},
        "warnings": warnings,
        "outputs": outputs,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "Sources": [{"path": str(p), "sha256": sha256_file(p)} for p in inputs],
        "GeneratedBy": [{"Name": "SpinalLesionSeg", "Version": __version__, "CodeURL": CODE_URL,
                         "Description": f"MS lesion segmentation with nnU-Net model {model.name}"}],
    }
    write_text(json.dumps(sidecar, indent=2) + "\n", paths["sidecar"])
    outputs["sidecar"] = str(paths["sidecar"])
    return {"inputs": [str(p) for p in inputs], "outputs": outputs, "timings_s": sidecar["timings_s"],
            "device": sidecar["device"], "warnings": warnings,
            "lesion_voxels": int(sitk.GetArrayViewFromImage(prediction.binary).sum())}
