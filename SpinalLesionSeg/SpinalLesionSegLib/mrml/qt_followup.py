"""The panel's "Follow-up and report" section (Slicer's PythonQt ``qt``/``ctk``; imported only by the module file).

The previous scan and its segmentation, an output folder, "Compare with previous scan..." and "Create report...".
What happens is :mod:`.followup`'s (tested headless); this file builds the widgets and shows the outcome: a one-line
InputError in red in the section, anything else in Slicer's error dialog. Both actions run in the GUI thread under
a wait cursor (``slicer.util.tryWithErrorDisplay(..., waitCursor=True)``): a registration takes seconds, a report a
few more, and neither runs the model (only inference goes to the worker process).

Built in code rather than in the .ui, so the module file binds it in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ctk
import qt
import slicer
from slicer.i18n import tr as _

from .followup import INPUTS_FOLDER, compare_with_previous, create_report
from .qt_section import PanelSection
from .review_steps import Parameters

#: Slicer settings key (the user's Slicer.ini) of the output folders used before (the path field's history).
FOLDER_KEY = "SpinalLesionSeg/FollowupFolder"


class FollowupSection(PanelSection):
    """The section, inserted into the panel ``panel`` (the loaded .ui widget) right after the widget ``after``
    (the Statistics section). ``parameters`` returns the panel's parameter node (None while the module is not
    shown)."""

    def __init__(self, panel: qt.QWidget, after: qt.QWidget, parameters: Callable[[], Parameters | None]) -> None:
        self.parameters = parameters
        self.section = ctk.ctkCollapsibleButton()
        self.section.text = _("Follow-up and report")
        self.section.collapsed = True
        form = qt.QFormLayout(self.section)
        self.previousVolumeSelector = self._selector(form, _("Previous scan:"), ["vtkMRMLScalarVolumeNode"], _(
            "The earlier scan of the same patient (the baseline)."))
        self.previousSegmentationSelector = self._selector(form, _("Its lesions:"), ["vtkMRMLSegmentationNode"], _(
            "The earlier scan's segmentation: its 'MS lesion' segment (or its only segment), and its 'Spinal cord' "
            "segment if any (registration then looks at the cord)."))
        self.folderEdit = ctk.ctkPathLineEdit()
        self.folderEdit.filters = ctk.ctkPathLineEdit.Dirs
        self.folderEdit.settingKey = FOLDER_KEY
        self.folderEdit.toolTip = _("Where the files go: the comparison's in 'compare', the report's in 'report'. "
                                    "Empty: Compare writes no files.")
        form.addRow(_("Output folder:"), self.folderEdit)
        self.compareButton = self._button(form, _("Compare with previous scan..."), self.onCompare, _(
            "Register the current scan to the previous one and classify every lesion (new, enlarged, stable, "
            "shrunk, disappeared, merged, split): a table and a segmentation with one coloured segment per class."))
        self.reportButton = self._button(form, _("Create report..."), self.onReport, _(
            "Write report.pdf and report.html from the corrected lesion segment, the soft map, the levels and the "
            "cord; with a previous scan, also the change since then."))
        self.statusLabel = qt.QLabel()
        self.statusLabel.wordWrap = True
        form.addRow(self.statusLabel)
        layout = panel.layout()
        layout.insertWidget(layout.indexOf(after) + 1, self.section)

    def _previous(self) -> tuple[Any, Any]:
        return self.previousVolumeSelector.currentNode(), self.previousSegmentationSelector.currentNode()

    def onCompare(self) -> None:
        p = self.parameters()
        if p is None:
            return
        folder = self.folderEdit.currentPath.strip()

        def compare() -> None:
            comparison = compare_with_previous(slicer.mrmlScene, p, *self._previous(), folder or None)
            where = (_(" Files in {folder}.").format(folder=comparison.outputs.summary_json.parent)
                     if comparison.outputs else "")
            self._say(_("{counts}. Table '{table}', segments in '{segmentation}'.").format(
                counts=comparison.counts_text(), table=comparison.table.GetName(),
                segmentation=comparison.segmentation.GetName()) + where)

        if self._attempt(compare, _("Comparing with the previous scan failed.")) and folder:
            self.folderEdit.addCurrentPathToHistory()

    def onReport(self) -> None:
        p = self.parameters()
        if p is None:
            return
        if not self.folderEdit.currentPath.strip():
            chosen = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Write the report into"))
            if not chosen:
                return
            self.folderEdit.currentPath = chosen

        def report() -> None:
            outputs = create_report(p, self.folderEdit.currentPath.strip(), *self._previous())
            self._say(_("Report written: {pdf} and {html} ({n} lesions; inputs in {inputs}).").format(
                pdf=outputs.pdf, html=outputs.html.name, n=outputs.data.lesion_count,
                inputs=outputs.pdf.parent / INPUTS_FOLDER))

        if self._attempt(report, _("Creating the report failed.")):
            self.folderEdit.addCurrentPathToHistory()
