"""Inference fidelity and safety with the real nnunetv2 predictor and torch, on the bundled demo model.

* our soft map equals stock nnunetv2's (same settings, same orientation) and the binary maps are identical;
* the result does not depend on how the scan's voxels are stored (real t2 in four orientations);
* ROI prediction matches full-image prediction inside the ROI;
* crafted checkpoints and plans are refused; unknown trainer names load; unavailable devices are errors.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import MODULE_DIR
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.geometry import axcodes, reorient
from SpinalLesionSegLib.image_io import read_image, same_grid, write_image
from SpinalLesionSegLib.inference.predictor import LoadedModel
from SpinalLesionSegLib.inference.roi import box_from_mask, roi_mask
from SpinalLesionSegLib.phantom import make_phantom

DEMO = MODULE_DIR / "Resources" / "Models" / "demo"


@pytest.fixture(scope="module")
def demo() -> LoadedModel:
    return LoadedModel(DEMO, device="cpu")


def _array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def test_outputs_share_the_input_grid_exactly(demo: LoadedModel, t2_ms_path: Path) -> None:
    image = read_image(t2_ms_path)  # oblique, anisotropic, left-handed
    small = image[100:220, 60:200, :]  # a real-data block, to keep the test fast
    prediction = demo.predict(small)
    for output in (prediction.soft, prediction.binary):
        assert output.GetSize() == small.GetSize()
        assert output.GetOrigin() == small.GetOrigin()
        assert output.GetSpacing() == small.GetSpacing()
        assert output.GetDirection() == small.GetDirection()
    soft = _array(prediction.soft)
    assert soft.dtype == np.float32 and soft.min() >= 0.0 and soft.max() <= 1.0
    assert _array(prediction.binary).dtype == np.uint8
    assert np.array_equal(_array(prediction.binary), (soft >= 0.5).astype(np.uint8))


def test_soft_map_matches_stock_nnunetv2(demo: LoadedModel, tmp_path: Path) -> None:
    """Stock nnunetv2 (predict_from_files, one fold at a time, probabilities saved) on the same image in the model's
    orientation: the mean of its per-fold probabilities is our soft map, its per-fold masks give our vote."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    phantom = make_phantom(7, contrast="T2w")
    # Through a file first, so both sides see the same (float32-rounded) header geometry.
    image = read_image(write_image(phantom.image, tmp_path / "phantom.nii.gz"))
    model_space = reorient(sitk.Cast(image, sitk.sitkFloat32), demo.orientation_axcodes)
    source = write_image(model_space, tmp_path / "in" / "case_0000.nii.gz")

    stock_probabilities, stock_masks = [], []
    for fold in demo.folds:
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                    perform_everything_on_device=False, device=torch.device("cpu"),
                                    verbose=False, allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(DEMO), use_folds=(fold,))
        out = tmp_path / f"stock_fold{fold}"
        predictor.predict_from_files([[str(source)]], [str(out / "case")], save_probabilities=True,
                                     overwrite=True, num_processes_preprocessing=1,
                                     num_processes_segmentation_export=1)
        stock_probabilities.append(np.load(out / "case.npz")["probabilities"][demo.lesion_channel])
        # The exported label of a lesion: its label value (1 in a lesion-only model, 2 in a region model, where
        # the lesion region is exported last, over the cord's 1).
        lesion_value = demo.dataset_json["labels"][demo.resolved.lesion_label]
        stock_masks.append(_array(sitk.ReadImage(str(out / "case.nii.gz"))) == lesion_value)
    stock_soft = np.mean(stock_probabilities, axis=0)

    ours = demo.predict(image)
    ours_soft = _array(reorient(ours.soft, demo.orientation_axcodes))
    assert ours_soft.shape == stock_soft.shape
    assert np.abs(ours_soft - stock_soft).max() <= 1e-4
    assert np.array_equal(ours_soft >= 0.5, stock_soft >= 0.5)
    assert stock_soft.max() > 0.5, "the demo model should find lesions in a phantom"

    majority = demo.predict(image, ensemble="majority")
    stock_vote = np.mean(stock_masks, axis=0) > 0.5
    assert np.array_equal(_array(reorient(majority.binary, demo.orientation_axcodes)) > 0, stock_vote)


def test_same_result_whatever_the_voxel_orientation(demo: LoadedModel, t2_path: Path) -> None:
    image = read_image(t2_path)  # P, S, R
    reference = demo.predict(image)
    for code in ("RAS", "LPI", "SRA"):
        turned = reorient(image, code)
        assert axcodes(turned) == code
        prediction = demo.predict(turned)
        back_soft = reorient(prediction.soft, axcodes(image))
        back_binary = reorient(prediction.binary, axcodes(image))
        assert same_grid(back_soft, image)
        np.testing.assert_allclose(_array(back_soft), _array(reference.soft), atol=1e-5)
        assert np.array_equal(_array(back_binary), _array(reference.binary))


