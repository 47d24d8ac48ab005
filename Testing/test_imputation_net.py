"""The mean-imputation multi-sequence network (issue 16, point 3): what it does with a missing sequence, and how the
safe loader lets it in (by its exact name only). Real torch and dynamic_network_architectures."""

from __future__ import annotations

import weakref

import pytest
import torch
from SpinalLesionSegLib.inference.imputation_net import MeanImputationUNet, mean_imputed
from SpinalLesionSegLib.inference.lean_memory import release_consumed_skips
from SpinalLesionSegLib.models.model_values import ALLOWED_NETWORK_PREFIX, PROJECT_NETWORKS, class_path_problem

#: The demo plans' architecture (4 stages, 14-112 features), as scripts/train_multisequence_demo.py writes it.
ARCH = dict(n_stages=4, features_per_stage=[14, 28, 56, 112], conv_op=torch.nn.Conv3d, kernel_sizes=[[3, 3, 3]] * 4,
            strides=[[1, 1, 1]] + [[2, 2, 2]] * 3, n_conv_per_stage=[2] * 4, num_classes=2,
            n_conv_per_stage_decoder=[2] * 3, conv_bias=True, norm_op=torch.nn.InstanceNorm3d,
            norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=torch.nn.LeakyReLU, nonlin_kwargs={"inplace": True})


def test_missing_features_are_the_mean_of_the_available_ones() -> None:
    a, b, c = (torch.full((2, 3, 4), value) for value in (1.0, 2.0, 6.0))
    available = torch.tensor([[True, True, True], [True, False, True]])
    fused = mean_imputed([a, b, c], available)
    assert fused.shape == (2, 9, 4)
    assert torch.equal(fused[0], torch.cat([a[0], b[0], c[0]]))  # all there: side by side, untouched
    assert torch.equal(fused[1, 3:6], torch.full((3, 4), 3.5))  # b missing: the mean of a and c
    assert torch.equal(fused[1, :3], a[1]) and torch.equal(fused[1, 6:], c[1])
    none = mean_imputed([a, b, c], torch.zeros(2, 3, dtype=torch.bool))
    assert not none.any()  # nothing available: zeros, no division by zero


def test_a_zero_channel_is_read_as_missing_and_imputed_in_the_network() -> None:
    """With the STIR encoder a copy of the T2w one, imputing STIR from T2w gives exactly what feeding the T2w image
    as STIR gives: the zero channel was taken as missing and its features replaced at every resolution."""
    torch.manual_seed(0)
    network = MeanImputationUNet(input_channels=2, **ARCH).eval()
    network.encoders[1].load_state_dict(network.encoders[0].state_dict())
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        imputed = network(torch.cat([x, torch.zeros_like(x)], dim=1))
        copied = network(torch.cat([x, x], dim=1))
        other = network(torch.cat([x, torch.randn_like(x)], dim=1))
    assert imputed.shape == (1, 2, 32, 32, 32)
    torch.testing.assert_close(imputed, copied)
    assert not torch.allclose(imputed, other)  # the second channel does matter when it is there
    assert not any(name.startswith("decoder.encoder") for name in network.state_dict())  # no dead encoder copy


def test_each_sequence_encoder_output_is_let_go_while_the_decoder_runs() -> None:
    """Once fused, no sequence's own encoder outputs stay alive through the decoder (issue 17, memory); with the
    skip rule of lean_memory the fused full-resolution level goes too."""
    torch.manual_seed(0)
    network = MeanImputationUNet(input_channels=2, **ARCH).eval()
    release_consumed_skips(network)
    outputs: list[weakref.ref] = []
    for encoder in network.encoders:
        encoder.register_forward_hook(lambda _m, _a, skips: outputs.extend(weakref.ref(s) for s in skips))
    fused: list[weakref.ref] = []
    network.decoder.register_forward_pre_hook(lambda _m, args: fused.append(weakref.ref(args[0][0])))
    alive: list[int] = []
    network.decoder.stages[-1].register_forward_pre_hook(
        lambda *_: alive.append(sum(ref() is not None for ref in [*outputs, *fused])))
    with torch.inference_mode():
        network(torch.randn(1, 2, 32, 32, 32))
    assert len(outputs) == 8 and alive == [0]


@pytest.mark.parametrize("name", ["SpinalLesionSegLib.inference.imputation_net.torch",
                                  "SpinalLesionSegLib.inference.imputation_net.MeanImputationUNet.forward",
                                  "SpinalLesionSegLib.inference.case.predict_case", "os.system"])
def test_only_the_exact_class_name_is_allowed(name: str) -> None:
    [allowed] = PROJECT_NETWORKS
    assert class_path_problem(allowed, ALLOWED_NETWORK_PREFIX, PROJECT_NETWORKS) == ""
    assert class_path_problem(name, ALLOWED_NETWORK_PREFIX, PROJECT_NETWORKS).startswith("refused")
