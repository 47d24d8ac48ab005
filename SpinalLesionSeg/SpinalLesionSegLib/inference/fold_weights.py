"""Each fold's network weights, where a prediction needs them: all in device memory on a GPU, one at a time on the
CPU (issue 17: memory).

On a GPU every fold stays resident, so a fold switch copies nothing (the network takes the fold's tensors with
``load_state_dict(assign=True)``). On the CPU only the fold that runs is in memory: the next fold is read from its
checkpoint when it is asked for (memory-mapped, so the optimizer state a checkpoint also holds is never read).
For the ``lesion_ms`` architecture a fold is 0.4 GB: five resident folds would add 1.6 GB to what one fold needs,
while reading one takes under a second against about 20 s of network time per 192^3 tile. Under bf16/fp16 the CPU
holds the fold's convolution weights in that dtype (:mod:`.lean_memory`): half the memory, the same values.

A fold read later must be the file that was loaded: each checkpoint's inode, size and modification time are kept
(taken before reading), a changed file is refused in one line, and the worker reloads a model whose files changed
(:meth:`changed`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError
from .checkpoint import convert_shared, load_checkpoint

Weights = dict[str, Any]
Convert = Callable[[str, Any], Any]


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """(inode, size in bytes, modification time in ns) of a file; None when it is gone. A file replaced by a rename
    (as the installer writes) has another inode even when its size and time are the same."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_ino, status.st_size, status.st_mtime_ns


def file_stamps(checkpoints: Mapping[int, Path]) -> dict[int, tuple[int, int, int] | None]:
    """Each fold's checkpoint stamp, taken before the checkpoints are read (a file replaced while they are read
    then counts as changed)."""
    return {fold: _stamp(path) for fold, path in checkpoints.items()}


class FoldWeights(Mapping[int, Weights]):
    """Fold number -> that fold's weights, converted by ``convert(name, tensor)`` (device and dtype) once per
    distinct tensor. ``stamps``: :func:`file_stamps` taken before loading; ``first`` is the first fold's weights,
    already loaded (its checkpoint gave the settings); ``others`` those of the other folds when ``resident``, else
    ignored (they are read when asked for). ``lowerable``: the names :meth:`weights` may hold in 16 bits."""

    def __init__(self, checkpoints: Mapping[int, Path], stamps: Mapping[int, tuple[int, int, int] | None],
                 first: Weights, others: list[Weights], convert: Convert, resident: bool,
                 lowerable: frozenset[str] = frozenset()) -> None:
        self.checkpoints = dict(checkpoints)
        self.convert = convert
        self.resident = resident
        self.stamps = dict(stamps)
        self.lowerable = lowerable
        folds = list(self.checkpoints)
        loaded = [first, *others] if resident else [first]
        self.held: dict[int, Weights] = {fold: convert_shared(w, convert) for fold, w in zip(folds, loaded)}
        self.held_lowered: dict[int, Any] = dict.fromkeys(self.held)  # fold -> the 16-bit dtype it is held in

    def __getitem__(self, fold: int) -> Weights:
        return self.weights(fold)

    def weights(self, fold: int, lowered: Any = None) -> Weights:
        """A fold's weights; on the CPU with ``lowered`` (the autocast dtype, or None) its ``lowerable`` tensors in
        that dtype. A GPU keeps every fold as converted at loading: lowering there would copy at every switch."""
        if fold in self.held and (self.resident or self.held_lowered[fold] == lowered):
            return self.held[fold]
        if fold in self.held and self.held_lowered[fold] is None:  # as loaded: lowered here as from its file
            source, copy = self.held.pop(fold), False
        else:
            source, copy = self._read(fold), True
        self.held.clear()  # one fold in memory on the CPU: the network still holds the previous one until it switches

        def convert(name: str, tensor: Any) -> Any:
            converted = self.convert(name, tensor)
            converted = converted.to(lowered) if lowered is not None and name in self.lowerable else converted
            mapped = copy and converted.untyped_storage().data_ptr() == tensor.untyped_storage().data_ptr()
            return converted.clone() if mapped else converted  # copied out of the memory-mapped file

        self.held = {fold: convert_shared(source, convert)}
        self.held_lowered = {fold: lowered}
        return self.held[fold]

    def _read(self, fold: int) -> Weights:
        """A fold's weights as its checkpoint holds them (memory-mapped), refused when the file changed."""
        path = self.checkpoints[fold]
        if _stamp(path) != self.stamps[fold]:
            raise InputError(path, "changed since the model was loaded; run the job again (the model is reloaded)")
        return load_checkpoint(path)["network_weights"]

    def __iter__(self) -> Iterator[int]:
        return iter(self.checkpoints)

    def __len__(self) -> int:
        return len(self.checkpoints)

    def changed(self) -> bool:
        """Whether a checkpoint file changed (or vanished) since the model was loaded."""
        return any(_stamp(path) != stamp for path, stamp in zip(self.checkpoints.values(), self.stamps.values()))
