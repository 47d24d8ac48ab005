"""Which sliding-window tiles run when inference is restricted to a region of interest (``--roi-tiles``, issue 17).

* ``exact`` (default): nnU-Net's own whole-image tile grid, keeping the tiles that overlap the ROI. Every voxel
  inside the ROI gets the tiles, Gaussian weights and sums it gets in a whole-image run, so its values are exactly
  the whole-image ones; the ROI saves only the tiles that miss it.
* ``centred``: a tile grid laid over the ROI itself. The ROI is grown to at least one patch on every axis (context
  the network sees around it), centred on it, shifted to stay inside the image, and tiled with nnU-Net's step rule:
  one tile centred on the ROI when the ROI fits in one patch. Fewer tiles, so faster: a ``lesion_ms`` patch
  (192 mm) holds a cord ROI of a typical image, which the whole-image grid covers with two tiles. Values inside the
  ROI differ from a whole-image run where a voxel's tiles differ (measured in docs/performance.md).

Windows and tiles are in the voxel coordinates of the padded array the sliding window runs on (spatial axes only).
nnunetv2 is imported inside the functions: its step rule is reused, never copied.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..defaults import ROI_TILES_CHOICES
from ..errors import InputError

EXACT, CENTRED = ROI_TILES_CHOICES
#: One sliding-window tile as nnunetv2 writes it: ``(slice(None), slice, slice, slice)`` (all channels first); a 2D
#: model's names its slice by number: ``(slice(None), k, slice, slice)``.
Tile = tuple[slice | int, ...]


@dataclass(frozen=True)
class TileChoice:
    """The tiles of one prediction and how they were chosen, as the sidecar records them (``tiles``)."""

    requested: str
    used: str
    reason: str
    tiles: int
    whole_image_tiles: int

    def record(self) -> dict[str, object]:
        return {"requested": self.requested, "used": self.used, "reason": self.reason, "tiles": self.tiles,
                "whole_image_tiles": self.whole_image_tiles}


def check_roi_tiles(value: str) -> str:
    """``value`` when it is one of :data:`..defaults.ROI_TILES_CHOICES`; InputError (one line) otherwise."""
    if value not in ROI_TILES_CHOICES:
        raise InputError(None, f"unknown ROI tiling {value!r}; choose one of {', '.join(ROI_TILES_CHOICES)}")
    return value


def roi_window(block: tuple[Sequence[int], Sequence[int]], properties: Mapping[str, Any],
               preprocessed_shape: Sequence[int], transpose_forward: Sequence[int]) -> tuple[slice, ...]:
    """The ROI's voxel ``block`` (start, size in (i, j, k) of the model-space image) in nnU-Net's preprocessed
    voxel space: transposed as the plans say, shifted by nnU-Net's non-zero crop (``properties``) and scaled by its
    resampling, grown by a voxel on each side so that rounding never cuts the ROI."""
    start = np.array(block[0][::-1], float)  # (z, y, x) of the model-space array
    stop = start + np.array(block[1][::-1], float)
    order = list(transpose_forward)
    start, stop = start[order], stop[order]
    bbox = np.array(properties["bbox_used_for_cropping"], float)
    cropped_shape = np.array(properties["shape_after_cropping_and_before_resampling"], float)
    scale = np.array(preprocessed_shape, float) / cropped_shape
    low = np.clip(np.floor((start - bbox[:, 0]) * scale) - 1, 0, preprocessed_shape)
    high = np.clip(np.ceil((stop - bbox[:, 0]) * scale) + 1, 0, preprocessed_shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


def overlaps(tile: Tile, window: Sequence[slice]) -> bool:
    """Whether a tile and a window share at least one voxel on every axis (a 2D model's tile names its slice by
    number: ``(slice(None), k, slice, slice)``)."""
    axes = [slice(t, t + 1) if isinstance(t, int) else t for t in tile[1:]]
    return all(t.start < w.stop and w.start < t.stop for t, w in zip(axes, window))


def centred_tiles(window: Sequence[slice], patch: Sequence[int], shape: Sequence[int], step: float) -> list[Tile]:
    """nnU-Net's tile grid over the window grown to at least ``patch`` voxels per axis around its centre and kept
    inside ``shape`` (the padded array, never smaller than the patch): one tile when the window fits in a patch."""
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    starts, sizes = [], []
    for w, p, n in zip(window, patch, shape):
        size = min(max(w.stop - w.start, p), n)
        start = (w.start + w.stop - size) // 2
        starts.append(min(max(start, 0), n - size))
        sizes.append(size)
    steps = compute_steps_for_sliding_window(sizes, patch, step)
    grid = [[start + s for s in axis] for start, axis in zip(starts, steps)]
    return [(slice(None), *(slice(s, s + p) for s, p in zip(corner, patch))) for corner in itertools.product(*grid)]


def choose_tiles(requested: str, whole_image: list[Tile], window: Sequence[slice] | None, patch: Sequence[int],
                 shape: Sequence[int], step: float) -> tuple[list[Tile], TileChoice]:
    """The tiles to run and the record of the choice. Without a window: the whole input's grid. A 2D model (patch
    shorter than the image's axes) always uses the exact rule: its tiles are slices of the whole image."""
    requested = check_roi_tiles(requested)
    if window is None:
        return whole_image, TileChoice(requested, "whole input", "no region of interest, or a crop-trained model's "
                                       "input is the ROI crop itself", len(whole_image), len(whole_image))
    if requested == CENTRED and len(patch) == len(shape):
        tiles, used, reason = centred_tiles(window, patch, shape, step), CENTRED, "requested"
    else:
        tiles = [tile for tile in whole_image if overlaps(tile, window)]
        used = EXACT
        reason = "requested" if requested == EXACT else "a 2D model's tiles are slices of the whole image"
    return tiles, TileChoice(requested, used, reason, len(tiles), len(whole_image))

