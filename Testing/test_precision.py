"""``--precision`` and ``--tile-step`` (issue 17, points 1-2): the choice and its reasons, the sidecar and settings
records, bf16 and a step of 1 against the defaults on a phantom with the real demo model and torch, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.image_io import write_image
from SpinalLesionSegLib.inference.precision import (
    PrecisionChoice,
    check_precision,
    choose_precision,
    cpu_has_native_bf16,
    emulation_warning,
)
from SpinalLesionSegLib.inference.protocol import Job, ProtocolError
from SpinalLesionSegLib.phantom import make_phantom


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    (tmp_path / "with").write_text("flags\t\t: fpu avx512f avx512_bf16 sse\n")
    (tmp_path / "amx").write_text("flags\t\t: fpu amx_bf16 amx_tile\n")
    (tmp_path / "without").write_text("flags\t\t: fpu avx2 avx512f\n")
    assert cpu_has_native_bf16(tmp_path / "with") and cpu_has_native_bf16(tmp_path / "amx")
    assert not cpu_has_native_bf16(tmp_path / "without") and not cpu_has_native_bf16(tmp_path / "missing")


def test_a_requested_precision_this_cpu_emulates_is_warned_about(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu avx512f avx512_bf16 sse\n")
    cpu = torch.device("cpu")
    fp16, bf16 = PrecisionChoice("fp16", "requested"), PrecisionChoice("bf16", "requested")
    assert emulation_warning(fp16, cpu, cpuinfo) == ("fp16 is emulated on this CPU (no avx512_fp16 or amx_fp16): "
                                                     "slower than fp32 by far; choose the precision auto or fp32")
    assert emulation_warning(bf16, cpu, cpuinfo) is None
    assert emulation_warning(fp16, torch.device("cuda"), cpuinfo) is None  # a GPU's own arithmetic
    cpuinfo.write_text("flags\t\t: fpu avx512f avx512_fp16\n")
    assert emulation_warning(fp16, cpu, cpuinfo) is None
    assert emulation_warning(PrecisionChoice("fp32", "requested"), cpu, cpuinfo) is None
    assert emulation_warning(bf16, cpu, cpuinfo).startswith("bf16 is emulated on this CPU (no avx512_bf16 or amx_bf16)")


def test_the_choice_and_its_reason() -> None:
    cpu = torch.device("cpu")
    assert choose_precision("bf16", cpu, torch) == PrecisionChoice("bf16", "requested")
    auto = choose_precision("auto", cpu, torch)
    assert auto.name == ("bf16" if cpu_has_native_bf16() else "fp32") and auto.reason.startswith("auto: this CPU")
    assert choose_precision("auto", torch.device("mps"), torch).name == "fp32"  # never measured there
    with pytest.raises(InputError, match="^unknown precision 'fp8'; choose one of auto, fp32, bf16, fp16$"):
        check_precision("fp8")
    with pytest.raises(ProtocolError, match="'precision' must be one of"):
        Job(inputs=["a.nii.gz"], output_dir="out", precision="fp8")


def _predict(image: Path, out: Path, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "SpinalLesionSegLib", "predict", str(image), "-o", str(out),
                           "--model", "demo", "--device", "cpu", *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "phantom_T2w_lesion_seg.json").read_text())


def test_bf16_finds_the_same_lesions_and_says_so(tmp_path: Path) -> None:
    image = write_image(make_phantom(900_010, "T2w", spacing=(1.0, 1.0, 1.0)).image, tmp_path / "phantom_T2w.nii.gz")
    fp32 = _predict(image, tmp_path / "fp32")
    bf16 = _predict(image, tmp_path / "bf16", "--precision", "bf16")
    assert fp32["precision"] == {"requested": "fp32", "used": "fp32", "reason": "requested"}
    assert bf16["precision"] == {"requested": "bf16", "used": "bf16", "reason": "requested"}
    assert "precision" not in fp32["settings"] and bf16["settings"]["precision"] == "bf16"  # re-runs a batch
    soft = [sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / run / "phantom_T2w_lesion_soft.nii.gz")))
            for run in ("fp32", "bf16")]
    masks = [s >= 0.5 for s in soft]
    assert masks[0].sum() > 50  # the phantom's lesions are found
    assert 2 * (masks[0] & masks[1]).sum() / (masks[0].sum() + masks[1].sum()) >= 0.98
    assert np.percentile(np.abs(soft[0] - soft[1]), 99.99) <= 0.02


def test_a_tile_step_of_one_is_recorded_and_still_finds_the_lesions(tmp_path: Path) -> None:
    image = write_image(make_phantom(900_010, "T2w", spacing=(1.0, 1.0, 1.0)).image, tmp_path / "phantom_T2w.nii.gz")
    record = _predict(image, tmp_path / "step1", "--tile-step", "1")
    assert record["settings"]["tile_step"] == 1.0
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "step1" / "phantom_T2w_lesion_seg.nii.gz")))
    assert mask.sum() > 50
    with pytest.raises(ProtocolError, match="'tile_step' must be a number from 0.25 to 1"):
        Job(inputs=["a.nii.gz"], output_dir="out", tile_step=0.1)


def test_an_unknown_precision_is_a_one_line_usage_error(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "SpinalLesionSegLib", "predict", "x.nii.gz", "-o", str(tmp_path),
                           "--precision", "fp8"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "invalid choice: 'fp8'" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "SpinalLesionSegLib", "predict", "x.nii.gz", "-o", str(tmp_path),
                           "--tile-step", "2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "must be from 0.25 to 1, got 2" in done.stderr
