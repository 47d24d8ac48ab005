"""The panel's folds: the *Folds* text ("0 1 2"; empty = every fold of the model) and the *Fast* preset.

*Fast* runs the model's first numbered fold alone when *Folds* is empty: about as many times faster as the model has
folds, and less accurate. Measured on the demo model (docs/performance.md): every painted lesion still found, lesion
Dice 0.45-0.58 against 0.68-0.73 with both folds; for the published models no single-fold figure is published, so
the loss is not known. Typed folds win over the preset. *Fast* also lays the tiles over the region of interest
(``centred``, :mod:`..inference.tiles`): one tile when the ROI fits in a patch, where the whole image's grid may
need two (``lesion_ms``) or more.
"""

from __future__ import annotations

from ..defaults import ROI_TILES
from ..errors import InputError
from ..inference.tiles import CENTRED
from ..models import registry
from ..models.layout import numbered_folds


def job_folds(text: str, fast: bool, model: str) -> list[int] | None:
    """The job's folds: those typed, else the first fold of ``model`` for the fast preset, else None (all)."""
    typed = parse_folds(text)
    if typed is not None or not fast:
        return typed
    try:
        folds = numbered_folds(registry.path(model))
    except InputError:  # not installed: the worker says so in one line
        return None
    return folds[:1] or None


def job_roi_tiles(fast: bool) -> str:
    """The job's ROI tiling: tiles centred on the ROI for the fast preset, else the exact whole-image tiles."""
    return CENTRED if fast else ROI_TILES


def parse_folds(text: str) -> list[int] | None:
    """Fold numbers from the panel's text ("0 1 2" or "0,1"); None (every fold) when empty."""
    if not text.strip():
        return None
    try:
        return [int(fold) for fold in text.replace(",", " ").split()]
    except ValueError:
        raise InputError(None, f"folds must be numbers such as '0 1 2', got {text!r}") from None
