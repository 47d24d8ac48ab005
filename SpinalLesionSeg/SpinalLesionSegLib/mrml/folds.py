"""The panel's folds: the *Folds* text ("0 1 2"; empty = every fold of the model) and the *Fast* preset.

*Fast* runs the model's first numbered fold alone when *Folds* is empty: about as many times faster as the model has
folds, and less accurate. Measured on the demo model (docs/performance.md): every painted lesion still found, lesion
Dice 0.45-0.58 against 0.68-0.73 with both folds; for the published models no single-fold figure is published, so
the loss is not known. Typed folds win over the preset.
"""

from __future__ import annotations

from ..errors import InputError
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


def parse_folds(text: str) -> list[int] | None:
    """Fold numbers from the panel's text ("0 1 2" or "0,1"); None (every fold) when empty."""
    if not text.strip():
        return None
    try:
        return [int(fold) for fold in text.replace(",", " ").split()]
    except ValueError:
        raise InputError(None, f"folds must be numbers such as '0 1 2', got {text!r}") from None
