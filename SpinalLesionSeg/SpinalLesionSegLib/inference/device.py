"""Choose the torch device inside the worker, and say why.

The device is probed where inference runs (never by importing torch into Slicer's GUI process). A device the user
asked for by name that is not available is an error: silently falling back to the CPU would turn a 10-second job
into a 10-minute one without telling anyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..defaults import DEVICE, DEVICE_CHOICES
from ..errors import InputError


@dataclass(frozen=True)
class DeviceChoice:
    """The device to use (``torch.device``), its name, and a one-line reason shown to the user."""

    device: Any
    name: str
    reason: str


def _mps_available(torch: Any) -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def select_device(requested: str = DEVICE) -> DeviceChoice:
    """Resolve ``auto | cpu | cuda | mps`` (``cuda:N`` accepted) to an available device.

    Raises InputError when a named device is not available.
    """
    import torch

    requested = requested.lower()
    if requested == "auto":
        if torch.cuda.is_available():
            name = torch.cuda.get_device_name(0)
            return DeviceChoice(torch.device("cuda"), "cuda", f"auto: CUDA GPU found ({name})")
        if _mps_available(torch):
            return DeviceChoice(torch.device("mps"), "mps", "auto: Apple GPU (MPS) found, no CUDA GPU")
        return DeviceChoice(torch.device("cpu"), "cpu", "auto: no CUDA or MPS GPU found, using the CPU")
    if requested == "cpu":
        return DeviceChoice(torch.device("cpu"), "cpu", "requested")
    if requested == "cuda" or requested.startswith("cuda:"):
        if not torch.cuda.is_available():
            build = ("a CPU-only torch build" if torch.version.cuda is None
                     else f"torch built for CUDA {torch.version.cuda}")
            raise InputError(None, f"device {requested!r} requested but no CUDA GPU is usable here ({build}); "
                                   "use --device cpu or auto")
        index = int(requested.split(":", 1)[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise InputError(None, f"device {requested!r} requested but only {torch.cuda.device_count()} GPU(s) exist")
        return DeviceChoice(torch.device(requested), "cuda", f"requested ({torch.cuda.get_device_name(index)})")
    if requested == "mps":
        if not _mps_available(torch):
            raise InputError(None, "device 'mps' requested but Apple MPS is not available here; "
                                   "use --device cpu or auto")
        return DeviceChoice(torch.device("mps"), "mps", "requested")
    raise InputError(None, f"unknown device {requested!r}; choose one of {', '.join(DEVICE_CHOICES)}")
