"""The panel's "Dataset" section, for annotators (Slicer's PythonQt ``qt``/``ctk``; imported only by the module file).

Open dataset... (a BIDS root pre-labelled by ``spinal-lesion-seg batch``), QC fails list... (the QC page's
``qc_fail.yml``, optional), the cases with their status, Previous/Next case, Save correction, and the Author field
remembered in Slicer's settings. What happens is :class:`.case_list.CaseList`'s (tested headless); this file builds
the widgets, asks the overwrite question and shows the outcome. A loaded case enters the panel's usual review
(soft map, lesion segment, review table, threshold) through the panel's parameters.

Built in code rather than in the .ui, so the module file binds it in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ctk
import qt
import slicer
from slicer.i18n import tr as _

from ..batch.labels import ManualMaskExists
from ..errors import InputError
from .case_list import CORRECTED, FAILED_QC, NOT_RUN, PRELABELLED, CaseList, Position
from .qt_section import PanelSection
from .review_steps import Parameters

#: Slicer settings keys (the user's Slicer.ini): the author written into every sidecar, the last dataset opened.
AUTHOR_KEY = "SpinalLesionSeg/Author"
ROOT_KEY = "SpinalLesionSeg/DatasetRoot"


class DatasetSection(PanelSection):
    """The section, inserted at the top of the panel ``panel`` (the loaded .ui widget). ``parameters`` returns the
    panel's parameter node (None while the module is not shown); ``show_review`` refreshes the panel's review and
    candidate tables after a pre-labelled case is loaded."""

    def __init__(self, panel: qt.QWidget, parameters: Callable[[], Parameters | None],
                 show_review: Callable[[], None]) -> None:
        self.parameters, self.show_review = parameters, show_review
        self.cases = CaseList(slicer.mrmlScene)
        self.section = ctk.ctkCollapsibleButton()
        self.section.text = _("Dataset (annotators)")
        form = qt.QFormLayout(self.section)
        self.authorEdit = qt.QLineEdit()
        self.authorEdit.text = slicer.util.settingsValue(AUTHOR_KEY, "")
        self.authorEdit.placeholderText = _("your name, recorded in each correction's sidecar")
        self.authorEdit.connect("editingFinished()", self.onAuthorChanged)
        form.addRow(_("Author:"), self.authorEdit)
        self.openButton = self._button(form, _("Open dataset..."), self.onOpen, _(
            "The root folder of a BIDS dataset pre-labelled with spinal-lesion-seg batch."))
        self.failsButton = self._button(form, _("QC fails list..."), self.onFailsList, _(
            "The qc_fail.yml exported from the batch's QC page: its images are marked 'failed QC'."))
        self.caseList = qt.QListWidget()
        self.caseList.toolTip = _("Double-click a case to load it (an edited case is saved first).")
        self.caseList.connect("activated(QModelIndex)", self.onCaseActivated)
        form.addRow(self.caseList)
        self.previousButton = self._button(form, _("Previous case"), lambda: self._go(-1), _(
            "Save this case if it was edited, then load the previous one."))
        self.saveButton = self._button(form, _("Save correction"), self.onSave, _(
            "Write the lesion segment to derivatives/labels/.../<image>_lesion-manual.nii.gz, with its sidecar."))
        self.nextButton = self._button(form, _("Next case"), lambda: self._go(+1), _(
            "Save this case if it was edited, then load the next one."))
        self.statusLabel = qt.QLabel()
        self.statusLabel.wordWrap = True
        form.addRow(self.statusLabel)
        panel.layout().insertWidget(0, self.section)
        self._refill()
        self._say(self._summary())

    def author(self) -> str:
        return str(self.authorEdit.text).strip()

    def onAuthorChanged(self) -> None:
        qt.QSettings().setValue(AUTHOR_KEY, self.author())

    def onOpen(self) -> None:
        root = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("BIDS dataset (its root folder)"),
                                                   slicer.util.settingsValue(ROOT_KEY, ""))
        if root and self._leave():
            self._open(root, None)
            qt.QSettings().setValue(ROOT_KEY, root)

    def onFailsList(self) -> None:
        fails = qt.QFileDialog.getOpenFileName(slicer.util.mainWindow(), _("QC fails list (qc_fail.yml)"),
                                               str(self.cases.root or ""), "QC lists (*.yml *.yaml *.txt);;All (*)")
        if fails:
            self._open(self.cases.root, fails)

    def _open(self, root: Any, fails_list: str | None) -> None:
        """List the dataset (the loaded case stays when the list still holds it); errors shown in the section."""
        try:
            self.cases.open(root, fails_list)
        except InputError as error:
            self._say(str(error), error=True)
            return
        self._refill()
        self._say(self._summary())

    def _leave(self) -> bool:
        """Close the loaded case before opening another dataset, saving it when edited; False when the user
        chose to stay."""
        p = self.parameters()
        return p is None or self._autosaving(lambda **how: self.cases.close(p, self.author(), **how))

    def onCaseActivated(self, index: Any) -> None:
        self._goTo(index.row())

    def _go(self, step: int) -> None:
        target = self.cases.neighbour(step)
        if target is not None:
            self._goTo(target)

    def _goTo(self, index: int) -> None:
        """Load case ``index``, saving the loaded one first when edited (asking before replacing a mask this
        session did not write); then show it as a finished prediction is shown."""
        p = self.parameters()
        if p is None:
            return
        position: list[Position | None] = []

        def go(**how: bool) -> None:
            position.append(self.cases.go(p, index, self.author(), **how))

        if self._autosaving(go) and position:
            case = self.cases.cases[index]
            note = "" if case.prelabel else _(" (not pre-labelled: no soft map or review table; edit it in the "
                                              "Segment Editor)")
            self._say(_("Case {i} of {n}: {label}").format(i=index + 1, n=len(self.cases.cases), label=case.label)
                      + note)
            self._show(p, position[0])
        self._refill()

    def _autosaving(self, action: Callable[..., Any]) -> bool:
        """Run ``action`` (a move or a close, which saves an edited case); when the save would replace a mask this
        session did not write, ask: replace it, keep it and drop this case's changes, or stay. False when nothing
        happened (the user stayed, or an error, shown)."""
        outcome = self._attempt(action, _("Changing case failed."))
        if not isinstance(outcome, ManualMaskExists):
            return outcome
        answer = slicer.util.messageBox(
            _("{path} exists and was not written in this session. Replace it with this case's correction?\n\n"
              "Yes: replace it. No: keep it and drop this case's changes. Cancel: stay on this case.").format(
                path=outcome.path), windowTitle=_("Save correction"), icon=qt.QMessageBox.Question,
            standardButtons=qt.QMessageBox.Yes | qt.QMessageBox.No | qt.QMessageBox.Cancel)
        if answer not in (qt.QMessageBox.Yes, qt.QMessageBox.No):
            return False
        how = {"overwrite": True} if answer == qt.QMessageBox.Yes else {"save": False}
        return self._attempt(lambda: action(**how), _("Changing case failed.")) is True

    def _show(self, p: Parameters, position: Position | None) -> None:
        """The loaded case in the views (image, soft map over it, the acquisition's plane), the largest lesion
        centred, the review tables refreshed."""
        slicer.util.setSliceViewerLayers(background=p.inputVolume, foreground=p.softMap, foregroundOpacity=0.4,
                                         fit=True, rotateToVolumePlane=True)
        if position is not None:
            slicer.modules.markups.logic().JumpSlicesToLocation(*position, True)
        if p.softMap is not None:
            try:
                self.show_review()
            except InputError as error:
                self._say(str(error), error=True)

    def onSave(self) -> None:
        """Save the loaded case's correction; a mask this session did not write is replaced only after a Yes."""
        p = self.parameters()
        saved: list[Any] = []

        def save(**how: bool) -> None:
            saved.append(self.cases.save(p, self.author(), **how))

        outcome = self._attempt(save, _("Saving the correction failed.")) if p is not None else False
        if isinstance(outcome, ManualMaskExists) and slicer.util.confirmYesNoDisplay(
                _("{path} exists and was not written in this session. Replace it?").format(path=outcome.path)):
            self._attempt(lambda: save(overwrite=True), _("Saving the correction failed."))
        if isinstance(outcome, ManualMaskExists) and not saved:
            self._say(_("Not saved: {path} is kept.").format(path=outcome.path))
        if not saved:
            return
        path, correction = saved[0]
        self._refill()
        self._say(_("Saved {name}: lesions +{la} -{lr}, voxels +{va} -{vr}, {s:.0f} s on this case.").format(
            name=path.name, la=correction.lesions_added, lr=correction.lesions_removed,
            va=correction.voxels_added, vr=correction.voxels_removed, s=correction.seconds_spent))

    def _refill(self) -> None:
        """The list (one line per case, its details as tooltip), the loaded case selected, the buttons."""
        self.caseList.clear()
        for row, case in enumerate(self.cases.cases):
            self.caseList.addItem(case.label)
            self.caseList.item(row).setToolTip(case.details)
        current = self.cases.index
        self.caseList.currentRow = -1 if current is None else current
        self.failsButton.enabled = self.cases.root is not None
        self.previousButton.enabled = self.cases.neighbour(-1) is not None and current is not None
        self.nextButton.enabled = self.cases.neighbour(+1) is not None
        self.saveButton.enabled = current is not None

    def _summary(self) -> str:
        """"12 cases: 5 pre-labelled, 3 corrected, ...", and how many fails-list entries name no image here."""
        if not self.cases.cases:
            return _("Open a BIDS dataset to correct its pre-labels.")
        counts = {status: sum(c.status == status for c in self.cases.cases)
                  for status in (PRELABELLED, CORRECTED, FAILED_QC, NOT_RUN)}
        summary = _("{n} cases: {counts}.").format(n=len(self.cases.cases), counts=", ".join(
            f"{n} {status}" for status, n in counts.items() if n))
        return summary + (_(" {n} entries of the fails list name no image here.").format(
            n=len(self.cases.unmatched)) if self.cases.unmatched else "")
