"""The contrast-agnostic cord model in the registry, cord-only models, and "Crop to cord: automatic" (--roi auto).

The cord models here are real nnU-Net folders made from the bundled demo model (its weights, its cord region turned
into a cord-only label model: :func:`fake_models.cord_model_files`), run for real by nnunetv2 on the real T2w: the tests
check the registry, the two-stage plumbing and SCT's rules (largest component, sc-crop's padded box), not cord
quality. sc-crop's detector (YOLO weights from GitHub) cannot run here: its absence is tested for real, and the
one test of the detected-box wiring replaces ``sc_crop.detect`` by a stub returning a fixed box.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from fake_models import CROP_PADS, cord_model_files, lesion_model_files, write_tree, write_zip
from SpinalLesionSegLib.analysis.lesions import label_components
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.image_io import read_image
from SpinalLesionSegLib.inference import cord_stage
from SpinalLesionSegLib.inference.case import load_model, predict_case
from SpinalLesionSegLib.inference.protocol import Job, ProtocolError, RoiBox
from SpinalLesionSegLib.inference.roi import box_from_block, case_roi, index_block
from SpinalLesionSegLib.models import installer, registry, resolve
from SpinalLesionSegLib.models.manifests import CORD_MODEL, MANIFESTS

TRAINER = "nnUNetTrainer__nnUNetPlans__3d_fullres"


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own model cache, and no cord model stays loaded from another test."""
    monkeypatch.setenv(registry.HOME_ENV, str(tmp_path / "home"))
    cord_stage._LOADED.clear()
    return tmp_path / "home" / "models"


@pytest.fixture(scope="module")
def demo():
    return load_model("demo", device="cpu")


@pytest.fixture(scope="module")
def lesion_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lesion model without a cord output (as lesion_ms): the demo's lesion region alone."""
    return write_tree(tmp_path_factory.mktemp("lesion_only"), lesion_model_files())


@pytest.fixture(scope="module")
def lesion_only(lesion_folder: Path):
    return load_model(str(lesion_folder), device="cpu")


def _array(path: str | Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _install_cord_model(tmp_path: Path, crop_pads: dict | None = CROP_PADS) -> Path:
    archive = write_zip(tmp_path / "model_contrast_agnostic.zip", cord_model_files(f"{TRAINER}/", crop_pads=crop_pads))
    return installer.install(CORD_MODEL, archive)


def test_the_manifest_holds_scts_facts() -> None:
    manifest = MANIFESTS[CORD_MODEL]
    assert manifest.task == "cord" and manifest.lesion_label is None and manifest.cord_label == "sc"
    assert manifest.release == "v4.0" and [a.url for a in manifest.archives] == [
        "https://github.com/sct-pipeline/contrast-agnostic-softseg-spinalcord/releases/download/v4.0/"
        "model_contrast_agnostic_20260628.zip"]
    assert manifest.crop is not None and manifest.crop.metadata_file == "crop_metadata.json"
    assert manifest.doi == "10.1016/j.media.2025.103473" and "Medical Image Analysis" in manifest.citation
    assert manifest.licence.startswith("MIT") and manifest.folds is None and manifest.trainer_folder is None
    assert all(m.task == "lesion" for name, m in MANIFESTS.items() if name != CORD_MODEL)


def test_installs_offline_from_a_zip_and_models_list_shows_it(tmp_path: Path) -> None:
    env = {**os.environ, registry.HOME_ENV: str(tmp_path / "home")}
    command = [sys.executable, "-m", "SpinalLesionSegLib", "models"]
    archive = write_zip(tmp_path / "release.zip", cord_model_files(f"{TRAINER}/", crop_pads=CROP_PADS))
    installed = subprocess.run([*command, "install", CORD_MODEL, "--from", str(archive)], capture_output=True,
                               text=True, env=env, timeout=300)
    assert installed.returncode == 0, installed.stderr
    listing = subprocess.run([*command, "list"], capture_output=True, text=True, env=env, timeout=120)
    assert CORD_MODEL in listing.stdout
    resolved = resolve.resolve_model(CORD_MODEL)
    assert resolved.verified and resolved.task == "cord"
    assert (resolved.lesion_label, resolved.cord_label) == (None, "sc")
    assert resolved.crop_metadata == CROP_PADS and resolved.release == "v4.0"


def test_a_release_without_its_crop_metadata_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="crop_metadata.json"):
        _install_cord_model(tmp_path, crop_pads=None)
    assert not registry.is_installed(CORD_MODEL)


def test_a_custom_folder_whose_only_label_is_sc_is_a_cord_only_model(tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "cord", cord_model_files())
    resolved = resolve.resolve_model(folder)
    assert (resolved.task, resolved.lesion_label, resolved.cord_label) == ("cord", None, "sc")


