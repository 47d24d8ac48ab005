"""Regions of interest: run inference on a box around the spinal cord only.

A box is stored in physical RAS millimetres (two opposite corners), so it means the same thing whatever the voxel
orientation of the image it is applied to (the model's reoriented copy, or the input itself). On a given image it
becomes the smallest voxel block that contains it, clipped to the image.

The ROI rule, used by the command line, the worker and the Slicer panel alike (:func:`case_roi`):

* a **cord mask** (``--roi-mask``, or a segmentation node picked in the panel, sent to the worker as a file) gives
  its bounding box grown by the model's crop margins when the model was trained on crops (``crop_metadata.json``
  pads, else the manifest's fixed margins, e.g. 30 x 30 x 5 mm for ``lesion_ms_mp2rage``), else by the user's
  margin (default :data:`..defaults.ROI_MARGIN_MM`);
* a **box** (a markups ROI in the panel, ``roi_box`` in a job) is used as given: the panel grows the ROI node's
  bounds by the user's margin with :func:`box_from_bounds`;
* **automatic** (``--roi auto``, ``roi_auto`` in a job): a cord stage (:mod:`.cord_stage`) finds the cord first,
  which then counts as the cord mask above.

A crop-trained cord-only model (``cord_contrast_agnostic``) given no ROI gets the box sc-crop detects, already
padded by the model's margins (:func:`box_from_block`), as SCT runs it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..geometry import ijk_to_ras_matrix, ras_to_voxel, voxel_to_ras


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


def box_from_block(image: sitk.Image, first_ijk: Sequence[int], last_ijk: Sequence[int], source: str) -> Box:
    """The box covering the voxels ``first_ijk`` to ``last_ijk`` (both included) of ``image``: on ``image`` (or
    any reorientation of it), :func:`index_block` gives back exactly that block (the corners sit 0.001 voxel
    inside the block's outer faces, so rounding never adds a neighbouring voxel)."""
    inset = 0.5 - 1e-3
    corners = np.array(list(itertools.product(*zip(np.subtract(first_ijk, inset), np.add(last_ijk, inset)))))
    ras = voxel_to_ras(ijk_to_ras_matrix(image), corners)
    return box_from_corners(ras.min(axis=0), ras.max(axis=0), source)


def box_from_bounds(bounds: Sequence[float], margin_mm: float, source: str = "ROI") -> Box:
    """A box from RAS bounds ``(r_min, r_max, a_min, a_max, s_min, s_max)`` (mm, as Slicer's ``GetRASBounds``
    gives them), grown by ``margin_mm`` on every side."""
    if margin_mm < 0:
        raise InputError(source, f"the region-of-interest margin must be >= 0 mm, got {margin_mm}")
    lo = np.asarray(bounds[0::2], float) - margin_mm
    hi = np.asarray(bounds[1::2], float) + margin_mm
    return box_from_corners(lo, hi, source)


def crop_margins_mm(crop_metadata: Mapping[str, float] | None,
                    fixed_margins_mm: Sequence[float] | None = None) -> tuple[float, ...] | None:
    """The six margins (mm; left, right, posterior, anterior, inferior, superior, as :func:`box_from_mask` takes
    them) a crop-trained model was trained with, so that a cord mask gives the crop it expects: the ``pad_left``
    ... ``pad_superior`` values of its ``crop_metadata.json``, else its manifest's fixed (R-L, A-P, I-S) margins;
    ``None`` for a model trained on whole images."""
    if crop_metadata:
        sides = ("left", "right", "posterior", "anterior", "inferior", "superior")
        try:
            return tuple(float(crop_metadata[f"pad_{side}"]) for side in sides)
        except (KeyError, TypeError, ValueError):
            raise InputError("crop_metadata.json", f"needs numeric pad_{'/'.join(sides)} margins (mm)") from None
    if fixed_margins_mm:
        return tuple(float(m) for m in fixed_margins_mm for _ in range(2))
    return None


def case_roi(*, mask: sitk.Image | None = None, box: Box | None = None, margin_mm: float,
             model_margins_mm: Sequence[float] | None = None, source: str = "cord mask") -> Box | None:
    """The region of interest of one prediction (the rule in the module docstring): a cord ``mask`` gives its
    bounding box plus the model's crop margins (``model_margins_mm``, six values) or else ``margin_mm``; otherwise
    ``box`` as given; ``None`` (the whole image) when neither is given."""
    if mask is not None:
        return box_from_mask(mask, model_margins_mm if model_margins_mm else margin_mm, source=source)
    return box


def index_block(image: sitk.Image, box: Box) -> tuple[list[int], list[int]]:
    """(start, size) of the smallest voxel block of ``image`` covering ``box``, clipped to the image."""
    corners = np.array(list(itertools.product(*zip(box.ras_min, box.ras_max))))
    ijk = ras_to_voxel(ijk_to_ras_matrix(image), corners)
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
