"""The fold checkpoints of a model, as inference needs them: weights per fold and the settings of the first.

Every checkpoint is loaded with :func:`..models.safe_checkpoint.load_checkpoint` (``torch.load(weights_only=True)``
and an allow-list: no code in a checkpoint ever runs), the loader the installer also uses to refuse a bad model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..models.safe_checkpoint import checkpoint_configuration, load_checkpoint

__all__ = ["FoldCheckpoints", "checkpoint_configuration", "convert_shared", "load_checkpoint",
           "load_fold_checkpoints"]


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
    checkpoint also holds the optimizer state, which inference does not need and never reads (memory-mapped)."""
    parameters: list[dict[str, Any]] = []
    configuration = None
    mirroring_axes = None
    trainer_name = "unknown"
    for path in paths:
        checkpoint = load_checkpoint(path)
        if configuration is None:
            configuration = checkpoint_configuration(checkpoint, path)
            mirroring_axes = checkpoint.get("inference_allowed_mirroring_axes")
            trainer_name = str(checkpoint.get("trainer_name", trainer_name))
        # copied out of the memory-mapped file, so the model's files can be replaced or removed while a worker
        # holds the weights (Windows refuses to replace a mapped file)
        parameters.append(convert_shared(checkpoint["network_weights"], lambda name, tensor: tensor.clone()))
        del checkpoint
    return FoldCheckpoints(parameters, configuration, mirroring_axes, trainer_name)


def convert_shared(weights: Mapping[str, Any], convert: Callable[[str, Any], Any]) -> dict[str, Any]:
    """``convert(name, tensor)`` applied to every tensor of a state dict once per distinct tensor: names that share
    one tensor keep sharing its converted copy. nnU-Net's networks list the encoder's weights twice (its decoder
    holds the encoder), so converting name by name would double a ResEnc-L fold (0.4 GB of weights, 1.5 GB listed)."""
    converted: dict[tuple[Any, ...], Any] = {}
    result = {}
    for name, tensor in weights.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride(),
               tensor.dtype, tensor.device)
        if key not in converted:
            converted[key] = convert(name, tensor)
        result[name] = converted[key]
    return result