def test_a_cord_only_model_writes_the_cord_and_its_probability(tmp_path: Path, t2_path: Path) -> None:
    """Whole image (no crop_metadata.json: SCT runs such a model uncropped); the mask is the largest component of
    the mean cord probability >= 0.5, and the probability is zeroed on the components dropped."""
    model, info = load_model(str(write_tree(tmp_path / "cord", cord_model_files())), device="cpu")
    result = predict_case(model, [t2_path], Job(inputs=[str(t2_path)], output_dir=str(tmp_path / "out")), info)
    assert set(result["outputs"]) == {"sc_seg", "sc_soft", "sidecar"}
    assert Path(result["outputs"]["sidecar"]).name == "t2_sc_seg.json"
    cord, soft = _array(result["outputs"]["sc_seg"]), _array(result["outputs"]["sc_soft"])
    assert result["cord_voxels"] == int(cord.sum()) > 0
    assert label_components(cord != 0, cord_stage.CORD_CONNECTIVITY)[1] == 1
    np.testing.assert_array_equal(cord != 0, soft >= 0.5)
    sidecar = json.loads(Path(result["outputs"]["sidecar"]).read_text())
    assert sidecar["task"] == "cord" and "largest connected component" in sidecar["cord_rule"]
    assert sidecar["roi"] is None and "spinal cord" in sidecar["GeneratedBy"][0]["Description"]


def test_roi_auto_runs_the_cord_model_first_and_equals_its_cord_as_roi_mask(tmp_path: Path, t2_path: Path,
                                                                           lesion_only) -> None:
    """Two stages for real: the cord model's cord is the ROI, exactly as if it had been given with --roi-mask; it
    is written as <stem>_sc_seg.nii.gz (what stats --cord takes) and judges the lesions outside the cord."""
    model, info = lesion_only
    cord_folder = write_tree(tmp_path / "cord", cord_model_files())
    job = Job(inputs=[str(t2_path)], output_dir=str(tmp_path / "auto"), device="cpu", roi_auto=True,
              cord_model=str(cord_folder))
    stages: list[str] = []
    auto = predict_case(model, [t2_path], job, info, lambda stage, fraction: stages.append(stage))
    assert stages[0].startswith("cord: ") and "predict fold 0" in stages
    cord_file = auto["outputs"]["sc_seg"]
    assert Path(cord_file).name == "t2_sc_seg.nii.gz" and _array(cord_file).any()
    sidecar = json.loads(Path(auto["outputs"]["sidecar"]).read_text())
    assert sidecar["cord_stage"]["source"] == "cord model" and sidecar["cord_stage"]["crop"] is None
    assert sidecar["outside_cord"]["cord"] == "cord_model" and sidecar["settings"]["roi_auto"] is True

    given = predict_case(model, [t2_path], Job(inputs=[str(t2_path)], output_dir=str(tmp_path / "given"),
                                               device="cpu", roi_mask=cord_file), info)
    given_sidecar = json.loads(Path(given["outputs"]["sidecar"]).read_text())
    for key in ("ras_min_mm", "ras_max_mm"):
        assert sidecar["roi"][key] == given_sidecar["roi"][key]
    for role in ("lesion_seg", "lesion_soft"):
        np.testing.assert_array_equal(_array(auto["outputs"][role]), _array(given["outputs"][role]))


def test_roi_auto_uses_a_region_based_models_own_cord(tmp_path: Path, t2_path: Path, demo) -> None:
    """The bundled demo model (region-based: cord and lesions) in one run: the ROI from its own cord (largest
    component), the outputs zeroed outside it, equal to a run restricted to that box."""
    model, info = demo
    assert cord_stage.auto_cord_source(model) == "own"
    auto = predict_case(model, [t2_path], Job(inputs=[str(t2_path)], output_dir=str(tmp_path / "auto"),
                                              roi_auto=True), info)
    sidecar = json.loads(Path(auto["outputs"]["sidecar"]).read_text())
    assert sidecar["cord_stage"]["source"] == "the lesion model's own cord"

    whole = model.predict(read_image(t2_path))
    largest = cord_stage.largest_cord(whole).cord
    roi = case_roi(mask=largest, margin_mm=job_margin(), source="the model's cord")
    assert sidecar["roi"]["ras_min_mm"] == list(roi.ras_min) and sidecar["roi"]["ras_max_mm"] == list(roi.ras_max)
    boxed = predict_case(model, [t2_path], Job(inputs=[str(t2_path)], output_dir=str(tmp_path / "boxed"),
                                               roi_box=RoiBox(roi.ras_min, roi.ras_max)), info)
    for role in ("lesion_seg", "lesion_soft", "sc_seg"):
        np.testing.assert_array_equal(_array(auto["outputs"][role]), _array(boxed["outputs"][role]))


def job_margin() -> float:
    return Job(inputs=["x"], output_dir="o").roi_margin_mm


