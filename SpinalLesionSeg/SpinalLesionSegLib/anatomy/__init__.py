"""Anatomy from external tools: the cord, vertebrae and discs of a scan when the user has no labels of their own.

:mod:`.totalspineseg_tool` finds and runs TotalSpineSeg (a separate program: its own Python, its own weights),
:mod:`.totalspineseg_weights` installs its weights offline from release zips, and :mod:`.totalspineseg` caches its
outputs beside ours and turns them into a level source and a cord mask (``stats``/``report`` ``--levels auto``).
This package may import the base modules, :mod:`..models` and :mod:`..analysis`; it never imports torch: the
tool runs in its own process.
"""
