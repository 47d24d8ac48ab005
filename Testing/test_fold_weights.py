"""Fold weights in memory (issue 17, memory): one fold at a time on the CPU, all on a GPU; names that share a
tensor keep sharing it (nnU-Net's decoder lists the encoder's weights again); a checkpoint changed after loading
is refused in one line, and the worker loads such a model again. Real torch checkpoints on disk, the real worker."""

from __future__ import annotations

import gc
import io
import json
import os
import shutil
import weakref
from pathlib import Path

import numpy as np
import SimpleITK as sitk

import pytest
import torch
from conftest import MODULE_DIR
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.inference.checkpoint import load_fold_checkpoints
from SpinalLesionSegLib.inference.fold_weights import FoldWeights, file_stamps
from SpinalLesionSegLib.inference.worker import Emitter, Worker
from SpinalLesionSegLib.image_io import write_image
from SpinalLesionSegLib.phantom import make_phantom


def _checkpoints(tmp_path: Path, folds: int = 3) -> dict[int, Path]:
    paths = {}
    for fold in range(folds):
        shared = torch.full((4, 4), float(fold))
        path = tmp_path / f"fold_{fold}" / "checkpoint_final.pth"
        path.parent.mkdir()
        torch.save({"network_weights": {"encoder.w": shared, "decoder.encoder.w": shared,
                                        "head.b": torch.arange(3.0) + fold}, "optimizer_state": {}}, path)
        paths[fold] = path
    return paths


def _fold_weights(paths: dict[int, Path], resident: bool, calls: list[str]) -> FoldWeights:
    stamps = file_stamps(paths)
    loaded = load_fold_checkpoints(paths.values() if resident else [paths[0]])

    def convert(name: str, tensor: torch.Tensor) -> torch.Tensor:
        calls.append(name)
        return tensor.to(torch.float64)

    return FoldWeights(paths, stamps, loaded.parameters[0], loaded.parameters[1:], convert, resident)


def test_the_cpu_holds_one_fold_and_shared_tensors_stay_shared(tmp_path: Path) -> None:
    calls: list[str] = []
    weights = _fold_weights(_checkpoints(tmp_path), resident=False, calls=calls)
    assert list(weights) == [0, 1, 2] and list(weights.held) == [0]
    second = weights[2]
    assert list(weights.held) == [2]  # fold 0 let go
    assert second["encoder.w"] is second["decoder.encoder.w"] and second["encoder.w"].dtype == torch.float64
    assert float(second["head.b"][0]) == 2.0 and calls.count("decoder.encoder.w") == 0  # converted once, shared


def test_a_gpu_holds_every_fold_converted_once(tmp_path: Path) -> None:
    calls: list[str] = []
    weights = _fold_weights(_checkpoints(tmp_path), resident=True, calls=calls)
    assert list(weights.held) == [0, 1, 2] and len(calls) == 6  # two distinct tensors per fold
    assert weights[1]["encoder.w"] is weights[1]["decoder.encoder.w"]


def test_the_cpu_lowers_convolution_weights_for_16_bit_runs_and_reads_them_again_for_fp32(tmp_path: Path) -> None:
    paths = _checkpoints(tmp_path)
    weights = _fold_weights(paths, resident=False, calls=[])
    weights.lowerable = frozenset({"encoder.w", "decoder.encoder.w"})
    lowered = weights.weights(0, torch.bfloat16)
    assert lowered["encoder.w"].dtype == torch.bfloat16 and lowered["encoder.w"] is lowered["decoder.encoder.w"]
    assert lowered["head.b"].dtype == torch.float64 and weights.weights(0, torch.bfloat16) is lowered
    full = weights.weights(0)  # fp32 again: read from the file, not from the rounded copy
    assert full["encoder.w"].dtype == torch.float64 and list(weights.held) == [0]
    assert torch.equal(full["head.b"], torch.arange(3.0, dtype=torch.float64))
    assert weights.weights(2, torch.bfloat16)["encoder.w"].dtype == torch.bfloat16 and list(weights.held) == [2]
    resident = _fold_weights(paths, resident=True, calls=[])
    resident.lowerable = weights.lowerable
    assert resident.weights(1, torch.bfloat16)["encoder.w"].dtype == torch.float64  # a GPU keeps them as loaded


def test_a_checkpoint_changed_after_loading_is_refused(tmp_path: Path) -> None:
    paths = _checkpoints(tmp_path)
    weights = _fold_weights(paths, resident=False, calls=[])
    assert not weights.changed()
    stat = os.stat(paths[1])
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert weights.changed()
    with pytest.raises(InputError, match=r"fold_1/checkpoint_final.pth: changed since the model was loaded"):
        weights[1]


def test_the_worker_loads_a_model_again_when_its_files_changed(tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(MODULE_DIR / "Resources" / "Models" / "demo", model)
    image = write_image(make_phantom(21, "T2w").image, tmp_path / "p_T2w.nii.gz")
    stream = io.StringIO()
    worker = Worker(Emitter(stream))
    job = {"inputs": [str(image)], "model": str(model), "device": "cpu", "folds": [0]}
    assert worker.run({**job, "id": "1", "output_dir": str(tmp_path / "out1")}) == 0
    checkpoint = model / "fold_0" / "checkpoint_final.pth"
    stat = os.stat(checkpoint)
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert worker.run({**job, "id": "2", "output_dir": str(tmp_path / "out2")}) == 0
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    logs = [line["message"] for line in lines if line["type"] == "log" and line.get("id") == "2"]
    assert any("changed on disk since it was loaded" in message for message in logs)
    assert [line["model_load_s"] > 0 for line in lines if line["type"] == "result"] == [True, True]


def test_nnunet_compile_set_for_training_is_held_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from SpinalLesionSegLib.inference.predictor import LoadedModel

    monkeypatch.setenv("nnUNet_compile", "true")  # nnunetv2 would otherwise torch.compile the network
    model = LoadedModel(MODULE_DIR / "Resources" / "Models" / "demo", device="cpu")
    assert not hasattr(model.predictor.network, "_orig_mod") and os.environ["nnUNet_compile"] == "true"
    image = make_phantom(22, "T2w").image
    first, second = (sitk.GetArrayFromImage(model.predict(image).soft) for _ in range(2))
    assert first.max() > 0.5 and np.array_equal(first, second)  # fold 0 read again after fold 1, the same numbers
    held = model.fold_parameters[1]  # the last fold run: the network holds its very tensors, no copy
    assert all(tensor.data_ptr() == held[name].data_ptr()
               for name, tensor in model.predictor.network.state_dict().items())


def test_a_dropped_model_is_freed_at_once() -> None:
    from SpinalLesionSegLib.inference.predictor import LoadedModel

    gc.disable()  # freed by reference counting, as the worker drops a model, not by a later collection
    try:
        model = LoadedModel(MODULE_DIR / "Resources" / "Models" / "demo", device="cpu")
        alive = weakref.ref(model)
        del model
        assert alive() is None
    finally:
        gc.enable()
