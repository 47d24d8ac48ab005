"""What :meth:`.predictor.LoadedModel.predict` returns, and the progress callback it reports to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import SimpleITK as sitk

from .compiled import CompileChoice
from .precision import PrecisionChoice
from .roi import Box
from .tiles import TileChoice

__all__ = ["Prediction", "Progress"]

#: Called with a stage name and the fraction of the job done (0-1).
Progress = Callable[[str, float], None]


@dataclass
class Prediction:
    """Outputs for one input image, all on the input's grid.

    soft   -- float32 mean lesion probability over folds, in [0, 1] (None for a cord-only model);
    binary -- uint8 0/1 lesion mask from the ensemble rule (None for a cord-only model);
    cord   -- uint8 0/1 spinal cord mask (region-based and cord-only models), else None;
    roi    -- the box inference ran on (None for the whole image);
    timings_s -- seconds per stage;
    cord_soft -- float32 mean cord probability over folds (models with a cord output), else None;
    precision -- the network's arithmetic and why (:mod:`.precision`);
    tiles -- the sliding-window tiles run and how they were chosen (:mod:`.tiles`);
    compiled -- whether the network ran through torch.compile (:mod:`.compiled`).
    """

    soft: sitk.Image | None
    binary: sitk.Image | None
    cord: sitk.Image | None
    roi: Box | None
    timings_s: dict[str, float] = field(default_factory=dict)
    cord_soft: sitk.Image | None = None
    precision: PrecisionChoice | None = None
    tiles: TileChoice | None = None
    compiled: CompileChoice | None = None
