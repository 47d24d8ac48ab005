"""Less memory per tile with every value unchanged (issue 17, memory): encoder outputs let go once the decoder has
concatenated them, under bf16 the CPU holds convolution weights in bf16, and a freed fold's heap memory goes back
to the system. Real dynamic_network_architectures networks, real torch, the real demo model through the predictor,
the real C heap."""

from __future__ import annotations

import gc
import os
import weakref
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import MODULE_DIR
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from SpinalLesionSegLib.inference.lean_memory import (
    _malloc_trim,
    convolution_weight_names,
    release_consumed_skips,
    return_freed_memory,
)
from SpinalLesionSegLib.phantom import make_phantom


def _unet(kind: type = ResidualEncoderUNet) -> torch.nn.Module:
    torch.manual_seed(0)
    blocks = {"n_blocks_per_stage": [1, 2, 2]} if kind is ResidualEncoderUNet else {"n_conv_per_stage": [2, 2, 2]}
    return kind(1, 3, [8, 16, 32], torch.nn.Conv3d, 3, [1, 2, 2], num_classes=3, n_conv_per_stage_decoder=[1, 1],
                conv_bias=True, norm_op=torch.nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True},
                nonlin=torch.nn.LeakyReLU, nonlin_kwargs={"inplace": True}, **blocks).eval()


def _first_skip_alive_in_last_stage(network: torch.nn.Module) -> bool:
    """Run ``network`` once; whether the full-resolution encoder output is still alive when the decoder's last
    stage starts (after that stage's concatenation)."""
    first: list[weakref.ref] = []
    alive: list[bool] = []
    network.encoder.register_forward_hook(lambda _m, _a, skips: first.append(weakref.ref(skips[0])))
    network.decoder.stages[-1].register_forward_pre_hook(lambda *_: alive.append(first[0]() is not None))
    with torch.inference_mode():
        network(torch.randn(1, 1, 16, 16, 16))
    return alive[0]


def test_the_full_resolution_skip_is_let_go_once_concatenated() -> None:
    for kind in (ResidualEncoderUNet, PlainConvUNet):
        assert _first_skip_alive_in_last_stage(_unet(kind))  # as dynamic_network_architectures runs it
        lean = _unet(kind)
        release_consumed_skips(lean)
        assert not _first_skip_alive_in_last_stage(lean), kind.__name__


def test_the_list_is_let_go_when_the_forward_pass_fails() -> None:
    network = _unet()
    release_consumed_skips(network)
    first: list[weakref.ref] = []
    network.encoder.register_forward_hook(lambda _m, _a, skips: first.append(weakref.ref(skips[0])))

    def fail(*_: object) -> None:
        raise RuntimeError("out of memory")

    network.decoder.stages[0].register_forward_pre_hook(fail)  # before skips[0] is concatenated and let go
    try:
        with torch.inference_mode():
            network(torch.randn(1, 1, 16, 16, 16))
    except RuntimeError:
        pass
    gc.collect()
    assert first[0]() is None  # nothing still holds the decoder's list (a worker serves on after an error)


def test_the_outputs_are_exactly_the_same_in_fp32_and_bf16() -> None:
    tile = torch.randn(1, 1, 16, 16, 16)
    plain, lean = _unet(), _unet()
    release_consumed_skips(lean)
    lowerable = convolution_weight_names(lean)
    with torch.inference_mode():
        assert torch.equal(plain(tile), lean(tile))
        lean.load_state_dict({name: tensor.to(torch.bfloat16) if name in lowerable else tensor
                              for name, tensor in lean.state_dict().items()}, assign=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            expected, got = plain(tile), lean(tile)
    assert got.dtype == torch.bfloat16 and torch.equal(expected, got)


def test_convolution_weights_are_named_under_every_name_and_norms_are_not() -> None:
    network = _unet()
    names = convolution_weight_names(network)
    state = network.state_dict()
    assert "encoder.stem.convs.0.conv.weight" in names and "decoder.encoder.stem.convs.0.conv.weight" in names
    assert "decoder.transpconvs.0.weight" in names and "decoder.seg_layers.1.bias" in names
    assert not any(".norm." in name for name in names) and names <= set(state)
    assert {name for name in state if state[name].dim() == 5} <= names  # every conv kernel


def test_the_predictor_holds_bf16_conv_weights_only_while_it_runs_bf16(tmp_path: Path) -> None:
    from SpinalLesionSegLib.inference.predictor import LoadedModel

    demo = MODULE_DIR / "Resources" / "Models" / "demo"
    model = LoadedModel(demo, device="cpu")
    image = make_phantom(22, "T2w").image
    lean_bf16 = sitk.GetArrayFromImage(model.predict(image, precision="bf16").soft)
    dtypes = {name: tensor.dtype for name, tensor in model.predictor.network.state_dict().items()}
    lowerable = model.fold_parameters.lowerable
    assert {dtypes[name] for name in lowerable} == {torch.bfloat16}
    assert {dtype for name, dtype in dtypes.items() if name not in lowerable} == {torch.float32}

    fp32 = sitk.GetArrayFromImage(model.predict(image, precision="fp32").soft)  # read again in fp32
    assert {tensor.dtype for tensor in model.predictor.network.state_dict().values()} == {torch.float32}
    fresh = LoadedModel(demo, device="cpu")
    assert np.array_equal(fp32, sitk.GetArrayFromImage(fresh.predict(image, precision="fp32").soft))
    fresh.fold_parameters.lowerable = frozenset()  # bf16 autocast over fp32 weights: the values lowering must keep
    plain_bf16 = sitk.GetArrayFromImage(fresh.predict(image, precision="bf16").soft)
    assert lean_bf16.max() > 0.5 and np.array_equal(lean_bf16, plain_bf16)


def _resident_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not Path("/proc/self/statm").exists() or _malloc_trim() is None or "LD_PRELOAD" in os.environ,
                    reason="glibc's own heap and /proc (Linux) only")
def test_memory_freed_inside_the_heap_goes_back_to_the_system() -> None:
    blocks = [np.ones(8192) for _ in range(2400)]  # 64 KiB each, from the heap: 150 MiB
    pin = np.ones(8192)  # above them, so the heap's top cannot shrink by itself
    before = _resident_mb()
    del blocks
    kept = _resident_mb()
    assert return_freed_memory()
    assert before - kept < 50 and kept - _resident_mb() > 100, (before, kept, _resident_mb())
    del pin
