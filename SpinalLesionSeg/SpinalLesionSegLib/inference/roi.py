"""Regions of interest: run inference on a box around the spinal cord only.

A box is stored in physical RAS millimetres (two opposite corners), so it means the same thing whatever the voxel
orientation of the image it is applied to (the model's reoriented copy, or the input itself). On a given image it
becomes the smallest voxel block that contains it, clipped to the image.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..geometry import ijk_to_ras_matrix, voxel_to_ras


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in RAS mm: ``ras_min`` <= position <= ``ras_max`` on each axis."""

    ras_min: tuple[float, float, float]
    ras_max: tuple[float, float, float]
    source: str = "box"

    def as_dict(self) -> dict[str, object]:
        return {"ras_min_mm": list(self.ras_min), "ras_max_mm": list(self.ras_max), "source": self.source}


def box_from_corners(a: Sequence[float], b: Sequence[float], source: str = "box") -> Box:
    """A box from two opposite corners in RAS mm (any order)."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return Box(tuple(lo.tolist()), tuple(hi.tolist()), source)  # type: ignore[arg-type]


def box_from_mask(mask: sitk.Image, margin_mm: float | Sequence[float], source: str = "cord mask") -> Box:
    """The physical bounding box of a mask's non-zero voxels (voxel extents included), grown by ``margin_mm``:
    one value for every side, three for the R-L, A-P and S-I axes, or six for the low and high side of each axis
    in RAS (left, right, posterior, anterior, inferior, superior). Raises InputError for an empty mask."""
    array = sitk.GetArrayViewFromImage(mask)
    kji = np.argwhere(array > 0)
    if kji.size == 0:
        raise InputError(source, "the mask used for the region of interest is empty")
    lo, hi = kji.min(axis=0)[::-1], kji.max(axis=0)[::-1]
    corners = np.array([[c[0], c[1], c[2]] for c in itertools.product(*zip(lo - 0.5, hi + 0.5))])
    ras = voxel_to_ras(ijk_to_ras_matrix(mask), corners)
    margin = np.asarray(margin_mm, float).ravel()
    if margin.size == 6:
        low, high = margin[0::2], margin[1::2]
    else:
        low = high = np.broadcast_to(margin, (3,))
    if np.any(margin < 0):
        raise InputError(source, f"the region-of-interest margin must be >= 0 mm, got {margin.tolist()}")
    return box_from_corners(ras.min(axis=0) - low, ras.max(axis=0) + high, source)


def crop_margins_mm(crop_metadata: Mapping[str, float]) -> tuple[float, ...]:
    """The six margins (mm; left, right, posterior, anterior, inferior, superior, as :func:`box_from_mask`
    takes them) of a model's ``crop_metadata.json`` (``pad_left`` ... ``pad_superior``), so that a cord mask gives
    the crop the model was trained on."""
    sides = ("left", "right", "posterior", "anterior", "inferior", "superior")
    try:
        return tuple(float(crop_metadata[f"pad_{side}"]) for side in sides)
    except (KeyError, TypeError, ValueError):
        raise InputError("crop_metadata.json", f"needs numeric pad_{'/'.join(sides)} margins (mm)") from None


def index_block(image: sitk.Image, box: Box) -> tuple[list[int], list[int]]:
    """(start, size) of the smallest voxel block of ``image`` covering ``box``, clipped to the image."""
    inverse = np.linalg.inv(ijk_to_ras_matrix(image))
    corners = np.array(list(itertools.product(*zip(box.ras_min, box.ras_max))))
    ijk = corners @ inverse[:3, :3].T + inverse[:3, 3]
    start = np.maximum(np.floor(ijk.min(axis=0) + 0.5).astype(int), 0)
    stop = np.minimum(np.ceil(ijk.max(axis=0) - 0.5).astype(int) + 1, image.GetSize())
    if np.any(stop <= start):
        raise InputError(box.source, "the region of interest does not overlap the image")
    return start.tolist(), (stop - start).tolist()


def roi_mask(image: sitk.Image, box: Box) -> np.ndarray:
    """Boolean ``[k, j, i]`` array of ``image``'s grid: True on the voxel block covering ``box``."""
    (i0, j0, k0), (ni, nj, nk) = index_block(image, box)
    mask = np.zeros(tuple(reversed(image.GetSize())), bool)
    mask[k0:k0 + nk, j0:j0 + nj, i0:i0 + ni] = True
    return mask
