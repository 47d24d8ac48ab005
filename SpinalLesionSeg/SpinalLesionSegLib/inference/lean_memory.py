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
import threading
from typing import Any

__all__ = ["convolution_weight_names", "release_consumed_skips", "return_freed_memory"]


def release_consumed_skips(network: Any) -> None:
    """On networks whose decoder is ``dynamic_network_architectures``' own ``UNetDecoder`` (every nnU-Net v2 U-Net
    and ResEnc U-Net), drop each encoder output from the decoder's list once the stage that concatenates it starts:
    that stage reads it only through the concatenation, and no later stage reads it. Another decoder (a subclass
    may read its skips otherwise) is left as it is. Hooks only: the network's code and results are unchanged. The
    list is held per thread while the decoder runs and let go when it ends, an exception included."""
    from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder

    decoder = getattr(network, "decoder", None)
    if type(decoder) is not UNetDecoder:
        return
    running = threading.local()  # .skips: the list this thread's decoder is running on

    def hold(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        skips = args[0] if args else kwargs.get("skips")
        running.skips = skips if isinstance(skips, list) else None

    def release_for(stage: int) -> Any:
        def release(_module: Any, _args: tuple[Any, ...]) -> None:
            skips = getattr(running, "skips", None)
            if skips is not None:
                skips[-(stage + 2)] = None  # UNetDecoder.forward concatenated skips[-(stage + 2)] just before
        return release

    def let_go(*_: Any) -> None:
        running.skips = None

    decoder.register_forward_pre_hook(hold, with_kwargs=True)
    for index, stage in enumerate(decoder.stages):
        stage.register_forward_pre_hook(release_for(index))
    decoder.register_forward_hook(let_go, always_call=True)


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
    """Give the C heap's free memory back to the system (glibc's ``malloc_trim(0)``: 5-50 ms here, against seconds
    per tile); whether anything was returned (False also where there is no such call)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
