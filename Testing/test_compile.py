"""``--compile`` (issue 17, point 3): the real demo model through the real ``torch.compile`` (inductor, CPU) gives the
plain network's answer, compiles one graph per precision and not again at a fold switch or a second image; a
compiler that cannot run falls back to the plain network with a one-line warning and the sidecar says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import MODULE_DIR
from SpinalLesionSegLib.image_io import write_image
from SpinalLesionSegLib.inference.predictor import LoadedModel
from SpinalLesionSegLib.inference.protocol import Job, ProtocolError
from SpinalLesionSegLib.phantom import make_phantom
from torch._dynamo.utils import counters

DEMO = MODULE_DIR / "Resources" / "Models" / "demo"


@pytest.fixture(scope="module")
def phantom() -> sitk.Image:
    return make_phantom(2).image


def _arrays(prediction) -> tuple[np.ndarray, np.ndarray]:
    return sitk.GetArrayFromImage(prediction.soft), sitk.GetArrayFromImage(prediction.binary)


def test_compiled_gives_the_plain_answer_and_compiles_once(phantom: sitk.Image) -> None:
    model = LoadedModel(DEMO, folds=[0, 1], device="cpu")  # two folds: a fold switch inside each image
    soft, binary = _arrays(model.predict(phantom))
    stages: list[str] = []
    try:
        before = counters["stats"]["unique_graphs"]
        first = model.predict(phantom, compile_network=True, progress=lambda stage, _: stages.append(stage))
        assert isinstance(model.predictor.network, torch._dynamo.eval_frame.OptimizedModule), "tiles ran compiled"
        second = model.predict(phantom, compile_network=True)
        assert counters["stats"]["unique_graphs"] - before == 1, "one graph: no recompiling at a fold switch or image"
        plain_bf16 = model.predict(phantom, precision="bf16")
        compiled_bf16 = model.predict(phantom, precision="bf16", compile_network=True)
        assert counters["stats"]["unique_graphs"] - before == 2, "a new precision compiles once more"
    finally:
        torch._dynamo.reset()
    assert compiled_bf16.compiled.compiled and compiled_bf16.compiled.compile_s > 0
    assert np.abs(_arrays(compiled_bf16)[0] - _arrays(plain_bf16)[0]).max() < 0.05  # bf16, sums in another order
    assert first.compiled.compiled and first.compiled.compile_s > 0 and first.compiled.failure is None
    assert second.compiled.compiled and second.compiled.compile_s == 0
    assert stages.index("compile the network (once per model and precision)") < stages.index("predict fold 1")
    for prediction in (first, second):
        compiled_soft, compiled_binary = _arrays(prediction)
        assert np.abs(compiled_soft - soft).max() < 1e-4  # fp32: kernels fused, sums reordered
        np.testing.assert_array_equal(compiled_binary, binary)
    assert binary.sum() > 0, "the phantom's lesions are found, so the comparison means something"
    plain = model.predict(phantom)  # asked without: the network itself again
    assert model.predictor.network is model.network
    assert plain.compiled.record() == {"requested": False, "compiled": False, "compile_s": 0.0, "failure": None}
    np.testing.assert_array_equal(_arrays(plain)[0], soft)


def test_a_compiler_that_cannot_run_falls_back_with_one_line(phantom: sitk.Image, tmp_path: Path) -> None:
    source = write_image(phantom, tmp_path / "case.nii.gz")
    environment = {**os.environ, "CXX": str(tmp_path / "no-such-c++"),  # inductor's CPU backend needs a compiler
                   "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}  # and must not find earlier kernels
    result = subprocess.run([sys.executable, "-m", "SpinalLesionSegLib", "predict", str(source), "-o",
                             str(tmp_path / "out"), "--model", "demo", "--device", "cpu", "--folds", "0",
                             "--compile"], capture_output=True, text=True, timeout=600, env=environment)
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "--compile" in line]
    assert len(warning) == 1 and "No working C++ compiler" in warning[0] and "ran without it" in warning[0]
    assert "Traceback" not in result.stderr
    sidecar = json.loads((tmp_path / "out" / "case_lesion_seg.json").read_text())
    assert sidecar["compile"]["requested"] and not sidecar["compile"]["compiled"]
    assert "No working C++ compiler" in sidecar["compile"]["failure"]
    assert "compile" not in sidecar["settings"], "how it ran does not make a result stale"
    plain = LoadedModel(DEMO, folds=[0], device="cpu").predict(phantom)
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "case_lesion_soft.nii.gz")))
    np.testing.assert_allclose(written, _arrays(plain)[0], atol=1e-6)


def test_the_job_field_is_checked() -> None:
    with pytest.raises(ProtocolError, match="'compile' must be true or false"):
        Job(inputs=["a.nii.gz"], output_dir="out", compile="yes")
