"""The fold checkpoints of a model, as inference needs them: weights per fold and the settings of the first.

Every checkpoint is loaded with :func:`..models.safe_checkpoint.load_checkpoint` (``torch.load(weights_only=True)``
and an allow-list: no code in a checkpoint ever runs), the loader the installer also uses to refuse a bad model.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..models.safe_checkpoint import checkpoint_configuration, load_checkpoint

__all__ = ["FoldCheckpoints", "checkpoint_configuration", "load_checkpoint", "load_fold_checkpoints"]


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
            configuration = checkpoint_configuration(checkpoint, path)
            mirroring_axes = checkpoint.get("inference_allowed_mirroring_axes")
            trainer_name = str(checkpoint.get("trainer_name", trainer_name))
        parameters.append(checkpoint["network_weights"])
    return FoldCheckpoints(parameters, configuration, mirroring_axes, trainer_name)
