"""A multi-sequence U-Net with feature-level mean imputation of missing sequences (Walsh et al. 2025).

One encoder per input sequence (``dynamic_network_architectures``' ``PlainConvEncoder``, one channel each) and one
``UNetDecoder``. At every resolution the decoder receives the encoders' features side by side; the features of a
missing sequence are replaced by the mean of the available sequences' features at that resolution (the bottleneck
included), so the decoder always sees the layout it was trained on and a model degrades gracefully instead of
reading an empty channel as tissue. A sequence is missing when its whole input channel is exactly zero: what the
pipeline feeds for it (:mod:`.sequences`), and what nnU-Net's z-score normalisation keeps at zero; a real image
never normalises to all zeros. Training drops sequences at random (``scripts/train_multisequence_demo.py``).

The class is this project's own and takes the arguments of ``PlainConvUNet`` (so nnU-Net plans describe it as they
describe that one); the safe loader allows it by its exact dotted name only (:mod:`..models.model_values`), never a
class name taken from a model file otherwise. This module imports torch: it is loaded only to build such a network.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from torch import nn

#: What the decoder reads of an encoder (besides ``output_channels``): shared by all the sequence encoders.
_ENCODER_SPEC = ("conv_op", "conv_bias", "norm_op", "norm_op_kwargs", "dropout_op", "dropout_op_kwargs", "nonlin",
                 "nonlin_kwargs", "kernel_sizes", "strides")


def mean_imputed(features: list[torch.Tensor], available: torch.Tensor) -> torch.Tensor:
    """The sequences' features (each ``(B, F, ...)``) side by side, ``(B, S*F, ...)``, those of a sequence not
    ``available`` (``(B, S)`` bool) replaced by the mean of the available ones' (zeros when none is)."""
    stack = torch.stack(features, dim=1)
    weights = available.to(stack.dtype).reshape(*available.shape, *([1] * (stack.dim() - 2)))
    mean = (stack * weights).sum(dim=1, keepdim=True) / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
    return torch.where(weights > 0, stack, mean.expand_as(stack)).flatten(1, 2)


class MeanImputationUNet(nn.Module):
    """One encoder per sequence, features fused by :func:`mean_imputed` at every resolution, one decoder."""

    def __init__(self, input_channels: int, n_stages: int, features_per_stage: Any, conv_op: type, kernel_sizes: Any,
                 strides: Any, n_conv_per_stage: Any, num_classes: int, n_conv_per_stage_decoder: Any,
                 conv_bias: bool = False, norm_op: type | None = None, norm_op_kwargs: dict | None = None,
                 dropout_op: type | None = None, dropout_op_kwargs: dict | None = None, nonlin: type | None = None,
                 nonlin_kwargs: dict | None = None, deep_supervision: bool = False) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(
            PlainConvEncoder(1, n_stages, features_per_stage, conv_op, kernel_sizes, strides, n_conv_per_stage,
                             conv_bias, norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin,
                             nonlin_kwargs, return_skips=True) for _ in range(input_channels))
        first = self.encoders[0]
        # The decoder is built for the fused features (all sequences side by side); a plain namespace, not a module,
        # so no second copy of an encoder ends up among the weights.
        spec = SimpleNamespace(**{name: getattr(first, name) for name in _ENCODER_SPEC},
                               output_channels=[c * input_channels for c in first.output_channels])
        self.decoder = UNetDecoder(spec, num_classes, n_conv_per_stage_decoder, deep_supervision)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        available = x.flatten(2).abs().amax(dim=2) > 0
        per_sequence = [encoder(x[:, number:number + 1]) for number, encoder in enumerate(self.encoders)]
        fused = [mean_imputed([skips[level] for skips in per_sequence], available)
                 for level in range(len(per_sequence[0]))]
        del per_sequence  # copied into ``fused``, which the decoder lets go level by level (.lean_memory)
        return self.decoder(fused)
