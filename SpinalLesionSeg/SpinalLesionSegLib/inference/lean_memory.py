"""Less memory per tile, with every value unchanged (issue 17: ``lesion_ms`` within 4 GB on the CPU).

A 192^3 tile of the ``lesion_ms`` network (ResEnc-L) peaks in its last decoder stage, which holds the concatenated
64-channel input, its output, oneDNN's reordered copy of the input and, kept by the decoder's list of encoder
outputs until the whole forward pass ends, the full-resolution encoder output that was already concatenated
(0.45 GB in bf16, 0.9 GB in fp32; ``bench/memory_resenc_l.py``). Two rules remove what no later step reads:

- :func:`release_consumed_skips` lets each encoder output go once its decoder stage has concatenated it;
- :func:`convolution_weight_names` names the weights that, under bf16/fp16 autocast, are only ever used cast to
  16 bits (convolutions): held in 16 bits they take half the memory and give the same values, since autocast
  would round them the same way at every tile (:mod:`.fold_weights` holds them so on the CPU).

And :func:`return_freed_memory` gives the heap memory a freed fold leaves behind back to the system, which glibc
otherwise keeps (0.1-0.25 GB per fold switch of ``lesion_ms``, so five folds peaked 0.2 GB above one).
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

__all__ = ["convolution_weight_names", "release_consumed_skips", "return_freed_memory"]


def release_consumed_skips(network: Any) -> None:
    """On networks whose decoder is ``dynamic_network_architectures``' own ``UNetDecoder`` (every nnU-Net v2 U-Net
    and ResEnc U-Net), drop each encoder output from the decoder's list once the stage that concatenates it starts:
    that stage reads it only through the concatenation, and no later stage reads it. Another decoder (a subclass
    may read its skips otherwise) is left as it is. Hooks only: the network's code and results are unchanged."""
    from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder

    decoder = getattr(network, "decoder", None)
    if type(decoder) is not UNetDecoder:
        return
    skips: list[list[Any]] = []  # the list the decoder is running on, while it runs

    def hold(_module: Any, args: tuple[Any, ...]) -> None:
        skips[:] = [args[0]] if isinstance(args[0], list) else []

    def release_for(stage: int) -> Any:
        def release(_module: Any, _args: tuple[Any, ...]) -> None:
            if skips:
                skips[0][-(stage + 2)] = None  # UNetDecoder.forward concatenated skips[-(stage + 2)] just before
        return release

    decoder.register_forward_pre_hook(hold)
    for index, stage in enumerate(decoder.stages):
        stage.register_forward_pre_hook(release_for(index))
    decoder.register_forward_hook(lambda *_: skips.clear())


def convolution_weight_names(network: Any) -> frozenset[str]:
    """State-dict names of every convolution's (and transposed convolution's) weight and bias, under every name
    that reaches them (nnU-Net's decoder lists the encoder again): the tensors autocast casts to 16 bits."""
    import torch

    names = set()
    for prefix, module in network.named_modules(remove_duplicate=False):
        if isinstance(module, torch.nn.modules.conv._ConvNd):
            names.update(f"{prefix}.{name}" if prefix else name for name, _ in module.named_parameters(recurse=False))
    return frozenset(names)


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim`` from the symbols already loaded into this process, or None where the C library has
    none (macOS, musl) or cannot be looked up so (Windows)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


def return_freed_memory() -> bool:
    """Give the C heap's free memory back to the system (glibc's ``malloc_trim(0)``, a few milliseconds); whether
    anything was returned (False also where there is no such call)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
