"""The panel's Qt dialogs for model installation (Slicer's PythonQt ``qt``; imported only by the module file).

Dialog objects, never ``QInputDialog.getItem``/``getText``: those return the current item or text when the user
presses Cancel, and PythonQt returns no ``ok`` flag, so Cancel would install the first model of the list.
"""

from __future__ import annotations

import qt
import slicer


def ask(title: str, label: str, items: list[str] | None = None) -> str:
    """The text typed, or the item chosen from ``items``; "" when the user cancels."""
    dialog = qt.QInputDialog(slicer.util.mainWindow())
    dialog.setWindowTitle(title)
    dialog.setLabelText(label)
    if items is not None:
        dialog.setComboBoxItems(items)
        dialog.setComboBoxEditable(False)
    return dialog.textValue().strip() if dialog.exec_() == qt.QDialog.Accepted else ""


def ask_model_sources() -> list[str]:
    """Model zips (one per fold for lesion_ms), or, when none is picked, one unzipped nnU-Net model folder; [] when
    the user cancels both."""
    paths = qt.QFileDialog.getOpenFileNames(
        slicer.util.mainWindow(), "Model zip(s): one per fold for lesion_ms (or cancel to pick a folder)", "",
        "Zip archives (*.zip)")
    if paths:
        return list(paths)
    folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), "Unzipped nnU-Net model folder")
    return [folder] if folder else []
