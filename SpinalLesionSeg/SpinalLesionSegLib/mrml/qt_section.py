"""What the panel's code-built sections share (Slicer's PythonQt ``qt``; imported only through them): buttons in a
form, a status line that turns red for an error, and running an action under a wait cursor with input errors shown
in the section (one line) and bugs in Slicer's error dialog.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import qt
import slicer

from ..errors import InputError

#: The status line's style for an error: a red that reads on Slicer's light and dark themes.
ERROR_STYLE = "color: #c0392b"


class PanelSection:
    """Base of the dataset, follow-up and DICOM sections; a subclass sets ``self.statusLabel`` (a QLabel)."""

    statusLabel: Any

    @staticmethod
    def _button(form: qt.QFormLayout, text: str, handler: Callable[[], Any], tip: str) -> qt.QPushButton:
        button = qt.QPushButton(text)
        button.toolTip = tip
        button.connect("clicked(bool)", handler)
        form.addRow(button)
        return button

    @staticmethod
    def _selector(form: qt.QFormLayout, label: str, node_types: list[str], tip: str) -> Any:
        """A node selector (none allowed, no add or remove) on Slicer's scene, as a form row."""
        selector = slicer.qMRMLNodeComboBox()
        selector.nodeTypes = node_types
        selector.showChildNodeTypes = False  # no label maps among the volumes
        selector.noneEnabled = True
        selector.addEnabled = False
        selector.removeEnabled = False
        selector.setMRMLScene(slicer.mrmlScene)
        selector.toolTip = tip
        form.addRow(label, selector)
        return selector

    def _attempt(self, action: Callable[[], None], failure: str) -> bool:
        """Run ``action`` under a wait cursor: True when done; False after an InputError (shown in the section);
        a bug is shown in Slicer's error dialog with ``failure`` and raised on."""
        with slicer.util.tryWithErrorDisplay(failure, waitCursor=True):
            try:
                action()
            except InputError as error:
                self._say(str(error), error=True)
                return False
        return True

    def _say(self, text: str, error: bool = False) -> None:
        self.statusLabel.text = text
        self.statusLabel.styleSheet = ERROR_STYLE if error else ""
