"""Region-based (cord + lesion) and multi-channel models, and ``spinal-lesion-seg predict`` on the real MRI.

The variant models are real nnU-Net folders made here from the demo model's plans, with random weights: the tests
check the plumbing (which output channel is the lesion, the cord output, channel resampling, geometry, sidecar),
not segmentation quality.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import MODULE_DIR
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.image_io import read_image
from SpinalLesionSegLib.inference.predictor import LoadedModel

DEMO = MODULE_DIR / "Resources" / "Models" / "demo"


def make_model(folder: Path, *, labels: dict, channels: list[str], regions_class_order: list[int] | None = None,
               folds: tuple[int, ...] = (0, 1)) -> Path:
    """An nnU-Net results folder with the demo's plans (small network) and random weights."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    plans = json.loads((DEMO / "plans.json").read_text())
    configuration = plans["configurations"]["3d_fullres"]
    configuration["normalization_schemes"] = ["ZScoreNormalization"] * len(channels)
    configuration["use_mask_for_norm"] = [False] * len(channels)
    properties = plans["foreground_intensity_properties_per_channel"]["0"]
    plans["foreground_intensity_properties_per_channel"] = {str(i): properties for i in range(len(channels))}
    dataset = json.loads((DEMO / "dataset.json").read_text())
    dataset.update(labels=labels, channel_names={str(i): name for i, name in enumerate(channels)})
    if regions_class_order:
        dataset["regions_class_order"] = regions_class_order
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(dataset))
    arch = plans["configurations"]["3d_fullres"]["architecture"]
    outputs = len(regions_class_order) if regions_class_order else len(labels)
    for fold in folds:
        torch.manual_seed(fold)
        network = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"],
                                         arch["_kw_requires_import"], len(channels), outputs,
                                         deep_supervision=False)
        (folder / f"fold_{fold}").mkdir()
        torch.save({"network_weights": network.state_dict(), "trainer_name": "nnUNetTrainer",
                    "init_args": {"configuration": "3d_fullres"}}, folder / f"fold_{fold}" / "checkpoint_final.pth")
    return folder


def test_region_based_model_gives_lesion_and_cord(tmp_path: Path, t2_path: Path) -> None:
    folder = make_model(tmp_path / "regions", labels={"background": 0, "sc": [1, 2], "lesion": 2},
                        channels=["T2w"], regions_class_order=[1, 2])
    model = LoadedModel(folder, device="cpu")
    assert model.region_based
    regions = [tuple(np.atleast_1d(r)) for r in model.label_manager.foreground_regions]
    assert regions[model.lesion_channel] == (2,) and regions[model.cord_channel] == (1, 2)
    image = read_image(t2_path)
    prediction = model.predict(image)
    assert prediction.cord is not None
    for output in (prediction.soft, prediction.binary, prediction.cord):
        assert output.GetSize() == image.GetSize() and output.GetDirection() == image.GetDirection()
    soft = sitk.GetArrayFromImage(prediction.soft)
    assert 0.0 <= soft.min() and soft.max() <= 1.0


def test_multi_channel_model_resamples_later_channels_onto_the_first(tmp_path: Path, t2_path: Path) -> None:
    folder = make_model(tmp_path / "two", labels={"background": 0, "lesion": 1}, channels=["T2w", "STIR"])
    model = LoadedModel(folder, device="cpu")
    first = read_image(t2_path)
    second = sitk.Resample(first, [30, 28, 26], sitk.Transform(), sitk.sitkLinear, first.GetOrigin(),
                           [2.0, 2.0, 2.0], first.GetDirection())  # same anatomy, another grid
    prediction = model.predict([first, second])
    assert prediction.soft.GetSize() == first.GetSize()
    assert prediction.soft.GetOrigin() == first.GetOrigin()
    with pytest.raises(InputError, match="takes 2 input"):
        model.predict(first)


