"""The cord stage: the spinal cord for "Crop to cord: automatic" (``predict --roi auto``), and cord-only models.

Where the automatic cord comes from (:func:`auto_cord_source`), in this order:

1. the lesion model's own cord output, for a model that segments the cord too (region-based, e.g.
   ``lesion_ms_axial_t2``) and runs on whole images: one run gives lesions and cord; the ROI from that cord is then
   applied to the run's outputs (:func:`own_cord_roi`), which inside the ROI are exactly those of a run restricted
   to it (the predictor runs the same whole-image tiles there);
2. else the cord model (``job.cord_model``, default :data:`..models.manifests.CORD_MODEL`), run first
   (:func:`run_cord_model`) as SCT runs it: a crop-trained cord model (``crop_metadata.json``) on the box sc-crop
   detects, padded by those margins -- SCT has no whole-image fallback for it (sc-crop is a hard dependency of its
   inference, and a failed detection stops it), so neither do we: a missing sc-crop, missing detector weights or a
   failed detection is one line; a cord model trained on whole images (a custom one) runs on the whole image.

A cord-only model's mask is the mean cord probability over folds >= 0.5, reduced to its largest connected component
(face connectivity), as ``sct_deepseg spinalcord`` does (keep_largest=1; :func:`largest_cord`). The cord found then
counts as the cord mask of the one ROI rule (:func:`.roi.case_roi`): its box plus the lesion model's crop margins,
else the user's margin.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..analysis.lesions import label_components
from ..errors import InputError
from ..image_io import write_image
from ..models import manifests, registry
from .precision import FP32
from .predictor import LoadedModel, Prediction, Progress
from .predictor_steps import quiet
from .roi import Box, box_from_block, case_roi, crop_margins_mm, roi_mask

#: ``sct_deepseg spinalcord`` keeps the largest object of scipy.ndimage.label's default (face) connectivity.
CORD_CONNECTIVITY = 6
#: sc-crop's detector files, in its cache (``~/.cache/sc_crop/<model version>/``).
SC_CROP_WEIGHTS = ("det_model.onnx", "cls_model.onnx")
#: The order of :func:`.roi.crop_margins_mm`'s six margins, as sc_crop.detect's keyword arguments.
PAD_KEYS = ("pad_left", "pad_right", "pad_posterior", "pad_anterior", "pad_inferior", "pad_superior")

_LOADED: dict[tuple[str, str, str], LoadedModel] = {}


@dataclass(frozen=True)
class CordStage:
    """The automatic cord of a case: a uint8 mask on the input's grid and the sidecar's record of how it came."""

    cord: sitk.Image
    record: dict[str, Any]


def like(array: np.ndarray, image: sitk.Image) -> sitk.Image:
    """``array`` (``[k, j, i]``) as an image of ``image``'s pixel type on its grid."""
    result = sitk.Cast(sitk.GetImageFromArray(array), image.GetPixelID())
    result.CopyInformation(image)
    return result


def largest_cord(prediction: Prediction) -> Prediction:
    """The cord reduced to its largest connected component (SCT's keep_largest=1 for its cord model); the cord
    probability zeroed on the components dropped, so that the mask is still cord probability >= 0.5."""
    if prediction.cord is None:
        return prediction
    mask = sitk.GetArrayFromImage(prediction.cord) != 0
    labels, count = label_components(mask, CORD_CONNECTIVITY)
    if count <= 1:
        return prediction
    kept = labels == np.bincount(labels.ravel())[1:].argmax() + 1
    soft = prediction.cord_soft
    if soft is not None:
        values = sitk.GetArrayFromImage(soft)
        values[mask & ~kept] = 0.0
        soft = like(values, soft)
    return replace(prediction, cord=like(kept.astype(np.uint8), prediction.cord), cord_soft=soft)


def auto_cord_source(model: LoadedModel) -> str:
    """Where ``--roi auto`` takes the cord for ``model``: "own" (its own cord output, one whole-image run), "none"
    (a cord-only model: it finds its own crop) or "cord model"."""
    if model.task == "cord":
        return "none"
    return "own" if model.cord_channel is not None and not model.crop_input else "cord model"


def model_margins(model: LoadedModel) -> tuple[float, ...] | None:
    """The six crop margins (mm) of a crop-trained model (:func:`.roi.crop_margins_mm`), else None."""
    manifest = model.resolved.manifest
    fixed = manifest.crop.margins_mm if manifest is not None and manifest.crop else None
    return crop_margins_mm(model.resolved.crop_metadata, fixed)


def sc_crop_problem() -> str | None:
    """Why sc-crop cannot detect the cord here, in words, or None when it can: the package, the ultralytics and
    onnxruntime packages its detector runs on, and its detector weights in its cache (sc-crop would otherwise
    download them from GitHub at first use; we never let it)."""
    try:
        from sc_crop import download
    except ImportError as error:
        return f"the sc-crop package is not installed ({error}; pip install sc-crop)"
    for package in ("ultralytics", "onnxruntime"):
        if importlib.util.find_spec(package) is None:
            return f"sc-crop needs the {package} package, which is not installed (pip install sc-crop)"
    cache = Path(getattr(download, "_CACHE_DIR", Path.home() / ".cache" / "sc_crop"))
    missing = [name for name in SC_CROP_WEIGHTS if not (cache / name).is_file()]
    if missing:
        return (f"sc-crop's detector weights ({', '.join(missing)}) are not in {cache} (on a machine that reaches "
                "GitHub: python -c 'import sc_crop; sc_crop.download()', then copy that folder here)")
    return None


