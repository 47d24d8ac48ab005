"""Run an nnU-Net v2 lesion model on one image, faithfully and on the input's own grid.

What happens, in order (each step mirrors how the Spinal Cord Toolbox runs these models, see docs/models.md):

1. the image is reoriented (voxel permutation/flips only, :func:`..geometry.reorient`) to the model's training
   orientation: ``dataset.json["image_orientation"]``, else the manifest's, else SCT's default LPI;
2. preprocessed by nnunetv2's own preprocessor (cropping to non-zero, resampling, normalisation from the plans),
   on the whole image so that intensity normalisation does not depend on a region of interest -- except for
   models trained on crops around the cord (manifest crop requirement), which get the ROI crop itself, as in SCT;
3. predicted fold by fold by nnunetv2's own sliding-window predictor (tile step 0.5, Gaussian weighting,
   test-time mirroring off unless asked for), on the whole image or only on the tiles :mod:`.tiles` picks for the
   region of interest (:mod:`.roi`; by default the whole-image tiles that touch it, so values inside it are exactly
   the whole-image ones), each fold's logits turned into probabilities by nnunetv2's own export code;
4. ensembled: soft map = mean lesion probability over folds; binary = soft >= threshold, or SCT's majority vote of
   per-fold argmax masks; a cord output (region-based and cord-only models) = mean cord probability >= 0.5;
5. set to zero outside the region of interest, and reoriented back, so every output has exactly the
   input's origin, spacing and direction.

torch and nnunetv2 are imported here, so this module is only imported by the worker and the command line.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..defaults import DEVICE, ENSEMBLE, ENSEMBLE_RULES, THRESHOLD, TILE_STEP
from ..errors import InputError
from ..geometry import axcodes, reorient
from ..image_io import same_grid
from ..models.resolve import ResolvedModel
from .channels import model_channels
from .checkpoint import load_fold_checkpoints
from .compiled import NetworkCompiler
from .fold_weights import FoldWeights, file_stamps
from .device import DeviceChoice, select_device
from .lean_memory import convolution_weight_names, release_consumed_skips
from .network import build_network, load_weights
from .prediction import Prediction, Progress
from .precision import FP32, PrecisionChoice, autocast, choose_precision, compute_dtype
from .predictor_steps import paste as _paste, quiet as _quiet, timed as _timed, without_environment
from .roi import Box, index_block, roi_mask
from .tiles import EXACT, check_roi_tiles, choose_tiles, roi_window

#: Logit magnitude that makes a voxel background with certainty (softmax/sigmoid of +-30 is 1 - 1e-13).
BACKGROUND_LOGIT = 30.0
#: Mean cord probability over folds from which a voxel is cord (nnU-Net's argmax for a two-class cord model).
CORD_THRESHOLD = 0.5

class LoadedModel:
    """An nnU-Net model ready to predict: network built from the plans, fold weights at hand (:mod:`.fold_weights`),
    device chosen.

    Keeping this object alive (the worker's ``--serve`` mode) skips model loading for later images.
    """

    def __init__(self, model: ResolvedModel | str | Path, *, folds: Sequence[int] | None = None,
                 device: str = DEVICE, tta: bool = False) -> None:
        """Load a model: a :class:`.models.ResolvedModel`, or a registered name or nnU-Net trainer folder, which
        is resolved (and, when registered, checksum-verified) first. ``folds`` defaults to every fold shipped."""
        started = time.perf_counter()
        import torch

        from ..models.resolve import resolve_model

        self.resolved = model if isinstance(model, ResolvedModel) else resolve_model(model)
        self.folder = self.resolved.folder
        self.name = self.resolved.name
        self.dataset_json = dict(self.resolved.dataset)
        self.checkpoints = self._select_checkpoints(folds)
        self.device: DeviceChoice = select_device(device)
        self.tta = tta
        self.precision = PrecisionChoice(FP32, "default")  # set by each predict()
        self.roi_tiles, self.tile_choice = EXACT, None  # set by each predict(), as are the two below
        self.compile_requested, self.compile_choice = False, None
        self.orientation_sct = self.resolved.orientation
        self.orientation_source = self.resolved.orientation_source
        self.orientation_axcodes = self.resolved.axcodes
        #: Crop-trained models (lesion_ms_cropped, lesion_ms_mp2rage) see the ROI crop itself, as SCT gives it them.
        self.crop_input = bool(self.resolved.manifest and self.resolved.manifest.crop) or bool(
            self.resolved.crop_metadata)

        resident = self.device.device.type != "cpu"  # every fold in memory on a GPU, one at a time on the CPU
        paths, stamps = list(self.checkpoints.values()), file_stamps(self.checkpoints)
        loaded = load_fold_checkpoints(paths if resident else paths[:1])
        self.trainer_name = loaded.trainer_name
        self.plans_manager, self.configuration_manager, self.label_manager = self._plans(loaded.configuration)
        self.channel_names = model_channels(self.dataset_json)
        network = self._build_network()
        # Fold weights in the network's dtypes (a checkpoint may hold fp16), taken as they are (assign): no copies.
        dtypes, device = {name: tensor.dtype for name, tensor in network.state_dict().items()}, self.device.device
        self.fold_parameters = FoldWeights(  # the conversion refers to no self: a dropped model is freed at once
            self.checkpoints, stamps, loaded.parameters[0], loaded.parameters[1:],
            lambda name, tensor: tensor.to(device, dtypes.get(name, tensor.dtype)), resident,
            convolution_weight_names(network))
        load_weights(network, self.fold_parameters[self.folds[0]], paths[0])
        release_consumed_skips(network)
        self.compiler = NetworkCompiler(network)  # the network itself, and its compiled form once asked for
        self.lesion_channel, self.cord_channel = self._output_channels()
        self.predictor = self._make_predictor(network, loaded.mirroring_axes)
        del loaded
        self._torch = torch
        self.load_seconds = time.perf_counter() - started

    @property
    def network(self) -> Any:
        """The plain network, the one fold weights are loaded into (the predictor may hold its compiled form)."""
        return self.compiler.eager

    @property
    def region_based(self) -> bool:
        return bool(self.label_manager.has_regions)

    @property
    def task(self) -> str:
        """"lesion", or "cord" for a cord-only model (its outputs are the cord and the cord probability)."""
        return self.resolved.task

    @property
    def folds(self) -> list[int]:
        return list(self.checkpoints)

    def files_changed(self) -> bool:
        """Whether a checkpoint file changed since loading (a worker then loads the model again)."""
        return self.fold_parameters.changed()

    def _select_checkpoints(self, folds: Sequence[int] | None) -> dict[int, Path]:
        """The checkpoint of each requested fold (every shipped fold when ``folds`` is None or empty)."""
        if folds is not None:
            missing = [f for f in folds if f not in self.resolved.checkpoints]
            if missing:
                raise InputError(self.folder, f"fold(s) {missing} requested but the model has folds "
                                              f"{list(self.resolved.folds)}")
        return {f: self.resolved.checkpoints[f] for f in (folds or self.resolved.folds)}

    def _plans(self, configuration_name: str | None) -> tuple[Any, Any, Any]:
        """nnunetv2's plans, configuration (the one the checkpoints were trained with) and label managers."""
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        plans_manager = PlansManager(dict(self.resolved.plans))
        try:
            configuration_manager = plans_manager.get_configuration(configuration_name)
        except (KeyError, RuntimeError):
            raise InputError(self.folder / "plans.json", f"has no configuration {configuration_name!r}") from None
        return plans_manager, configuration_manager, plans_manager.get_label_manager(self.dataset_json)

    def _build_network(self) -> Any:
        """The plans' architecture (its own initial weights, replaced by a fold's), on the CPU."""
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

        num_inputs = determine_num_input_channels(self.plans_manager, self.configuration_manager, self.dataset_json)
        return build_network(self.plans_manager, self.configuration_manager, num_inputs,
                             self.label_manager.num_segmentation_heads, self.folder / "plans.json")

    def _make_predictor(self, network: Any, mirroring_axes: Any) -> Any:
        """nnunetv2's own predictor around ``network`` on the chosen device, with SCT's settings: tile step 0.5,
        Gaussian weighting, test-time mirroring only when asked for. nnunetv2 would compile the network when
        ``nnUNet_compile`` is set (a training setting): minutes per image shape on a CPU, and a compiled network
        renames its weights, which fold switching needs; so it is held off here."""
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        with _quiet(), without_environment("nnUNet_compile"):
            predictor = nnUNetPredictor(
                tile_step_size=TILE_STEP, use_gaussian=True, use_mirroring=self.tta,
                perform_everything_on_device=self.device.device.type == "cuda",
                device=self.device.device, verbose=False, allow_tqdm=False,
            )
            predictor.manual_initialization(
                network.to(self.device.device), self.plans_manager, self.configuration_manager, None,
                self.dataset_json, self.trainer_name, mirroring_axes,
            )
        return predictor

    def _output_channels(self) -> tuple[int | None, int | None]:
        """Indices of the lesion (None for a cord-only model) and cord (None without one) channels in nnU-Net's
        probability output."""
        labels = self.dataset_json.get("labels", {})

        def channel(key: str | None) -> int | None:
            if key is None:
                return None
            if not self.region_based:
                return int(labels[key])
            regions = [tuple(np.atleast_1d(r).tolist()) for r in self.label_manager.foreground_regions]
            return regions.index(tuple(np.atleast_1d(labels[key]).tolist()))

        return channel(self.resolved.lesion_label), channel(self.resolved.cord_label)

    def predict(self, images: sitk.Image | Sequence[sitk.Image], *, threshold: float = THRESHOLD,
                ensemble: str = ENSEMBLE, roi: Box | None = None, progress: Progress | None = None,
                precision: str = FP32, tile_step: float = TILE_STEP, roi_tiles: str = EXACT,
                compile_network: bool = False) -> Prediction:
        """Segment lesions (a cord-only model: the cord) in ``images`` (one per model channel; channels after the
        first are resampled onto the first one's grid). ``roi`` restricts inference to a box; outside it all is 0.
        ``precision``: the network's arithmetic (:data:`.precision.PRECISIONS`); ``tile_step``: the sliding window's
        step, a fraction of the patch (nnunetv2 reads it from its predictor when it lays out the tiles);
        ``roi_tiles``: which tiles run inside an ROI (:mod:`.tiles`); ``compile_network``: torch.compile
        (:mod:`.compiled`)."""
        images = self._check_inputs(images, threshold, ensemble)
        self.precision = choose_precision(precision, self.device.device, self._torch)
        self.roi_tiles, self.tile_choice = check_roi_tiles(roi_tiles), None
        self.compile_requested, self.compile_choice = compile_network, None
        self.predictor.tile_step_size = tile_step
        report = progress or (lambda stage, fraction: None)
        timings: dict[str, float] = {}
        with _timed(timings, "reorient_s"):
            reference = images[0]
            channels = [reference] + [sitk.Resample(img, reference, sitk.Transform(), sitk.sitkLinear, 0.0,
                                                    sitk.sitkFloat32) for img in images[1:]]
            report("reorient", 0.0)
            full, crop, model_space = self._to_model_space(channels, roi)
            data = np.stack([sitk.GetArrayFromImage(img) for img in model_space])  # (c, z, y, x) as SimpleITKIO
            spacing_zyx = list(model_space[0].GetSpacing())[::-1]

        report("preprocess", 0.05)
        with _timed(timings, "preprocess_s"):
            tensor, properties = self._preprocess(data, spacing_zyx)
            window = (roi_window(index_block(model_space[0], roi), properties, tensor.shape[1:],
                                 self.plans_manager.transpose_forward) if roi is not None and crop is None else None)

        with _timed(timings, "predict_s"):
            sums = self._predict_folds(tensor, window, properties, data.shape[1:], report)

        report("export", 0.95)
        with _timed(timings, "export_s"):
            outputs = self._ensemble(sums, threshold=threshold, ensemble=ensemble)
            on_input = self._export(outputs, full, reference, crop, roi)
        report("done", 1.0)
        return Prediction(soft=on_input.get("soft"), binary=on_input.get("binary"), cord=on_input.get("cord"),
                          roi=roi, timings_s=timings, cord_soft=on_input.get("cord_soft"), precision=self.precision,
                          tiles=self.tile_choice, compiled=self.compile_choice)

    def _check_inputs(self, images: sitk.Image | Sequence[sitk.Image], threshold: float,
                      ensemble: str) -> list[sitk.Image]:
        """``images`` as a list, once :meth:`predict`'s arguments are checked (InputError for a bad one)."""
        if not 0.0 < threshold < 1.0:
            raise InputError(None, f"threshold must be between 0 and 1 (exclusive), got {threshold}")
        if ensemble not in ENSEMBLE_RULES:
            raise InputError(None, f"unknown ensemble rule {ensemble!r}; choose one of {', '.join(ENSEMBLE_RULES)}")
        images = [images] if isinstance(images, sitk.Image) else list(images)
        if len(images) != len(self.channel_names):
            raise InputError(None, f"model {self.name} takes {len(self.channel_names)} input(s) "
                                   f"({', '.join(self.channel_names)}), got {len(images)}")
        return images

    def _to_model_space(self, channels: list[sitk.Image], roi: Box | None
                        ) -> tuple[sitk.Image, tuple[list[int], list[int]] | None, list[sitk.Image]]:
        """The first channel reoriented to the model's orientation (the full model-space grid), the ROI's voxel
        block ``(start_ijk, size_ijk)`` on it for crop-trained models (else None), and the float32 model-space
        channels the network sees: reoriented, and cropped to that block when there is one."""
        model_space = [reorient(sitk.Cast(img, sitk.sitkFloat32), self.orientation_axcodes) for img in channels]
        full = model_space[0]
        crop = index_block(full, roi) if roi is not None and self.crop_input else None
        if crop is not None:
            model_space = [sitk.RegionOfInterest(img, crop[1], crop[0]) for img in model_space]
        return full, crop, model_space

    def _preprocess(self, data: np.ndarray, spacing_zyx: list[float]) -> tuple[Any, dict[str, Any]]:
        """nnunetv2's own preprocessing of a ``(c, z, y, x)`` array with spacing in mm: the network's input tensor and
        the properties its export needs to map logits back onto ``data``'s grid. The whole image is preprocessed
        (cheap), so that intensity normalisation sees the same voxels with or without an ROI; only the sliding
        window is restricted to the ROI."""
        preprocessor = self.configuration_manager.preprocessor_class(verbose=False)
        with _quiet():
            preprocessed, _, properties = preprocessor.run_case_npy(
                data, None, {"spacing": spacing_zyx}, self.plans_manager, self.configuration_manager,
                self.dataset_json)
        return self._torch.from_numpy(preprocessed), properties

    def _sliding_window(self, tensor: Any, window: tuple[slice, ...] | None) -> Any:
        """nnunetv2's sliding-window logits on the whole tensor, or from the tiles :mod:`.tiles` picks for the ROI
        window (the whole-image tiles that touch it: values inside it exactly the whole-image ones; or tiles
        centred on it), in the chosen precision (:mod:`.precision`; nnunetv2's own whole-image call would autocast
        to fp16 on CUDA). Voxels no selected tile covers are set to background with certainty (the outputs are
        zeroed outside the ROI anyway)."""
        from acvl_utils.cropping_and_padding.padding import pad_nd_image

        predictor = self.predictor
        data, revert = pad_nd_image(tensor, self.configuration_manager.patch_size, "constant", {"value": 0}, True,
                                    None)
        if window is not None:
            window = [slice(w.start + r.start, w.stop + r.start) for w, r in zip(window, revert[1:])]
        slicers, self.tile_choice = choose_tiles(
            self.roi_tiles, predictor._internal_get_sliding_window_slicers(data.shape[1:]), window,
            self.configuration_manager.patch_size, data.shape[1:], predictor.tile_step_size)
        on_device = predictor.perform_everything_on_device
        with autocast(self.precision, self.device.device, self._torch):
            try:
                logits = predictor._internal_predict_sliding_window_return_logits(data, slicers, on_device)
            except self._torch.cuda.OutOfMemoryError:
                if not on_device:
                    raise
                self._torch.cuda.empty_cache()  # sums on the CPU instead, as nnunetv2 falls back
                logits = predictor._internal_predict_sliding_window_return_logits(data, slicers, False)
        logits = logits[(slice(None), *revert[1:])].to("cpu")
        if window is None:
            return logits
        uncovered = self._torch.isnan(logits[0])  # 0 / 0 where no tile was summed
        logits[:, uncovered] = -BACKGROUND_LOGIT
        if not self.region_based:
            logits[0, uncovered] = BACKGROUND_LOGIT
        return logits

    def _predict_folds(self, tensor: Any, window: tuple[slice, ...] | None, properties: dict[str, Any],
                       shape: tuple[int, ...], report: Progress) -> dict[str, np.ndarray]:
        """Run every fold; sums over folds, on the model-space grid of ``shape``, of the lesion probability
        ("lesion") and of the per-fold lesion masks ("votes") for lesion models, and of the cord probability
        ("cord") for models with a cord channel."""
        channels = {k: c for k, c in (("lesion", self.lesion_channel), ("cord", self.cord_channel)) if c is not None}
        sums = {key: np.zeros(shape, np.float64) for key in channels}
        if "lesion" in channels:
            sums["votes"] = np.zeros(shape, np.float32)
        n_folds = len(self.fold_parameters)
        for index, fold in enumerate(self.fold_parameters):
            report(f"predict fold {fold}", 0.1 + 0.85 * index / n_folds)
            segmentation, probabilities = self._predict_fold(fold, tensor, window, properties, report)
            for key, channel in channels.items():
                sums[key] += probabilities[channel]
            if "votes" in sums:
                sums["votes"] += self._lesion_mask(segmentation, probabilities)
        return sums

    def _predict_fold(self, fold: int, tensor: Any, window: tuple[slice, ...] | None,
                      properties: dict[str, Any], report: Progress) -> tuple[np.ndarray, np.ndarray]:
        """One fold's segmentation and per-channel probabilities on the model-space grid, as nnunetv2's own export
        code turns its logits into them (undoing resampling and the non-zero crop)."""
        from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

        lowered = compute_dtype(self.precision, self._torch)  # conv weights held as autocast uses them (CPU)
        load_weights(self.network, self.fold_parameters.weights(fold, lowered), self.checkpoints[fold])
        self._choose_network(tensor.shape[0], report)
        with _quiet(), self._torch.inference_mode():
            logits = self._sliding_window(tensor, window)
            segmentation, probabilities = convert_predicted_logits_to_segmentation_with_correct_shape(
                logits, self.plans_manager, self.configuration_manager, self.label_manager, properties,
                return_probabilities=True)
        return segmentation, np.asarray(probabilities)

    def _choose_network(self, channels: int, report: Progress) -> None:
        """The network this fold runs (:mod:`.compiled`): compiled when asked for (on the first fold, once per
        precision), else the network itself; the first fold's choice, with its compile time, is the prediction's."""
        if self.compile_requested and self.compiler.will_compile(self.precision.name):
            report("compile the network (once per model and precision)", 0.1)
        network, choice = self.compiler.network_for(
            self.compile_requested, self.precision.name,
            lambda: autocast(self.precision, self.device.device, self._torch),
            (channels, *self.configuration_manager.patch_size), self.device.device)
        self.predictor.network, self.compile_choice = network, self.compile_choice or choice

    def _ensemble(self, sums: dict[str, np.ndarray], *, threshold: float, ensemble: str) -> dict[str, np.ndarray]:
        """Fold sums to model-space outputs: for lesion models soft (float32 mean lesion probability) and binary
        (uint8, by the ensemble rule); for models with a cord channel cord (uint8, mean cord probability >=
        CORD_THRESHOLD) and cord_soft (float32 mean cord probability)."""
        n_folds = len(self.fold_parameters)
        outputs = {}
        if "lesion" in sums:
            soft = np.clip(sums["lesion"] / n_folds, 0.0, 1.0).astype(np.float32)
            binary = (sums["votes"] / n_folds > 0.5) if ensemble == "majority" else (soft >= threshold)
            outputs.update(soft=soft, binary=binary.astype(np.uint8))
        if "cord" in sums:
            cord_soft = np.clip(sums["cord"] / n_folds, 0.0, 1.0).astype(np.float32)
            outputs.update(cord=(cord_soft >= CORD_THRESHOLD).astype(np.uint8), cord_soft=cord_soft)
        return outputs

    def _export(self, outputs: dict[str, np.ndarray], full: sitk.Image, reference: sitk.Image,
                crop: tuple[list[int], list[int]] | None, roi: Box | None) -> dict[str, sitk.Image]:
        """Model-space outputs zeroed outside the ROI (a crop's outputs pasted into zeros on the ``full``
        model-space grid) and put back onto the input's grid, ``reference``."""
        if crop is not None:
            outputs = {key: _paste(array, crop, full) for key, array in outputs.items()}
        elif roi is not None:
            inside = roi_mask(full, roi)
            outputs = {key: array * inside.astype(array.dtype) for key, array in outputs.items()}
        return {key: self._back_to_input(array, full, reference) for key, array in outputs.items()}

    def _lesion_mask(self, segmentation: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        """One fold's binary lesion mask as nnU-Net would export it (argmax, or region thresholding)."""
        if self.region_based:
            return (probabilities[self.lesion_channel] > 0.5).astype(np.float32)
        return (np.asarray(segmentation) == self.lesion_channel).astype(np.float32)

    @staticmethod
    def _back_to_input(array: np.ndarray, model_space: sitk.Image, reference: sitk.Image) -> sitk.Image:
        """Wrap a model-space array on the model-space grid and reorient it back onto the input's grid."""
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(model_space)
        back = reorient(image, axcodes(reference))
        if not same_grid(back, reference):
            raise RuntimeError("internal error: reorientation did not restore the input grid")
        back.CopyInformation(reference)  # exact, bit for bit
        return back