def test_no_cord_model_installed_is_one_line(tmp_path: Path, t2_path: Path, lesion_folder: Path) -> None:
    env = {**os.environ, registry.HOME_ENV: str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-m", "SpinalLesionSegLib", "predict", str(t2_path), "-o",
                             str(tmp_path / "out"), "--device", "cpu", "--roi", "auto", "--model", str(lesion_folder)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"the cord model '{CORD_MODEL}' is not installed" in errors[0]
    assert not (tmp_path / "out" / "t2_lesion_seg.nii.gz").exists()


def test_a_crop_trained_cord_model_without_sc_crop_is_refused_in_one_line(tmp_path: Path, t2_path: Path, lesion_only,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """SCT never runs its cropped cord model on the whole image: no sc-crop, no cord stage."""
    monkeypatch.setitem(sys.modules, "sc_crop", None)  # not importable, whatever this machine has
    _install_cord_model(tmp_path)
    model, info = lesion_only
    job = Job(inputs=[str(t2_path)], output_dir=str(tmp_path / "out"), device="cpu", roi_auto=True)
    with pytest.raises(InputError) as raised:
        predict_case(model, [t2_path], job, info)
    message = str(raised.value)
    assert "\n" not in message and "sc-crop package is not installed" in message and "--roi-mask" in message


def _fake_sc_crop(tmp_path: Path, weights: tuple[str, ...]) -> types.ModuleType:
    """A stand-in sc_crop package: its download module's cache folder holding ``weights``."""
    package, download = types.ModuleType("sc_crop"), types.ModuleType("sc_crop.download")
    download._CACHE_DIR = tmp_path / "sc_crop_cache"
    download._CACHE_DIR.mkdir(exist_ok=True)
    for name in weights:
        (download._CACHE_DIR / name).write_bytes(b"onnx")
    package.download = download
    return package


def test_sc_crop_problems_name_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sc_crop", None)
    assert "sc-crop package is not installed" in cord_stage.sc_crop_problem()
    package = _fake_sc_crop(tmp_path, ("det_model.onnx",))
    monkeypatch.setitem(sys.modules, "sc_crop", package)
    monkeypatch.setitem(sys.modules, "sc_crop.download", package.download)
    monkeypatch.setattr(cord_stage.importlib.util, "find_spec", lambda name: object())
    problem = cord_stage.sc_crop_problem()
    assert "cls_model.onnx" in problem and "det_model.onnx" not in problem and "sc_crop.download()" in problem
    (package.download._CACHE_DIR / "cls_model.onnx").write_bytes(b"onnx")
    assert cord_stage.sc_crop_problem() is None


def test_the_cord_model_runs_on_sc_crops_padded_box(tmp_path: Path, t2_path: Path, lesion_only,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """sc_crop.detect gets the model's crop_metadata.json pads; its voxel box is the cord model's crop."""
    calls = []

    def detect(path, **pads):
        calls.append(pads)
        size = sitk.ReadImage(path).GetSize()
        return {"xmin": 5, "xmax": size[0] - 6, "ymin": 10, "ymax": size[1] - 11, "zmin": 3, "zmax": size[2] - 4}

    package = _fake_sc_crop(tmp_path, cord_stage.SC_CROP_WEIGHTS)
    package.detect = detect
    monkeypatch.setitem(sys.modules, "sc_crop", package)
    monkeypatch.setitem(sys.modules, "sc_crop.download", package.download)
    monkeypatch.setattr(cord_stage, "sc_crop_problem", lambda: None)
    _install_cord_model(tmp_path)
    model, info = lesion_only
    result = predict_case(model, [t2_path], Job(inputs=[str(t2_path)], output_dir=str(tmp_path / "out"),
                                                device="cpu", roi_auto=True), info)
    assert calls == [CROP_PADS]
    image = read_image(t2_path)
    size = image.GetSize()
    crop = json.loads(Path(result["outputs"]["sidecar"]).read_text())["cord_stage"]["crop"]
    box = box_from_block(image, [5, 10, 3], [size[0] - 6, size[1] - 11, size[2] - 4], "sc-crop")
    np.testing.assert_allclose(crop["ras_min_mm"], box.ras_min)
    np.testing.assert_allclose(crop["ras_max_mm"], box.ras_max)
    assert index_block(image, box) == ([5, 10, 3], [size[0] - 10, size[1] - 20, size[2] - 6])
    cord = _array(result["outputs"]["sc_seg"])
    outside = np.ones_like(cord, bool)
    outside[3:size[2] - 3, 10:size[1] - 10, 5:size[0] - 5] = False
    assert cord.any() and not cord[outside].any()


def test_roi_auto_is_a_job_field_exclusive_with_a_given_roi() -> None:
    job = Job.from_dict({"inputs": ["a.nii.gz"], "output_dir": "o", "roi_auto": True, "cord_model": "mine"})
    assert Job.from_json(job.to_json()) == job
    with pytest.raises(ProtocolError, match="roi_auto"):
        Job(inputs=["a.nii.gz"], output_dir="o", roi_auto=True, roi_mask="cord.nii.gz")
    with pytest.raises(ProtocolError, match="roi_auto"):
        Job(inputs=["a.nii.gz"], output_dir="o", roi_auto="yes")