def detect_cord_box(image: sitk.Image, margins: Sequence[float], model_name: str) -> Box:
    """The box sc-crop detects around the cord of ``image``, padded by the model's margins (mm), as SCT runs its
    cord model (``sc_crop.detect(image, **crop_pad)``); InputError in one line when sc-crop cannot run here or
    finds no cord."""
    problem = sc_crop_problem()
    if problem:
        raise InputError(None, f"model {model_name} runs on the crop that sc-crop detects around the cord, as in "
                               f"SCT, but {problem}; or give a cord mask (--roi-mask)")
    import sc_crop

    with tempfile.TemporaryDirectory() as folder, quiet():
        path = write_image(image, Path(folder) / "image.nii.gz")
        try:
            box = sc_crop.detect(str(path), **dict(zip(PAD_KEYS, margins)))
        except RuntimeError as error:
            raise InputError(None, f"sc-crop found no spinal cord ({error}); give a cord mask (--roi-mask)") from None
    return box_from_block(image, [box["xmin"], box["ymin"], box["zmin"]], [box["xmax"], box["ymax"], box["zmax"]],
                          "sc-crop")


def cord_model_roi(model: LoadedModel, image: sitk.Image, roi: Box | None) -> Box | None:
    """The ROI a cord-only model runs on: the one given; else for a crop-trained model sc-crop's padded box (SCT
    has no other way); else None, the whole image."""
    if roi is not None or not model.crop_input:
        return roi
    margins = model_margins(model)
    if margins is None:
        raise InputError(model.folder, f"model {model.name} was trained on crops but has no crop margins "
                                       "(crop_metadata.json pad_*)")
    return detect_cord_box(image, margins, model.name)


def load_cord_model(name: str | None, device: str, lesion_model: str) -> LoadedModel:
    """The cord model for ``--roi auto`` (kept loaded for the next case); one line when it is not installed."""
    name = name or manifests.CORD_MODEL
    key = (name, device, str(registry.models_dir()))
    if key not in _LOADED:
        if name in manifests.MANIFESTS and not registry.is_installed(name):
            raise InputError(None, f"--roi auto needs the spinal cord: model {lesion_model} has no cord output and "
                                   f"the cord model '{name}' is not installed (spinal-lesion-seg models install "
                                   f"{name}, offline with --from its release zip); or give --roi-mask")
        _LOADED.clear()
        _LOADED[key] = LoadedModel(name, device=device)
    model = _LOADED[key]
    if model.task != "cord":
        raise InputError(model.folder, f"'{name}' is not a cord-only model (its labels: "
                                       f"{', '.join(model.dataset_json.get('labels', {}))}); give a cord model")
    return model


def run_cord_model(name: str | None, device: str, lesion_model: str, image: sitk.Image,
                   progress: Progress, precision: str = FP32) -> CordStage:
    """Run the cord model on ``image`` (the case's first input) as SCT runs it, in the job's ``precision``; the cord
    and its record."""
    started = time.perf_counter()
    model = load_cord_model(name, device, lesion_model)
    roi = cord_model_roi(model, image, None)
    prediction = largest_cord(model.predict(image, roi=roi, progress=progress, precision=precision))
    cord = _non_empty(prediction.cord, f"the cord model {model.name}")
    return CordStage(cord, {"source": "cord model", "model": model.name, "release": model.resolved.release,
                            "fingerprint": model.resolved.fingerprint, "folds": model.folds,
                            "crop": roi.as_dict() if roi else None, "seconds": round(time.perf_counter() - started, 3),
                            "precision": prediction.precision.name if prediction.precision else None})


def own_cord_roi(prediction: Prediction, image: sitk.Image, margin_mm: float, model: LoadedModel
                 ) -> tuple[Prediction, Box, dict[str, Any]]:
    """The ROI from the lesion model's own cord (its largest component) by the one ROI rule, applied to the
    prediction (every output zeroed outside it, as a run restricted to it gives); with the cord stage's record."""
    cord = _non_empty(largest_cord(prediction).cord, f"model {model.name}")
    roi = case_roi(mask=cord, margin_mm=margin_mm, model_margins_mm=model_margins(model), source="the model's cord")
    inside = roi_mask(image, roi)
    outputs = {key: getattr(prediction, key) for key in ("soft", "binary", "cord", "cord_soft")}
    zeroed = {key: like(sitk.GetArrayFromImage(value) * inside.astype(_dtype(value)), value)
              for key, value in outputs.items() if value is not None}
    return replace(prediction, roi=roi, **zeroed), roi, {"source": "the lesion model's own cord", "model": model.name}


def _dtype(image: sitk.Image) -> Any:
    return sitk.GetArrayViewFromImage(image).dtype


def _non_empty(cord: sitk.Image | None, what: str) -> sitk.Image:
    """``cord`` when it holds a voxel; else the one line saying there is no automatic ROI."""
    if cord is None or not sitk.GetArrayViewFromImage(cord).any():
        raise InputError(None, f"{what} found no spinal cord in this image, so there is no automatic region of "
                               "interest; give a cord mask (--roi-mask)")
    return cord