def test_roi_prediction_matches_full_image_inside_the_roi(demo: LoadedModel) -> None:
    dices = []
    for seed in (11, 12):
        phantom = make_phantom(seed, contrast="T2w")
        box = box_from_mask(phantom.cord, margin_mm=10.0)
        full = demo.predict(phantom.image)
        cropped = demo.predict(phantom.image, roi=box)
        inside = roi_mask(phantom.image, box)
        assert inside.sum() < inside.size, "the ROI should be smaller than the image"
        a, b = _array(full.binary)[inside] > 0, _array(cropped.binary)[inside] > 0
        dices.append(1.0 if not (a.any() or b.any()) else 2 * np.sum(a & b) / (a.sum() + b.sum()))
        assert not _array(cropped.soft)[~inside].any(), "everything outside the ROI must be 0"
        # The ROI runs the whole-image tiles that touch it, so inside it the soft map is the whole-image one.
        np.testing.assert_allclose(_array(cropped.soft)[inside], _array(full.soft)[inside], atol=1e-6)
    assert min(dices) >= 0.99


def _copy_demo(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(DEMO, folder)
    return folder


class _Payload:
    """Would create a file when unpickled, if the loader allowed it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_checkpoint_is_refused_and_never_runs(tmp_path: Path) -> None:
    folder = _copy_demo(tmp_path)
    marker = tmp_path / "pwned"
    checkpoint = folder / "fold_0" / "checkpoint_final.pth"
    weights = torch.load(checkpoint, weights_only=True)["network_weights"]
    torch.save({"network_weights": weights, "trainer_name": "nnUNetTrainer", "evil": _Payload(marker)}, checkpoint)
    with pytest.raises(InputError, match="refused") as info:
        LoadedModel(folder, device="cpu")
    assert str(checkpoint) in str(info.value)
    assert not marker.exists()
    # And an ordinary pickle that is not a checkpoint at all.
    checkpoint.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(InputError):
        LoadedModel(folder, device="cpu")
    assert not marker.exists()


def test_unknown_trainer_name_still_loads_from_plans(tmp_path: Path, demo: LoadedModel, t2_path: Path) -> None:
    folder = _copy_demo(tmp_path)
    for checkpoint in folder.glob("fold_*/checkpoint_final.pth"):
        content = torch.load(checkpoint, weights_only=True)
        content["trainer_name"] = "nnUNetTrainerDiceCELoss_noSmooth_4000epochs_fromScratch"
        torch.save(content, checkpoint)
    (folder / "trainer_class.py").write_text("raise SystemExit('model code must never run')\n")
    model = LoadedModel(folder, device="cpu")
    assert model.trainer_name.endswith("fromScratch")
    image = read_image(t2_path)
    assert np.array_equal(_array(model.predict(image).soft), _array(demo.predict(image).soft))


def test_plans_naming_arbitrary_code_are_refused(tmp_path: Path) -> None:
    import json

    folder = _copy_demo(tmp_path)
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = "os.system"
    (folder / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(InputError, match="refused"):
        LoadedModel(folder, device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_unavailable_device_is_an_error_not_a_fallback() -> None:
    with pytest.raises(InputError, match="cuda"):
        LoadedModel(DEMO, device="cuda")


def test_auto_device_says_what_it_chose(demo: LoadedModel) -> None:
    auto = LoadedModel(DEMO, device="auto")
    assert auto.device.reason.startswith("auto:")
    assert auto.device.name in {"cpu", "cuda", "mps"}


def test_bad_threshold_and_channel_count_are_clear_errors(demo: LoadedModel, t2_path: Path) -> None:
    image = read_image(t2_path)
    with pytest.raises(InputError, match="threshold"):
        demo.predict(image, threshold=1.5)
    with pytest.raises(InputError, match="takes 1 input"):
        demo.predict([image, image])


def test_crop_trained_models_see_the_roi_crop_itself(tmp_path: Path) -> None:
    """Models trained on crops around the cord (crop_metadata.json) are given the crop, as SCT gives it them:
    the result equals a prediction on the cropped image, pasted back, and is 0 outside."""
    import json

    from SpinalLesionSegLib.inference.roi import index_block

    folder = _copy_demo(tmp_path)
    pads = {f"pad_{side}": 10.0 for side in ("superior", "inferior", "left", "right", "anterior", "posterior")}
    (folder / "crop_metadata.json").write_text(json.dumps(pads))
    model = LoadedModel(folder, device="cpu")
    assert model.crop_input
    phantom = make_phantom(11, contrast="T2w", spacing=(1.0, 1.0, 1.0))
    box = box_from_mask(phantom.cord, margin_mm=5.0)
    prediction = model.predict(phantom.image, roi=box)

    model_space = reorient(sitk.Cast(phantom.image, sitk.sitkFloat32), model.orientation_axcodes)
    (i, j, k), (ni, nj, nk) = index_block(model_space, box)
    cropped = model.predict(sitk.RegionOfInterest(model_space, [ni, nj, nk], [i, j, k]))
    soft = _array(reorient(prediction.soft, model.orientation_axcodes))
    np.testing.assert_allclose(soft[k:k + nk, j:j + nj, i:i + ni], _array(cropped.soft), atol=1e-6)
    soft[k:k + nk, j:j + nj, i:i + ni] = 0
    assert not soft.any()
