"""The arithmetic the network runs in (issue 17): ``--precision auto|fp32|bf16|fp16``, chosen in the worker.

``fp32`` runs the network in float32 (on the CPU exactly stock nnU-Net's arithmetic); ``bf16`` and ``fp16`` run it
under ``torch.autocast`` (convolutions and matrix products in 16 bits, normalisations and the sliding window's sums
as torch and nnU-Net keep them); on a CUDA GPU stock nnU-Net itself autocasts to fp16. ``auto`` picks, where the
fidelity gate passed (``docs/performance.md``, ``bench/speed_fidelity.py``, ``bench/gpu_network.py``): bf16 on a
CPU with native bf16 arithmetic (AVX-512 BF16 or AMX, read from ``/proc/cpuinfo``; emulated bf16 is slower than
fp32), fp16 on a CUDA GPU with tensor cores (stock nnU-Net's GPU arithmetic; on an H200 it was faster than bf16 and
nearer fp32), fp32 elsewhere. The choice and its reason go into the sidecar.
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
#: CPU flags (``/proc/cpuinfo``) of native 16-bit arithmetic: without them torch emulates that format, slower than
#: fp32 (bf16), or far slower (fp16: 195 s against 2.5 s in fp32 for the demo model on a phantom here).
NATIVE_FLAGS = {BF16: ("avx512_bf16", "amx_bf16"), FP16: ("avx512_fp16", "amx_fp16")}


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


def cpu_has_native(precision: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU does ``precision`` (bf16 or fp16) arithmetic natively (AVX-512 or AMX instructions for it);
    False where it cannot be read."""
    try:
        flags = set(cpuinfo.read_text(encoding="ascii", errors="replace").split())
    except OSError:
        return False
    return any(flag in flags for flag in NATIVE_FLAGS[precision])


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU does bf16 arithmetic natively (AVX-512 BF16 or AMX); False where it cannot be read."""
    return cpu_has_native(BF16, cpuinfo)


def emulation_warning(choice: PrecisionChoice, device: Any, cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """A one-line warning when a requested 16-bit precision is emulated on this CPU (slower than fp32), else None."""
    if device.type != "cpu" or choice.name not in NATIVE_FLAGS or cpu_has_native(choice.name, cpuinfo):
        return None
    return (f"{choice.name} is emulated on this CPU (no {' or '.join(NATIVE_FLAGS[choice.name])}): slower than fp32"
            f"{' by far' if choice.name == FP16 else ''}; choose the precision auto or fp32")


def choose_precision(requested: str, device: Any, torch: Any) -> PrecisionChoice:
    """Resolve ``requested`` on ``device`` (a ``torch.device``); ``torch`` is the imported module."""
    requested = check_precision(requested)
    if requested != AUTO:
        return PrecisionChoice(requested, "requested")
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if major >= 7:  # tensor cores
            return PrecisionChoice(FP16, f"auto: this GPU (sm {major}.{minor}) has fp16 tensor cores; fp16 is stock "
                                         "nnU-Net's GPU arithmetic, measured faster than bf16 and nearer fp32")
        return PrecisionChoice(FP32, f"auto: this GPU (sm {major}.{minor}) has no tensor cores")
    if device.type == "cpu":
        if cpu_has_native_bf16():
            return PrecisionChoice(BF16, "auto: this CPU has native bf16 (AVX-512 BF16/AMX); fidelity gate passed "
                                         "on the CPU")
        return PrecisionChoice(FP32, "auto: this CPU has no native bf16 (emulated bf16 is slower than fp32)")
    return PrecisionChoice(FP32, f"auto: no 16-bit path measured on {device.type}")


def compute_dtype(choice: PrecisionChoice, torch: Any) -> Any:
    """The dtype autocast computes convolutions in for ``choice``: torch.bfloat16, torch.float16, or None (fp32)."""
    return {BF16: torch.bfloat16, FP16: torch.float16}.get(choice.name)


def autocast(choice: PrecisionChoice, device: Any, torch: Any) -> Any:
    """The context the network runs under: torch's autocast to bf16/fp16, nothing for fp32 (autocast explicitly
    off on CUDA, where nnU-Net would otherwise switch it on)."""
    if choice.name == FP32:
        return torch.autocast(device.type, enabled=False) if device.type == "cuda" else contextlib.nullcontext()
    try:
        return torch.autocast(device.type, dtype=compute_dtype(choice, torch))
    except (RuntimeError, ValueError) as error:  # e.g. bf16 on a GPU without it, a device autocast does not know
        raise InputError(None, f"precision {choice.name} is not available on {device.type} here ({error}); use "
                               "--precision fp32 or auto") from None
