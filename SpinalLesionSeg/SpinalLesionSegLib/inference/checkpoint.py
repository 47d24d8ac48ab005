"""Load nnU-Net checkpoints without ever running code from them.

A ``.pth`` file is a pickle, and unpickling can run arbitrary code. We load with ``torch.load(weights_only=True)``,
which only rebuilds tensors and plain containers, and allow exactly the extra types that nnU-Net's trainer stores
(numpy scalars, dtypes and small arrays in its training log; ``torch.device`` in its init arguments). A checkpoint
that asks for anything else (a crafted file that would call ``os.system`` on load) is refused with a clear error.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

#: Keys an nnU-Net v2 checkpoint must have for inference.
REQUIRED_KEYS = ("network_weights",)


def _allowed_globals() -> list[Any]:
    """Types nnU-Net checkpoints legitimately contain, under both numpy 1.x and 2.x pickle names."""
    import numpy as np

    core = np._core.multiarray  # numpy >= 2
    allowed: list[Any] = [np.dtype, np.ndarray, core.scalar, core._reconstruct]
    # Checkpoints pickled under numpy 1.x name these "numpy.core.multiarray.*".
    allowed += [(core.scalar, "numpy.core.multiarray.scalar"),
                (core._reconstruct, "numpy.core.multiarray._reconstruct")]
    for dtype_class in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType"):
        if hasattr(np.dtypes, dtype_class):
            allowed.append(getattr(np.dtypes, dtype_class))
    return allowed


def _blocked_global(message: str) -> str:
    """The line of torch's refusal that names the offending global (torch's advice to disable the check is dropped)."""
    for line in message.splitlines():
        if "GLOBAL" in line or "Unsupported" in line:
            return line.strip().rstrip(".")
    return "unsupported object"


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the checkpoint dictionary (on the CPU), refusing anything that is not plain nnU-Net data.

    Raises InputError naming the file for a missing or unreadable file, for a pickle that references code or types
    outside the allow-list, and for a checkpoint without ``network_weights``.
    """
    import pickle

    import torch

    p = Path(path)
    if not p.is_file():
        raise InputError(p, "checkpoint file not found")
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            checkpoint = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise InputError(
            p, "refused: the checkpoint contains objects that are not plain weights and could run code "
            f"({_blocked_global(str(error))}); it was not loaded"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise InputError(p, f"cannot be read as a PyTorch checkpoint ({str(error).splitlines()[0]})") from None
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in REQUIRED_KEYS):
        raise InputError(p, "is not an nnU-Net checkpoint (no 'network_weights')")
    return checkpoint


@dataclass
class FoldCheckpoints:
    """What inference needs from a model's fold checkpoints: every fold's network weights (in fold order), and the
    configuration name, test-time mirroring axes and trainer name that the first fold recorded (nnU-Net trains all
    folds of a model alike)."""

    parameters: list[dict[str, Any]]
    configuration: str | None
    mirroring_axes: Any
    trainer_name: str


def load_fold_checkpoints(paths: Iterable[str | os.PathLike[str]]) -> FoldCheckpoints:
    """Load each checkpoint with :func:`load_checkpoint` and keep only the weights and settings above: a
    checkpoint also holds the optimizer state, which inference does not need and would keep in memory."""
    parameters: list[dict[str, Any]] = []
    configuration = None
    mirroring_axes = None
    trainer_name = "unknown"
    for path in paths:
        checkpoint = load_checkpoint(path)
        if configuration is None:
            configuration = checkpoint.get("init_args", {}).get("configuration", "3d_fullres")
            mirroring_axes = checkpoint.get("inference_allowed_mirroring_axes")
            trainer_name = str(checkpoint.get("trainer_name", trainer_name))
        parameters.append(checkpoint["network_weights"])
    return FoldCheckpoints(parameters, configuration, mirroring_axes, trainer_name)
