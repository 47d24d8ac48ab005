"""The panel's "Find levels (TotalSpineSeg)" button (Slicer's PythonQt ``qt``; imported only by the module file).

A button and a status line under the Levels selector of "Levels and statistics". What happens is
:class:`.panel.PanelLogic`'s (tested headless): :meth:`~.panel.PanelLogic.start_levels` writes the input volume to
a NIfTI file and runs ``spinal-lesion-seg levels`` in the background with the worker's interpreter; a timer polls
it (never blocking the GUI; the last line it printed is the status); :meth:`~.panel.PanelLogic.load_levels` loads
the levels map and disc points it names and selects one as the levels node. Clicking again while it runs cancels
it. A missing TotalSpineSeg or missing weights is the command's one line, in red in the status line.

Built in code rather than in the .ui, so the module file binds it in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import qt
from slicer.i18n import tr as _

from .. import defaults
from .qt_section import PanelSection
from .review_steps import Parameters


class LevelsRow(PanelSection):
    """The button and its status line, inserted into ``section`` (the "Levels and statistics" section, a form
    whose first row is the Levels selector) right under that selector. ``parameters`` returns the panel's parameter
    node (None while the module is not shown); ``logic`` is the panel's logic."""

    def __init__(self, section: qt.QWidget, parameters: Callable[[], Parameters | None], logic: Any) -> None:
        self.parameters, self.logic = parameters, logic
        self.command: Any = None
        self.output: list[str] = []
        self.button = qt.QPushButton(_("Find levels (TotalSpineSeg)"))
        self.button.toolTip = _(
            "Run TotalSpineSeg on the input volume in the background (the same volume again: a second, from its "
            "cache) and use its vertebrae and discs as the levels. Needs "
            "TotalSpineSeg and its weights in the worker's Python (Advanced > Python); click again to cancel.")
        self.button.connect("clicked(bool)", self.onClicked)
        self.statusLabel = qt.QLabel()
        self.statusLabel.wordWrap = True
        form = section.layout()
        form.insertRow(1, self.button)
        form.insertRow(2, self.statusLabel)
        self.timer = qt.QTimer()
        self.timer.setInterval(defaults.POLL_INTERVAL_MS)
        self.timer.connect("timeout()", self.onPoll)

    def onClicked(self) -> None:
        if self.command is not None:
            self.command.cancel()
            self._stop()
            self._say(_("Cancelled."))
            return
        p = self.parameters()
        if p is None:
            return

        def start() -> None:
            self.command, self.output = self.logic.start_levels(p), []
            self.button.text = _("Cancel finding levels")
            self._say(_("Finding the levels with TotalSpineSeg..."))
            self.timer.start()

        self._attempt(start, _("Starting TotalSpineSeg failed."))

    def onPoll(self) -> None:
        lines, code = self.command.poll()
        self.output += lines
        if code is None:
            if lines and lines[-1].strip():
                self._say(lines[-1].strip()[-160:])
            return
        self._stop()
        p = self.parameters()
        if p is not None:
            self._attempt(lambda: self._say(self.logic.load_levels(p, code, self.output)),
                          _("Loading the levels failed."))

    def _stop(self) -> None:
        self.timer.stop()
        self.command = None
        self.button.text = _("Find levels (TotalSpineSeg)")
