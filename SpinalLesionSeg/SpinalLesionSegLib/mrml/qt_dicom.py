"""The panel's "DICOM export" section (Slicer's PythonQt ``qt``/``ctk``; imported only by the module file).

An output folder, "Add to Slicer's DICOM database" and "Export to DICOM...". What happens is :mod:`.dicom_export`'s
(tested headless): this file finds the source series' files in Slicer's DICOM database (``fileForInstance`` of each
``DICOM.instanceUIDs`` entry), runs the ``dicom-export`` command in the background with the panel's worker
interpreter (highdicom needs pydicom 3, which Slicer's own DICOM module does not have: the GUI process never loads
it; with Slicer's own Python the command's process alone gets the private folder of pydicom 3 and highdicom that
"Install dependencies" fills, :func:`.dicom_export.export_environment`), polls it from a timer, and says where the
files went; checked, it adds them to the DICOM database (copies, through CTK's indexer, as Slicer's DICOM export
does), from where the DICOM module sends them to a PACS. A one-line InputError is shown in red in the section,
anything else in Slicer's error dialog.

Built in code rather than in the .ui, so the module file binds it in one line.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ctk
import qt
import slicer
from slicer.i18n import tr as _

from .. import defaults
from ..errors import InputError
from ..slicer_requirements import dicom_packages_folder
from .dicom_export import (
    export_environment,
    instance_uids,
    prepare_dicom_export,
    read_export,
    start_dicom_export,
)
from .qt_section import PanelSection
from .review_steps import Parameters

#: Slicer settings key (the user's Slicer.ini) of the output folders used before (the path field's history).
FOLDER_KEY = "SpinalLesionSeg/DicomFolder"


def slicer_dicom_packages_folder() -> Path:
    """The private folder of pydicom 3 and highdicom (:func:`..slicer_requirements.dicom_packages_folder`) of this
    Slicer: beside its revision-specific settings and extensions. "Install dependencies" fills it."""
    return dicom_packages_folder(slicer.app.slicerRevisionUserSettingsFilePath)


class DicomSection(PanelSection):
    """The section, inserted into the panel ``panel`` right after the widget ``after``. ``parameters`` returns the
    panel's parameter node (None while the module is not shown); ``logic`` is the panel's logic (its worker
    interpreter and environment run the export)."""

    def __init__(self, panel: qt.QWidget, after: qt.QWidget, parameters: Callable[[], Parameters | None],
                 logic: Any) -> None:
        self.parameters, self.logic = parameters, logic
        self.command: Any = None
        self.export: Any = None
        self.output: list[str] = []
        self.work_dir: Path | None = None
        self.section = ctk.ctkCollapsibleButton()
        self.section.text = _("DICOM export (PACS)")
        self.section.collapsed = True
        form = qt.QFormLayout(self.section)
        self.folderEdit = ctk.ctkPathLineEdit()
        self.folderEdit.filters = ctk.ctkPathLineEdit.Dirs
        self.folderEdit.settingKey = FOLDER_KEY
        self.folderEdit.toolTip = _("The DICOM files go into its 'dicom' subfolder.")
        form.addRow(_("Output folder:"), self.folderEdit)
        self.databaseCheckBox = qt.QCheckBox(_("Add to Slicer's DICOM database (to send to PACS)"))
        self.databaseCheckBox.checked = True
        form.addRow(self.databaseCheckBox)
        self.exportButton = self._button(form, _("Export to DICOM..."), self.onExport, _(
            "For an input loaded from the DICOM database: the corrected lesion segment (and the cord) as DICOM SEG, "
            "the soft map as a fractional SEG, a structured report of the lesions and preview images, all "
            "referencing the source series."))
        self.statusLabel = qt.QLabel()
        self.statusLabel.wordWrap = True
        form.addRow(self.statusLabel)
        self.timer = qt.QTimer()
        self.timer.setInterval(defaults.POLL_INTERVAL_MS)
        self.timer.connect("timeout()", self.onPoll)
        layout = panel.layout()
        layout.insertWidget(layout.indexOf(after) + 1, self.section)

    def onExport(self) -> None:
        p = self.parameters()
        if p is None or self.command is not None:
            return
        if not self.folderEdit.currentPath.strip():
            chosen = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Write the DICOM files into"))
            if not chosen:
                return
            self.folderEdit.currentPath = chosen

        def start() -> None:
            self.work_dir = self.work_dir or Path(tempfile.mkdtemp(prefix="SpinalLesionSeg-dicom-"))
            self.export = prepare_dicom_export(p, self._source_files(p), self.folderEdit.currentPath.strip(),
                                               self.work_dir)
            python = self.logic.worker_python(p)
            env = export_environment(python, self.logic.default_python, self.logic.external_env,
                                     slicer_dicom_packages_folder())
            self.command, self.output = start_dicom_export(self.export, python, env), []
            self.exportButton.enabled = False
            self._say(_("Exporting to DICOM..."))
            self.timer.start()

        self._attempt(start, _("Starting the DICOM export failed."))

    @staticmethod
    def _source_files(p: Parameters) -> list[str]:
        """The database's file of each slice of the input volume ("" where it has none)."""
        uids = instance_uids(p.inputVolume)
        database = getattr(slicer, "dicomDatabase", None)
        if not database:
            raise InputError(None, "Slicer's DICOM database is not open: open it in the DICOM module")
        return [database.fileForInstance(uid) for uid in uids]

    def onPoll(self) -> None:
        lines, code = self.command.poll()
        self.output += lines
        if code is None:
            return
        self.timer.stop()
        self.command = None
        self.exportButton.enabled = True

        def finish() -> None:
            outcome = read_export(self.export, code, self.output)
            added = self._add_to_database(outcome.files) if self.databaseCheckBox.checked else ""
            self._say(_("Exported: {what}.").format(what=outcome.text()) + added)

        if self._attempt(finish, _("The DICOM export failed.")):
            self.folderEdit.addCurrentPathToHistory()

    @staticmethod
    def _add_to_database(files: list[Path]) -> str:
        """Copy the files into Slicer's DICOM database (CTK's indexer, in the foreground); what to tell the user."""
        database = getattr(slicer, "dicomDatabase", None)
        if not database:
            return " " + _("Slicer's DICOM database is not open: the files were not added to it.")
        indexer = ctk.ctkDICOMIndexer()
        indexer.addListOfFiles(database, [str(path) for path in files], True)
        indexer.waitForImportFinished()
        return " " + _("Added to the DICOM database: send them to PACS from the DICOM module.")
