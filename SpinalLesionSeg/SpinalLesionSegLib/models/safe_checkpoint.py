"""Load nnU-Net checkpoints without ever running code from them.

A ``.pth`` file is a pickle, and unpickling can run arbitrary code. We load with ``torch.load(weights_only=True)``,
which only rebuilds tensors and plain containers, and allow exactly the extra types that nnU-Net's trainer stores
(numpy scalars, dtypes and small arrays in its training log; ``torch.device`` in its init arguments). A checkpoint
that asks for anything else (a crafted file that would call ``os.system`` on load) is refused with a clear error.

This lives with the models (not with inference) because the installer loads every checkpoint this way before a
model is published, so that a bad one is refused at install; the predictor (:mod:`..inference.checkpoint`) loads
them the same way.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from ..errors import InputError

#: Keys an nnU-Net v2 checkpoint must have for inference.
REQUIRED_KEYS = ("network_weights",)
#: The configuration nnU-Net assumes when a checkpoint's ``init_args`` do not name one.
DEFAULT_CONFIGURATION = "3d_fullres"


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


def _load(torch: Any, path: Path) -> Any:
    """``torch.load`` memory-mapped where it can (zip checkpoints, every nnU-Net v2 one: only the tensors used are
    read, never the optimizer state), else plainly (legacy files; file systems that cannot map files)."""
    if zipfile.is_zipfile(path):
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            pass
    return torch.load(path, map_location="cpu", weights_only=True)


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
            checkpoint = _load(torch, p)
    except pickle.UnpicklingError as error:
        detail = _blocked_global(str(error))
        if "global" not in detail.lower():  # not a forbidden object: bytes that are no pickle at all
            raise InputError(p, f"cannot be read as a PyTorch checkpoint ({detail})") from None
        raise InputError(
            p, "refused: the checkpoint contains objects that are not plain weights and could run code "
            f"({detail}); it was not loaded"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise InputError(p, f"cannot be read as a PyTorch checkpoint ({str(error).splitlines()[0]})") from None
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in REQUIRED_KEYS):
        raise InputError(p, "is not an nnU-Net checkpoint (no 'network_weights')")
    weights = checkpoint["network_weights"]
    if not isinstance(weights, dict) or not all(isinstance(key, str) and isinstance(value, torch.Tensor)
                                                for key, value in weights.items()):
        raise InputError(p, "is not an nnU-Net checkpoint ('network_weights' is not a set of named tensors)")
    return checkpoint


def checkpoint_configuration(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> str:
    """The plans configuration a checkpoint was trained with (``init_args.configuration``; nnU-Net's default
    ``3d_fullres`` when it does not say). The values are checked, because a checkpoint is user data too: an
    ``init_args`` that is not an object would otherwise fail later with a traceback."""
    init_args = checkpoint.get("init_args", {})
    configuration = init_args.get("configuration", DEFAULT_CONFIGURATION) if isinstance(init_args, dict) else None
    if not isinstance(configuration, str) or not configuration:
        raise InputError(path, "is not an nnU-Net checkpoint (init_args.configuration is not a configuration name)")
    return configuration


def check_checkpoint(path: str | os.PathLike[str]) -> str:
    """Load a checkpoint safely to prove it is plain nnU-Net data, at install time rather than at the first
    prediction; return its configuration name. Raises InputError naming the file otherwise."""
    return checkpoint_configuration(load_checkpoint(path), path)
