"""Small steps of the predictor (:mod:`.predictor`) that need neither torch nor nnunetv2: nnunetv2's prints kept off
stdout, an environment variable held off, stage timings, and a crop's outputs pasted back onto the full grid."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from collections.abc import Iterator

import numpy as np
import SimpleITK as sitk


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keep nnunetv2's prints off stdout (the worker's stdout carries JSON lines only) and off the user's terminal;
    they go to the predictor's logger at DEBUG level, for support."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        if buffer.getvalue().strip():
            logging.getLogger(__package__ + ".predictor").debug("nnunetv2: %s", buffer.getvalue().strip())


@contextlib.contextmanager
def without_environment(name: str) -> Iterator[None]:
    """Run the block with the environment variable ``name`` unset, then restore it."""
    value = os.environ.pop(name, None)
    try:
        yield
    finally:
        if value is not None:
            os.environ[name] = value


@contextlib.contextmanager
def timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Record the seconds the block takes as ``timings[key]`` (not when it raises)."""
    clock = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - clock


def paste(array: np.ndarray, block: tuple[list[int], list[int]], full: sitk.Image) -> np.ndarray:
    """A ``[k, j, i]`` array of the voxel block ``(start_ijk, size_ijk)`` placed in zeros on ``full``'s grid."""
    (i, j, k), (ni, nj, nk) = block
    canvas = np.zeros(tuple(reversed(full.GetSize())), array.dtype)
    canvas[k:k + nk, j:j + nj, i:i + ni] = array
    return canvas
