"""Check the values of a model's ``dataset.json`` and ``plans.json`` before the model is installed or used.

nnU-Net reads these files without checking them: a patch size of 100 000 voxels, ten thousand input channels or
labels, a zero spacing or a configuration that does not exist install fine and then fail at the first
prediction, deep inside nnU-Net or torch (a traceback, or tens of gigabytes allocated before anything fails).
These checks run at install (and again whenever a model is resolved) so that such a model is refused at once
with a message naming the file and the value. The bounds are generous: the published spinal cord models use
patches of about 100-200 voxels per axis, one input channel and two or three labels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError

#: Where plans.json may name network classes and their building blocks from (checked here at install, and again by
#: :mod:`..inference.network` before it imports anything).
ALLOWED_NETWORK_PREFIX = "dynamic_network_architectures.architectures."
ALLOWED_BLOCK_PREFIX = "torch.nn."
#: This project's own network classes, allowed by their exact dotted names only (never a prefix: nothing else in
#: the package may be named by a plans file).
PROJECT_NETWORKS = frozenset({"SpinalLesionSegLib.inference.imputation_net.MeanImputationUNet"})
#: Most input channels (images per case) a model may take.
MAX_CHANNELS = 16
#: Most labels (or regions) a model may predict; each costs a probability map the size of the image.
MAX_LABELS = 64
#: Largest label value.
MAX_LABEL_VALUE = 1023
#: Largest patch edge in voxels, and largest patch (voxels): 256 x 256 x 256.
MAX_PATCH_EDGE = 1024
MAX_PATCH_VOXELS = 256 ** 3
#: Voxel spacing bounds in mm (a tiny spacing makes the resampled image enormous).
SPACING_MM = (0.01, 100.0)
#: Most configurations in a plans file, network stages, features per stage, and kernel size or stride.
MAX_CONFIGURATIONS = 32
MAX_STAGES = 16
MAX_FEATURES = 4096
MAX_KERNEL = 16


def class_path_problem(path: Any, allowed_prefix: str, exact: frozenset[str] = frozenset()) -> str:
    """Why the dotted class path ``path`` may not be imported ("" when it may): it must be a plain dotted name
    under ``allowed_prefix``, or one of the ``exact`` names. Checked without importing anything, so the installer
    refuses such plans too."""
    if path in exact:
        return ""
    if not isinstance(path, str) or not path.startswith(allowed_prefix) \
            or not all(part.isidentifier() for part in path.split(".")):
        return f"refused: plans name the class {path!r}, outside {allowed_prefix}*"
    return ""


def _show(value: Any) -> str:
    """A value for an error message, clipped so that a huge list stays one readable line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _whole(value: Any, low: int, high: int) -> bool:
    """True for an int (not a bool) in ``low..high``."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _fail(file: Path, where: str, expected: str, value: Any) -> InputError:
    return InputError(file, f"{where} must be {expected}, got {_show(value)}")


def check_dataset(dataset: Mapping[str, Any], file: Path) -> None:
    """Refuse a dataset.json whose channels or labels nnU-Net could not use, or would use to exhaust memory."""
    channels = dataset.get("channel_names", dataset.get("modality"))
    if not isinstance(channels, Mapping) or not 1 <= len(channels) <= MAX_CHANNELS:
        raise _fail(file, "channel_names", f"an object of 1 to {MAX_CHANNELS} input channels", channels)
    if sorted(channels) != sorted(str(index) for index in range(len(channels))):
        raise _fail(file, "channel_names", "numbered \"0\", \"1\", ... without gaps", list(channels))
    if not all(isinstance(name, str) for name in channels.values()):
        raise _fail(file, "channel_names", "names (strings)", list(channels.values()))
    labels = dataset.get("labels")
    if not isinstance(labels, Mapping) or not 2 <= len(labels) <= MAX_LABELS:
        raise _fail(file, "labels", f"an object of 2 to {MAX_LABELS} labels (background included)", labels)
    if labels.get("background") != 0:
        raise _fail(file, "labels.background", "0 (nnU-Net requires it)", labels.get("background"))
    for name, value in labels.items():
        values = value if isinstance(value, list) else [value]
        if not values or len(values) > MAX_LABELS or not all(_whole(v, 0, MAX_LABEL_VALUE) for v in values):
            raise _fail(file, f"labels.{name}", f"a label value (0..{MAX_LABEL_VALUE}) or a list of them", value)
    order = dataset.get("regions_class_order")
    if order is not None and not (isinstance(order, list) and len(order) <= MAX_LABELS
                                  and all(_whole(v, 1, MAX_LABEL_VALUE) for v in order)):
        raise _fail(file, "regions_class_order", f"a list of at most {MAX_LABELS} label values", order)


def _resolved_configuration(configurations: Mapping[str, Any], name: str, file: Path) -> dict[str, Any]:
    """A configuration with what it ``inherits_from`` filled in (as nnU-Net does); InputError for a loop."""
    chain = [name]
    while "inherits_from" in configurations[chain[-1]]:
        parent = configurations[chain[-1]]["inherits_from"]
        if not isinstance(parent, str) or parent not in configurations or parent in chain:
            raise _fail(file, f"configurations.{chain[-1]}.inherits_from", "another configuration (no loop)", parent)
        chain.append(parent)
    resolved: dict[str, Any] = {}
    for link in reversed(chain):
        resolved.update(configurations[link])
    return resolved


def _check_geometry(configuration: Mapping[str, Any], where: str, file: Path) -> None:
    """Patch size and spacing: 2 or 3 values each, within the bounds above."""
    patch = configuration.get("patch_size")
    if patch is not None and not (isinstance(patch, list) and len(patch) in (2, 3)
                                  and all(_whole(v, 1, MAX_PATCH_EDGE) for v in patch)
                                  and math.prod(patch) <= MAX_PATCH_VOXELS):
        raise _fail(file, f"{where}.patch_size", f"2 or 3 whole numbers of 1..{MAX_PATCH_EDGE} voxels, at most "
                                                f"{MAX_PATCH_VOXELS} voxels in all", patch)
    spacing = configuration.get("spacing")
    low, high = SPACING_MM
    if spacing is not None and not (isinstance(spacing, list) and len(spacing) in (2, 3) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and low <= v <= high
            for v in spacing)):
        raise _fail(file, f"{where}.spacing", f"2 or 3 voxel sizes of {low}..{high} mm", spacing)


def _check_sizes(kwargs: Mapping[str, Any], where: str, file: Path) -> None:
    """Stage count, features per stage, kernel sizes and strides of the network arguments, when present."""
    if "n_stages" in kwargs and not _whole(kwargs["n_stages"], 1, MAX_STAGES):
        raise _fail(file, f"{where}.n_stages", f"1..{MAX_STAGES}", kwargs["n_stages"])
    features = kwargs.get("features_per_stage")
    if features is not None and not all(_whole(v, 1, MAX_FEATURES) for v in
                                        (features if isinstance(features, list) else [features])):
        raise _fail(file, f"{where}.features_per_stage", f"whole numbers of 1..{MAX_FEATURES}", features)
    for key in ("kernel_sizes", "strides"):
        value = kwargs.get(key)
        flat = [v for item in value for v in (item if isinstance(item, list) else [item])] \
            if isinstance(value, list) else [value]
        if value is not None and not (len(value) <= MAX_STAGES and all(_whole(v, 1, MAX_KERNEL) for v in flat)):
            raise _fail(file, f"{where}.{key}", f"at most {MAX_STAGES} sizes of 1..{MAX_KERNEL}", value)


def _check_architecture(configuration: Mapping[str, Any], where: str, file: Path) -> None:
    """The network class and its building blocks come from the allowed packages; its sizes are sane."""
    architecture = configuration.get("architecture")
    if architecture is None:
        return  # old plans format: nnunetv2 maps it onto one of its two own networks
    if not isinstance(architecture, Mapping) or not isinstance(architecture.get("arch_kwargs"), Mapping):
        raise _fail(file, f"{where}.architecture", "an object with arch_kwargs", architecture)
    problem = class_path_problem(architecture.get("network_class_name"), ALLOWED_NETWORK_PREFIX, PROJECT_NETWORKS)
    if problem:
        raise InputError(file, f"{where}.architecture.network_class_name: {problem}")
    kwargs = architecture["arch_kwargs"]
    imports = architecture.get("_kw_requires_import", [])
    if not isinstance(imports, list) or not all(isinstance(key, str) for key in imports):
        raise _fail(file, f"{where}.architecture._kw_requires_import", "a list of argument names", imports)
    for key in imports:
        problem = class_path_problem(kwargs.get(key), ALLOWED_BLOCK_PREFIX) if kwargs.get(key) is not None else ""
        if problem:
            raise InputError(file, f"{where}.architecture.arch_kwargs.{key}: {problem}")
    _check_sizes(kwargs, f"{where}.architecture.arch_kwargs", file)


def check_plans(plans: Mapping[str, Any], file: Path) -> None:
    """Refuse a plans.json whose configurations nnU-Net could not use, or would use to exhaust memory."""
    configurations = plans.get("configurations")
    if not isinstance(configurations, Mapping) or not 1 <= len(configurations) <= MAX_CONFIGURATIONS \
            or not all(isinstance(value, Mapping) for value in configurations.values()):
        raise _fail(file, "configurations", f"an object of 1 to {MAX_CONFIGURATIONS} configurations", configurations)
    for name in configurations:
        configuration = _resolved_configuration(configurations, name, file)
        _check_geometry(configuration, f"configurations.{name}", file)
        _check_architecture(configuration, f"configurations.{name}", file)


def check_configuration(plans: Mapping[str, Any], name: str, file: Path) -> None:
    """The configuration the checkpoints were trained with exists in the plans and has a patch size."""
    configurations = plans["configurations"]
    if name not in configurations:
        raise InputError(file, f"has no configuration {name!r}, which the checkpoints were trained with (it has "
                               f"{', '.join(map(repr, configurations))})")
    if "patch_size" not in _resolved_configuration(configurations, name, file):
        raise InputError(file, f"configuration {name!r} has no patch_size")
