"""One prediction job from files to files: read and check the inputs, run the model, write outputs and sidecar.

Shared by the ``spinal-lesion-seg predict`` command and the background worker, so both give identical outputs.
Outputs per case (``<stem>`` = the first input's file name without its extension):

* ``<stem>_lesion_seg.nii.gz``  -- uint8 0/1 lesion mask
* ``<stem>_lesion_soft.nii.gz`` -- float32 mean lesion probability over folds, in [0, 1]
* ``<stem>_sc_seg.nii.gz``      -- uint8 0/1 spinal cord mask (region-based models, and ``--roi auto``: the cord the
  ROI came from, :mod:`.cord_stage`)
* ``<stem>_lesion_seg.json``    -- sidecar: model, folds, threshold, ensemble rule, device, precision, compile, ROI,
  orientation, contrast hint, lesions outside the cord (:func:`outside_cord_record`), timings, BIDS ``GeneratedBy``.
* for a DICOM input (a folder; ``<stem>`` = the series' readable name) also the DICOM outputs
  (:mod:`..dicom.export`): ``<stem>_lesion_seg.dcm`` and ``<stem>_lesion_soft.dcm`` (SEG), ``<stem>_lesion_sr.dcm``
  (structured report) and ``<stem>_preview_N.dcm`` (secondary capture).

A cord-only model (``cord_contrast_agnostic``) writes ``<stem>_sc_seg.nii.gz`` (its largest component, as SCT),
``<stem>_sc_soft.nii.gz`` (float32 mean cord probability) and the sidecar ``<stem>_sc_seg.json`` instead.

They are published as one set (:mod:`..result_set`): staged under hidden temporary names, then renamed into place
with the sidecar last, under a journal that the next run rolls forward if this one is killed; so a folder holds the
old complete set or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from .. import __version__, defaults
from ..analysis.outside_cord import RULE, drop_outside_cord, outside_cord_lesions
from ..contrasts import resolve_contrast
from ..errors import InputError
from ..dicom import DICOM_FILES, wants_dicom
from ..dicom_series import check_geometry, choose_series, is_dicom_folder
from ..image_io import input_digest, input_stem, read_image, resample_to_grid, sha256_file
from ..models.resolve import ResolvedModel
from ..outputs import WRITTEN_SHA256, check_not_corrected, writable_folder
from ..plausibility import contrast_conflict, contrast_evidence, looks_like_image, roi_mask_fit
from ..result_set import ResultSet, recover
from .channels import REFUSE, order_by_channel, sequence_rules
from .cord_stage import auto_cord_source, cord_model_roi, largest_cord, like, own_cord_roi, run_cord_model
from .precision import emulation_warning
from .predictor import CORD_THRESHOLD, LoadedModel, Prediction, Progress
from .protocol import Job
from .sequences import AlignedSequences, align_sequences, transform_names
from .roi import Box, box_from_corners, case_roi, crop_margins_mm

#: The progress fraction at which a case starts writing its outputs (the "write" stage).
WRITE_FRACTION = 0.97
#: The progress fraction at which ``--roi auto``'s cord model hands over to the lesion model.
CORD_FRACTION = 0.3
CODE_URL = "https://github.com/SpinalLesionSeg/SlicerSpinalLesionSeg"
#: The sources of the cord the outside-cord rule measures from, as the warnings name them.
CORD_SOURCES = {"roi_mask": "the given cord mask", "model": "the model's cord", "cord_model": "the cord model's cord"}
#: What each ensemble rule means, written into the sidecar.
ENSEMBLE_DEFINITIONS = {
    "mean": "binary = mean lesion probability over folds >= threshold",
    "majority": "binary = majority vote of per-fold argmax masks (mean of fold masks > 0.5), as SCT",
}


def load_model(model: str, *, folds: Sequence[int] | None = None, device: str = defaults.DEVICE,
               tta: bool = False) -> tuple[LoadedModel, dict[str, Any]]:
    """Resolve a model name or folder (checksums verified) and load it; also return :func:`model_info`."""
    loaded = LoadedModel(model, folds=folds, device=device, tta=tta)
    return loaded, model_info(loaded.resolved)


def model_info(resolved: ResolvedModel) -> dict[str, Any]:
    """What the sidecar records about a model, and what a case needs from its manifest: trained contrasts, PSIR
    inversion, and for crop-trained models the crop and its six margins (mm, :func:`.roi.crop_margins_mm`)."""
    manifest = resolved.manifest
    crop = manifest.crop if manifest else None
    return {"release": resolved.release, "fingerprint": resolved.fingerprint, "checksum_verified": resolved.verified,
            "contrasts": list(manifest.contrasts) if manifest else None,
            "invert_psir": bool(manifest.invert_psir) if manifest else False,
            "crop": crop.description if crop else None,
            **dict(zip(("reference_channel", "missing_sequences"), sequence_rules(manifest))),
            "crop_margins_mm": crop_margins_mm(resolved.crop_metadata, crop.margins_mm if crop else None)}


def result_settings(job: Job) -> dict[str, Any]:
    """The job settings a result depends on, as the sidecar records them under ``settings``: what a batch re-run
    compares (with the model's fingerprint and the input's sha256) to decide whether a result is still current.
    Where and how it ran (device, compile) is not: a result is as good from one device as from another. The precision,
    the tile step and the ROI tiling are, when not the defaults (so that results made before the options existed
    stay current; the ROI tiling only with an ROI, the one case where it changes anything)."""
    return {"folds": job.folds, "tta": job.tta, "contrast": job.contrast, "threshold": job.threshold,
            "ensemble": job.ensemble, "roi_mask_sha256": sha256_file(job.roi_mask) if job.roi_mask else None,
            "roi_margin_mm": job.roi_margin_mm, "roi_box": job.roi_box.to_dict() if job.roi_box else None,
            "series_uids": job.series_uids, "dicom_out": job.dicom_out,
            "drop_outside_cord": job.drop_outside_cord, "outside_cord_margin_mm": job.outside_cord_margin_mm,
            **({"roi_auto": True, "cord_model": job.cord_model} if job.roi_auto else {}),
            **({} if job.register else {"register": False}),
            **({"precision": job.precision} if job.precision != defaults.PRECISION else {}),
            **({"tile_step": job.tile_step} if job.tile_step != defaults.TILE_STEP else {}),
            **({"roi_tiles": job.roi_tiles} if job.roi_tiles != defaults.ROI_TILES and (
                job.roi_mask or job.roi_box or job.roi_auto) else {})}


def group_cases(paths: Sequence[str | os.PathLike[str]], channel_names: Sequence[str],
                names: Sequence[str] | None = None, policy: str = REFUSE) -> list[list[Path | None]]:
    """Split input paths into cases. Named (``names``, one per path: ``--input T2w=...``): one case, in the
    model's channel order, a missing sequence None where the model's ``policy`` allows it
    (:func:`.channels.order_by_channel`). Else by order: one path per case for single-channel models, consecutive
    groups of as many paths as channels otherwise (e.g. ``T2w.nii.gz STIR.nii.gz T2w_2.nii.gz STIR_2.nii.gz``)."""
    if not paths:
        raise InputError(None, "no input image given")
    if names is not None:
        return [order_by_channel(names, paths, channel_names, policy)]
    paths = [Path(p) for p in paths]
    n_channels = len(channel_names)
    if len(paths) % n_channels:
        raise InputError(None, f"the model takes {n_channels} images per case; got {len(paths)} images, "
                               f"not a multiple of {n_channels}")
    return [paths[i:i + n_channels] for i in range(0, len(paths), n_channels)]


def output_paths(out_dir: Path, stem: str, cord_only: bool = False) -> dict[str, Path]:
    """The files of a case (a cord-only model's when ``cord_only``), by role; the sidecar is written last."""
    if cord_only:
        return {"sc_seg": out_dir / f"{stem}_sc_seg.nii.gz", "sc_soft": out_dir / f"{stem}_sc_soft.nii.gz",
                "sidecar": out_dir / f"{stem}_sc_seg.json"}
    return {
        "lesion_seg": out_dir / f"{stem}_lesion_seg.nii.gz",
        "lesion_soft": out_dir / f"{stem}_lesion_soft.nii.gz",
        "sc_seg": out_dir / f"{stem}_sc_seg.nii.gz",
        "sidecar": out_dir / f"{stem}_lesion_seg.json",
        **{role: out_dir / f"{stem}_{name}" for role, name in DICOM_FILES.items()},
    }


def predict_case(model: LoadedModel, inputs: Sequence[Path], job: Job, info: dict[str, Any],
                 progress: Progress | None = None) -> dict[str, Any]:
    """Predict one case (one input per model channel) as ``job`` asks, with the model's :func:`model_info`, and
    write its outputs into ``job.output_dir``; return the result record."""
    started = time.perf_counter()
    inputs = [None if p is None else Path(p) for p in inputs]  # None: a missing sequence (the policy allowed it)
    report = progress or (lambda stage, fraction: None)
    cord_only = model.task == "cord"
    reference, paths = _case_paths(model, inputs, job, info)
    recover(paths["sidecar"])  # a killed run's half-published set is completed before it is judged
    check_not_corrected(paths, paths["sidecar"], job.overwrite)  # before the work, not after it
    dicom = wants_dicom(job.dicom_out, inputs[reference]) and not cord_only
    images, contrast, warnings = _read_case(model, inputs, job, info)
    images, sequences = _on_reference_grid(images, inputs, model, reference, job, info)
    read_seconds = time.perf_counter() - started

    prediction, roi, stage = _predict(model, images, job, info, warnings, report)
    outside: dict[str, Any] | None = None
    if not cord_only:
        cord_source = "cord_model" if stage and stage["source"] == "cord model" else "model"
        prediction, outside = outside_cord_record(prediction, job, images[0], warnings, cord_source)

    report("write", WRITE_FRACTION)
    write_started = time.perf_counter()
    roles = {r: p for r, p in paths.items() if r != "sidecar"}
    outputs = (("sc_seg", prediction.cord), ("sc_soft", prediction.cord_soft)) if cord_only else (
        ("lesion_seg", prediction.binary), ("lesion_soft", prediction.soft), ("sc_seg", prediction.cord))
    with ResultSet(paths["sidecar"], roles, overwrite=job.overwrite) as result_set:
        for role, image in outputs:
            if image is not None:
                result_set.stage_image(role, image)
        for name, text in (sequences.transforms if sequences else {}).items():
            result_set.stage_text(f"transform_{name}", text)
        dicom_uids = (_stage_dicom(result_set, job, inputs[reference], images[reference], prediction, model, info)
                      if dicom else None)
        timings = {"read_s": read_seconds, **prediction.timings_s, "write_s": time.perf_counter() - write_started,
                   "model_load_s": model.load_seconds}
        sidecar = _sidecar(model, job, info, inputs, contrast, roi, warnings, result_set, timings)
        sidecar["dicom_outputs"], sidecar["outside_cord"], sidecar["cord_stage"] = dicom_uids, outside, stage
        sidecar["sequences"] = sequences.record(model.channel_names[reference], job.register) if sequences else None
        sidecar["precision"] = prediction.precision.record(job.precision) if prediction.precision else None
        sidecar["tiles"] = prediction.tiles.record() if prediction.tiles else None
        sidecar["compile"] = prediction.compiled.record() if prediction.compiled else None
        published = result_set.publish(json.dumps(sidecar, indent=2) + "\n")
    report("done", 1.0)
    counted = prediction.cord if cord_only else prediction.binary
    return {"inputs": [str(p) for p in inputs if p], "outputs": {role: str(path) for role, path in published.items()},
            "timings_s": sidecar["timings_s"], "device": sidecar["device"], "warnings": warnings,
            "outside_cord": outside["lesions"] if outside else None,
            ("cord_voxels" if cord_only else "lesion_voxels"): int(sitk.GetArrayViewFromImage(counted).sum())}


def _case_paths(model: LoadedModel, inputs: list[Path | None], job: Job, info: dict[str, Any]
                ) -> tuple[int, dict[str, Path]]:
    """(the reference channel, the case's output paths by role): outputs are named after the reference sequence's
    file (channel 0 but for a manifest's ``reference_channel``; the first sequence given when that one is missing),
    plus one ``.tfm`` per registered sequence."""
    reference = info.get("reference_channel", 0) if len(inputs) > 1 else 0
    if inputs[reference] is None:  # missing, as the model's policy allows: the first sequence given stands in
        reference = next(number for number, path in enumerate(inputs) if path is not None)
    stem = input_stem(inputs[reference], job.series_uids)
    paths = output_paths(writable_folder(job.output_dir), stem, model.task == "cord")
    missing = [name for name, path in zip(model.channel_names, inputs) if path is None]
    transforms = transform_names(stem, model.channel_names, reference, missing) if job.register else {}
    return reference, {**paths, **{f"transform_{name}": paths["sidecar"].parent / file
                                   for name, file in transforms.items()}}


def _on_reference_grid(images: list[sitk.Image | None], inputs: list[Path | None], model: LoadedModel,
                       reference: int, job: Job, info: dict[str, Any]
                       ) -> tuple[list[sitk.Image], AlignedSequences | None]:
    """A multi-sequence case's images on the reference sequence's grid (:mod:`.sequences`; the job's ROI mask, a
    cord, restricts the registration), and the alignment; one image as it is."""
    if len(images) == 1:
        return images, None
    sequences = align_sequences(images, inputs, model.channel_names, reference, register=job.register,
                                cord=read_image(job.roi_mask) if job.roi_mask else None,
                                policy=info.get("missing_sequences", REFUSE))
    return sequences.images, sequences


def _predict(model: LoadedModel, images: list[sitk.Image], job: Job, info: dict[str, Any], warnings: list[str],
             report: Progress) -> tuple[Prediction, Box | None, dict[str, Any] | None]:
    """Run the model with the job's ROI (the one rule, :func:`_case_roi`); for ``--roi auto`` first the cord stage
    (:mod:`.cord_stage`): the lesion model's own cord, else the cord model's. A cord-only model keeps its largest
    cord component and, trained on crops and given no ROI, runs on sc-crop's box. Returns the prediction, its ROI
    and the cord stage's record (None without ``--roi auto``)."""
    source = auto_cord_source(model) if job.roi_auto else None
    stage, lesion_report = None, _scaled(report, 0.0, WRITE_FRACTION)
    if source == "cord model":
        stage = run_cord_model(job.cord_model, job.device, model.name, images[0],
                               _scaled(report, 0.0, CORD_FRACTION, "cord: "), job.precision)
        lesion_report = _scaled(report, CORD_FRACTION, WRITE_FRACTION)
    roi = _case_roi(job, info, model, images[0], warnings, stage.cord if stage else None)
    if model.task == "cord":
        roi = cord_model_roi(model, images[0], roi)
    prediction = model.predict(images, threshold=job.threshold, ensemble=job.ensemble, roi=roi,
                               progress=lesion_report, precision=job.precision, tile_step=job.tile_step,
                               roi_tiles=job.roi_tiles, compile_network=job.compile)
    warnings.extend(filter(None, [emulation_warning(prediction.precision, model.device.device),
                                  prediction.compiled.warning() if prediction.compiled else None]))
    if model.task == "cord":
        return largest_cord(prediction), roi, None
    if source == "own":
        prediction, roi, record = own_cord_roi(prediction, images[0], job.roi_margin_mm, model)
        return prediction, roi, record
    if stage is not None:
        return replace(prediction, cord=stage.cord), roi, {**stage.record, "roi": roi.as_dict() if roi else None}
    return prediction, roi, None


def _scaled(report: Progress, low: float, high: float, prefix: str = "") -> Progress:
    """A predictor's progress squeezed into ``low``..``high`` (its "done" dropped: the case is done only once its
    outputs are published), its stages prefixed."""
    def scaled(stage: str, fraction: float) -> None:
        if stage != "done":
            report(prefix + stage, low + fraction * (high - low))
    return scaled


def outside_cord_record(prediction: Prediction, job: Job, image: sitk.Image, warnings: list[str],
                        cord_source: str = "model") -> tuple[Prediction, dict[str, Any]]:
    """Judge the predicted lesions by the outside-cord rule (:mod:`..analysis.outside_cord`) against the known cord
    (:func:`_rule_cord`); with ``job.drop_outside_cord`` drop those outside, their soft-map region zeroed too, so
    the mask is still the soft map >= threshold. Returns the prediction to publish and the sidecar's
    ``outside_cord`` record: the cord's source, the margin (mm), the rule, whether they were dropped and the
    lesions outside (id in the model's mask, volume mm3, distance to the cord mm; null when no cord is known).
    ``cord_source`` names the prediction's cord: "model", or "cord_model" (``--roi auto``'s cord model)."""
    cord, source = _rule_cord(job, prediction, image, cord_source)
    margin = job.outside_cord_margin_mm
    record: dict[str, Any] = {"cord": source, "margin_mm": margin, "rule": RULE, "dropped": False, "lesions": None}
    if cord is None:
        return prediction, record
    mask = sitk.GetArrayFromImage(prediction.binary) != 0
    spacing = image.GetSpacing()[::-1]
    found = outside_cord_lesions(mask, cord, spacing, margin)
    record["lesions"] = found.records() if found else []
    if not found or not found.lesions:
        return prediction, record
    listed = ", ".join(f"{o.id} ({o.volume_mm3:.3g} mm3, {o.distance_mm:.1f} mm away)" for o in found.lesions)
    what = f"outside the cord (farther than {margin:g} mm from {CORD_SOURCES[source]})"
    if job.drop_outside_cord:
        kept, soft = drop_outside_cord(mask, sitk.GetArrayFromImage(prediction.soft), found, cord, spacing)
        prediction = replace(prediction, binary=like(kept.astype(np.uint8), prediction.binary),
                             soft=like(soft, prediction.soft))
        record["dropped"] = True
        warnings.append(f"dropped {len(found.lesions)} lesion(s) {what}: {listed}")
    else:
        warnings.append(f"{len(found.lesions)} lesion(s) {what}, kept and flagged: {listed} (to drop them: "
                        "--drop-outside-cord, or 'Drop lesions outside the cord' in Slicer)")
    return prediction, record


def _rule_cord(job: Job, prediction: Prediction, image: sitk.Image, cord_source: str = "model"
               ) -> tuple[np.ndarray | None, str | None]:
    """The cord the outside-cord rule measures from, on the input's grid, and where it came from: the user's cord
    mask (``roi_mask``: a file, or the panel's cord segment), else the model's own cord output; (None, None) when
    neither holds a voxel. A mask on another grid is resampled (nearest neighbour; the ROI check warned already)."""
    if job.roi_mask:
        mask = resample_to_grid(read_image(job.roi_mask), image, job.roi_mask, "the image", allow=True)
        cord = sitk.GetArrayFromImage(mask) != 0
        if cord.any():
            return cord, "roi_mask"
    if prediction.cord is not None:
        cord = sitk.GetArrayFromImage(prediction.cord) != 0
        if cord.any():
            return cord, cord_source
    return None, None


def _case_roi(job: Job, info: dict[str, Any], model: LoadedModel, image: sitk.Image, warnings: list[str],
              cord: sitk.Image | None = None) -> Box | None:
    """The job's ROI (:func:`.roi.case_roi`), from ``cord`` (``--roi auto``'s) when given; warnings when a cord mask
    seems to be an image or from another scan (:mod:`..plausibility`), or when a crop-trained lesion model gets no
    ROI (a cord-only one finds its crop itself)."""
    box, mask = job.roi_box, cord if cord is not None else read_image(job.roi_mask) if job.roi_mask else None
    if mask is not None and cord is None:
        found = roi_mask_fit(mask, image) + [looks_like_image(sitk.GetArrayViewFromImage(mask), "a cord mask")]
        warnings += [f"{Path(job.roi_mask).name} {text}" for text in found if text]
    roi = case_roi(mask=mask,
                   box=box_from_corners(box.ras_min_mm, box.ras_max_mm, "ROI box") if box else None,
                   margin_mm=job.roi_margin_mm, model_margins_mm=info.get("crop_margins_mm"),
                   source="the automatic cord" if cord is not None else str(job.roi_mask))
    if roi is None and info.get("crop") and model.task != "cord":
        warnings.append(f"model {model.name} was trained on images cropped around the cord "
                        f"({info['crop']}); give a cord mask (--roi-mask), an ROI, or --roi auto")
    return roi


def _read_case(model: LoadedModel, inputs: list[Path | None], job: Job, info: dict[str, Any]
               ) -> tuple[list[sitk.Image | None], tuple[str | None, str], list[str]]:
    """Read and check the inputs (a DICOM folder: the job's series); resolve the job's contrast hint (also from a
    DICOM series description); warn about contrasts the model was not trained on and apply the PSIR sign inversion
    the model expects. Returns (images, (contrast, its source), warnings)."""
    images = [None if p is None else read_image(p, job.series_uids) for p in inputs]
    first = next(p for p in inputs if p is not None)  # the contrast hint is the first sequence's
    description = choose_series(first, job.series_uids).description if is_dicom_folder(first) else None
    contrast, contrast_source = resolve_contrast(job.contrast, first, description)
    conflict = contrast_conflict(contrast, contrast_evidence(first, description))
    warnings: list[str] = [f"{first.name}: {conflict}"] if conflict else []
    trained_on = info.get("contrasts")
    if contrast and trained_on and contrast not in trained_on:
        warnings.append(f"model {model.name} was not trained on {contrast} (trained on {', '.join(trained_on)}); "
                        "check the result carefully")
    if contrast == "PSIR" and info.get("invert_psir") and images[0] is not None:
        # Some models were trained on sign-inverted PSIR (SCT multiplied PSIR by -1 for them); only those get it.
        images = [sitk.Cast(images[0], sitk.sitkFloat32) * -1.0] + images[1:]
        warnings.append("PSIR intensities multiplied by -1, as this model expects")
    return images, (contrast, contrast_source), warnings


def _sidecar(model: LoadedModel, job: Job, info: dict[str, Any], inputs: list[Path | None],
             contrast: tuple[str | None, str], roi: Box | None, warnings: list[str], result_set: ResultSet,
             timings: dict[str, float]) -> dict[str, Any]:
    """The ``<stem>_lesion_seg.json`` record: what ran, on what, how, and how long it took (s)."""
    return {
        "model": {"name": model.name, "folder": str(model.folder), "trainer": model.trainer_name,
                  **{k: v for k, v in info.items() if k != "contrasts"}},
        "folds": model.folds,
        "threshold": job.threshold,
        "settings": result_settings(job),
        "ensemble": {"rule": job.ensemble, "definition": ENSEMBLE_DEFINITIONS[job.ensemble]},
        "task": model.task,
        "soft_map": f"mean {'cord' if model.task == 'cord' else 'lesion'} probability over folds (float32, 0..1)",
        **({"cord_rule": f"cord = mean cord probability >= {CORD_THRESHOLD:g}, its largest connected component "
                         "(face connectivity), as sct_deepseg spinalcord"} if model.task == "cord" else {}),
        "test_time_augmentation": model.tta,
        "device": {"name": model.device.name, "reason": model.device.reason},
        "orientation": {"model_sct": model.orientation_sct, "model_axcodes": model.orientation_axcodes,
                        "source": model.orientation_source},
        "roi": roi.as_dict() if roi else None,
        "contrast": {"hint": job.contrast, "used": contrast[0], "source": contrast[1]},
        "warnings": warnings,
        "outputs": {role: str(result_set.roles[role]) for role in result_set.staged},
        WRITTEN_SHA256: result_set.sha256(),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "Sources": [{**_source(p, job.series_uids), "channel": channel}
                    for p, channel in zip(inputs, model.channel_names) if p is not None],
        "GeneratedBy": [{"Name": "SpinalLesionSeg", "Version": __version__, "CodeURL": CODE_URL,
                         "Description": f"{'spinal cord' if model.task == 'cord' else 'MS lesion'} segmentation "
                                        f"with nnU-Net model {model.name}"}],
    }


def _source(path: Path, series_uids: Sequence[str]) -> dict[str, Any]:
    """A ``Sources`` entry: the input's path and sha256 (a DICOM series: over its files, with its UIDs)."""
    entry: dict[str, Any] = {"path": str(path), "sha256": input_digest(path, series_uids)}
    if is_dicom_folder(path):
        entry["dicom"] = check_geometry(choose_series(path, series_uids)).record()
    return entry


def _stage_dicom(result_set: ResultSet, job: Job, source: Path, image: sitk.Image, prediction: Any,
                 model: LoadedModel, info: dict[str, Any]) -> dict[str, str]:
    """Stage the DICOM outputs (:func:`..dicom.export.stage_dicom`; highdicom loads only here)."""
    from ..dicom.export import stage_dicom

    return stage_dicom(result_set, source, job.series_uids, image=image, lesion=prediction.binary, soft=prediction.soft,
                       cord=prediction.cord, model=model.name, model_version=str(info.get("release") or ""),
                       uid_root=job.uid_root)
