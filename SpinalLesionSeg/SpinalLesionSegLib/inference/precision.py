"""The arithmetic the network runs in (issue 17): ``--precision auto|fp32|bf16|fp16``, chosen in the worker.

``fp32`` runs the network in float32 (on the CPU exactly stock nnU-Net's arithmetic); ``bf16`` and ``fp16`` run it
under ``torch.autocast`` (convolutions and matrix products in 16 bits, normalisations and the sliding window's sums
as torch and nnU-Net keep them); on a CUDA GPU stock nnU-Net itself autocasts to fp16. ``auto`` picks bf16 where
the hardware has native bf16 arithmetic (a CPU with AVX-512 BF16 or AMX, read from ``/proc/cpuinfo``; a CUDA GPU
that supports bf16) and where the fidelity gate passed on that kind of device (``docs/performance.md``), else fp32.
The choice and its reason go into the sidecar.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..defaults import PRECISION_CHOICES
from ..errors import InputError

FP32, BF16, FP16, AUTO = "fp32", "bf16", "fp16", "auto"
PRECISIONS = PRECISION_CHOICES
#: CPU flags (``/proc/cpuinfo``) of native bf16 arithmetic: without them torch emulates bf16, slower than fp32.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: Device types on which the fidelity gate passed for bf16 (bench/speed_fidelity.py): ``auto`` may pick bf16
#: only there.
GATE_PASSED = ("cpu",)


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision used (:data:`FP32`, :data:`BF16` or :data:`FP16`), and why, as the sidecar records it."""

    name: str
    reason: str

    def record(self, requested: str) -> dict[str, str]:
        return {"requested": requested, "used": self.name, "reason": self.reason}


def check_precision(value: str) -> str:
    """``value`` when it is one of :data:`PRECISIONS`; InputError (one line) otherwise."""
    if value not in PRECISIONS:
        raise InputError(None, f"unknown precision {value!r}; choose one of {', '.join(PRECISIONS)}")
    return value


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU does bf16 arithmetic natively (AVX-512 BF16 or AMX); False where it cannot be read."""
    try:
        flags = set(cpuinfo.read_text(encoding="ascii", errors="replace").split())
    except OSError:
        return False
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def choose_precision(requested: str, device: Any, torch: Any) -> PrecisionChoice:
    """Resolve ``requested`` on ``device`` (a ``torch.device``); ``torch`` is the imported module."""
    requested = check_precision(requested)
    if requested != AUTO:
        return PrecisionChoice(requested, "requested")
    if device.type == "cuda":
        native = bool(torch.cuda.is_bf16_supported())
        hardware = "this GPU supports bf16" if native else "this GPU has no bf16"
    elif device.type == "cpu":
        native = cpu_has_native_bf16()
        hardware = "this CPU has native bf16 (AVX-512 BF16/AMX)" if native else "this CPU has no native bf16"
    else:
        native, hardware = False, f"no bf16 path measured on {device.type}"
    if native and device.type in GATE_PASSED:
        return PrecisionChoice(BF16, f"auto: {hardware}; fidelity gate passed on {device.type}")
    gate = "" if device.type in GATE_PASSED else f"; fidelity gate not passed on {device.type}"
    return PrecisionChoice(FP32, f"auto: {hardware}{gate}")


def autocast(choice: PrecisionChoice, device: Any, torch: Any) -> Any:
    """The context the network runs under: torch's autocast to bf16/fp16, nothing for fp32 (autocast explicitly
    off on CUDA, where nnU-Net would otherwise switch it on)."""
    if choice.name == FP32:
        return torch.autocast(device.type, enabled=False) if device.type == "cuda" else contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if choice.name == BF16 else torch.float16)
