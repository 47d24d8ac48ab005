"""The panel's *Fast* preset and *Folds* text (mrml/folds.py, issue 17 point 2): the first fold of the installed
model when no folds are typed; typed folds win; an unknown model is left to the worker's one-line error."""

from __future__ import annotations

import pytest
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.mrml.folds import job_folds, parse_folds


def test_fast_takes_the_models_first_fold_unless_folds_are_typed() -> None:
    assert job_folds("", True, "demo") == [0]  # the bundled demo has folds 0 and 1
    assert job_folds("", True, "demo_multisequence") == [0]
    assert job_folds("", False, "demo") is None  # every fold
    assert job_folds("1", True, "demo") == [1] and job_folds("0, 1", False, "demo") == [0, 1]
    assert job_folds("", True, "no_such_model") is None


def test_folds_text_is_refused_in_one_line() -> None:
    assert parse_folds("  ") is None
    with pytest.raises(InputError, match="^folds must be numbers such as '0 1 2', got 'a b'$"):
        parse_folds("a b")
