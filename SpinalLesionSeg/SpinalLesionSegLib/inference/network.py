"""Build an nnU-Net network from ``plans.json`` alone, without the trainer class and without trusting class names.

Published models name custom trainers (``lesion_ms`` uses ``nnUNetTrainerDiceCELoss_noSmooth_4000epochs_fromScratch``)
that stock nnunetv2 cannot find; SCT runs a ``trainer_class.py`` shipped inside the model zip to get around it. The
custom trainers only change training settings, so the network is fully described by the plans' ``architecture``
entry. ``plans.json`` names classes by dotted path, and nnunetv2 would import whatever it names; we only accept
network classes from ``dynamic_network_architectures`` (and this project's own, by exact name:
:data:`..models.model_values.PROJECT_NETWORKS`) and building blocks from ``torch.nn``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..models.model_values import (
    ALLOWED_BLOCK_PREFIX,
    ALLOWED_NETWORK_PREFIX,
    PROJECT_NETWORKS,
    class_path_problem,
)
from .lean_memory import return_freed_memory

__all__ = ["ALLOWED_BLOCK_PREFIX", "ALLOWED_NETWORK_PREFIX", "build_network", "load_weights"]


def _import_dotted(path: str, allowed_prefix: str, source: Path, exact: frozenset[str] = frozenset()) -> Any:
    """Import the class at the dotted ``path`` once :func:`class_path_problem` allows it."""
    problem = class_path_problem(path, allowed_prefix, exact)
    if problem:
        raise InputError(source, problem)
    module_name, _, attribute = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        raise InputError(source, f"plans name the class {path!r}, which this installation does not have") from None


def build_network(plans_manager: Any, configuration_manager: Any, num_input_channels: int,
                  num_output_channels: int, plans_path: Path) -> Any:
    """Instantiate the configuration's architecture (deep supervision off, as for inference).

    ``plans_path`` is only used to name the file in errors.
    """
    arch_class_name = configuration_manager.network_arch_class_name
    kwargs = dict(configuration_manager.network_arch_init_kwargs)
    for key in configuration_manager.network_arch_init_kwargs_req_import:
        if kwargs.get(key) is not None:
            kwargs[key] = _import_dotted(kwargs[key], ALLOWED_BLOCK_PREFIX, plans_path)
    network_class = _import_dotted(arch_class_name, ALLOWED_NETWORK_PREFIX, plans_path, PROJECT_NETWORKS)
    kwargs["deep_supervision"] = False
    try:
        return network_class(input_channels=num_input_channels, num_classes=num_output_channels, **kwargs)
    except TypeError as error:
        raise InputError(plans_path, f"architecture arguments do not fit {arch_class_name}: {error}") from None


def load_weights(network: Any, weights: dict[str, Any], checkpoint_path: Path) -> Any:
    """Make one fold's ``weights`` the network's own tensors (``assign``: no copy, so the network holds no second
    copy of them) and switch it to eval mode; return it. The fold it held before is freed, and the C heap gives
    that memory back to the system (:func:`.lean_memory.return_freed_memory`).

    Weights that do not fit the plans' architecture are an InputError naming ``checkpoint_path`` (torch's own error
    lists every mismatched tensor; its first line is kept).
    """
    try:
        network.load_state_dict(weights, assign=True)
    except RuntimeError as error:
        raise InputError(checkpoint_path, f"weights do not fit the architecture in plans.json "
                                          f"({str(error).splitlines()[0]})") from None
    return_freed_memory()
    network.eval()
    return network