def _predict_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "SpinalLesionSegLib", "predict", *args],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("name, options", [("t2", []), ("t2_ms", ["--folds", "0", "--tile-step", "1"])])
def test_predict_command_on_real_mri(tmp_path: Path, name: str, options: list[str], t2_path: Path,
                                     t2_ms_path: Path) -> None:
    """Both real images through the command, their outputs on the input's grid with a complete sidecar. t2_ms
    (252 tiles per fold at the default step) runs one fold at step 1, so the slow part stays short; the t2 case
    runs the defaults."""
    source = {"t2": t2_path, "t2_ms": t2_ms_path}[name]
    result = _predict_cli(str(source), "-o", str(tmp_path), "--model", "demo", "--device", "cpu", *options)
    assert result.returncode == 0, result.stderr
    image = read_image(source)
    for suffix, pixel in (("_lesion_seg.nii.gz", sitk.sitkUInt8), ("_lesion_soft.nii.gz", sitk.sitkFloat32)):
        output = sitk.ReadImage(str(tmp_path / f"t2{suffix}"))
        assert output.GetPixelID() == pixel
        assert output.GetSize() == image.GetSize()
        np.testing.assert_allclose(output.GetOrigin(), image.GetOrigin(), atol=1e-5)
        np.testing.assert_allclose(output.GetSpacing(), image.GetSpacing(), atol=1e-6)
        np.testing.assert_allclose(output.GetDirection(), image.GetDirection(), atol=1e-6)
    sidecar = json.loads((tmp_path / "t2_lesion_seg.json").read_text())
    for key in ("model", "folds", "threshold", "ensemble", "device", "orientation", "roi", "contrast",
                "timings_s", "GeneratedBy", "Sources"):
        assert key in sidecar, key
    assert sidecar["model"]["name"] == "demo" and sidecar["model"]["checksum_verified"] is True
    assert sidecar["model"]["release"] == "bundled" and len(sidecar["model"]["fingerprint"]) == 64
    assert sidecar["folds"] == ([0] if options else [0, 1])
    assert sidecar["settings"].get("tile_step", 0.5) == (1.0 if options else 0.5)
    assert sidecar["orientation"] == {"model_sct": "RPI", "model_axcodes": "LAS", "source": "dataset.json"}
    assert sidecar["Sources"][0]["sha256"].startswith({"t2": "15cde5cdc5e5", "t2_ms": "5b25b71646e3"}[name])
    assert sidecar["GeneratedBy"][0]["Name"] == "SpinalLesionSeg"


def test_contrast_hint_from_bids_name_and_warning(tmp_path: Path, t2_path: Path) -> None:
    bids = tmp_path / "sub-01_T1w.nii.gz"
    bids.write_bytes(t2_path.read_bytes())
    result = _predict_cli(str(bids), "-o", str(tmp_path / "out"), "--device", "cpu", "--folds", "0")
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((tmp_path / "out" / "sub-01_T1w_lesion_seg.json").read_text())
    assert sidecar["contrast"] == {"hint": "auto", "used": "T1w", "source": "BIDS suffix of the file name"}
    assert "not trained on T1w" in result.stderr


def test_predict_command_bad_input_is_one_line(tmp_path: Path) -> None:
    result = _predict_cli(str(tmp_path / "missing.nii.gz"), "-o", str(tmp_path / "out"), "--device", "cpu")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{tmp_path / 'missing.nii.gz'}: file not found" in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_crop_trained_model_takes_its_margins_from_crop_metadata(tmp_path: Path) -> None:
    """With a cord mask, a crop-trained model's ROI is the cord's box grown by its crop_metadata.json pads (mm)."""
    import shutil

    from SpinalLesionSegLib.image_io import write_image
    from SpinalLesionSegLib.inference.roi import box_from_mask
    from SpinalLesionSegLib.phantom import make_phantom

    folder = tmp_path / "cropped"
    shutil.copytree(DEMO, folder)
    pads = {"pad_left": 3.0, "pad_right": 4.0, "pad_posterior": 5.0, "pad_anterior": 6.0, "pad_inferior": 7.0,
            "pad_superior": 8.0}
    (folder / "crop_metadata.json").write_text(json.dumps(pads))
    phantom = make_phantom(4, contrast="T2w", spacing=(1.0, 1.0, 1.0))
    image = write_image(phantom.image, tmp_path / "p_T2w.nii.gz")
    cord = write_image(phantom.cord, tmp_path / "p_cord.nii.gz")
    result = _predict_cli(str(image), "-o", str(tmp_path / "out"), "--model", str(folder), "--device", "cpu",
                          "--folds", "0", "--roi-mask", str(cord), "--roi-margin", "1")
    assert result.returncode == 0, result.stderr
    roi = json.loads((tmp_path / "out" / "p_T2w_lesion_seg.json").read_text())["roi"]
    tight = box_from_mask(phantom.cord, 0.0)
    np.testing.assert_allclose(np.subtract(tight.ras_min, roi["ras_min_mm"]), [3.0, 5.0, 7.0], atol=1e-4)  # NIfTI geometry is float32
    np.testing.assert_allclose(np.subtract(roi["ras_max_mm"], tight.ras_max), [4.0, 6.0, 8.0], atol=1e-4)
