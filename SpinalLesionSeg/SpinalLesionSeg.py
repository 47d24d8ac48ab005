"""SpinalLesionSeg: MS lesion segmentation of spinal cord MRI in 3D Slicer.

A binding: Module, Widget (.ui <-> parameter node <-> Logic; views, layouts, Segment Editor), Logic (PanelLogic of
SpinalLesionSegLib.mrml.panel, also headless) and self-test. Inference runs in a worker process, polled by a timer.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Optional, Union

import qt
import slicer
import vtk
from slicer import (vtkMRMLLabelMapVolumeNode, vtkMRMLMarkupsFiducialNode, vtkMRMLMarkupsROINode,
                    vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode)
from slicer.i18n import tr as _, translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

# Python 3.9-safe modules only above the version check (Slicer 5.8 ships Python 3.9; the core needs 3.10).
from SpinalLesionSegLib import __version__, defaults, slicer_requirements
from SpinalLesionSegLib.contrasts import contrast_label

VERSION_PROBLEM = slicer_requirements.version_problem((slicer.app.majorVersion, slicer.app.minorVersion),
                                                      slicer.app.applicationVersion)
if VERSION_PROBLEM:  # the module shows the problem instead of a panel, and never imports the core
    PanelLogic = object
else:
    from SpinalLesionSegLib.errors import InputError
    from SpinalLesionSegLib.inference.protocol import Error, Log, Progress, Result
    from SpinalLesionSegLib.mrml import (qt_dataset, qt_dialogs, qt_dicom, qt_followup, qt_levels, qt_sequences,
                                         qt_stations)
    from SpinalLesionSegLib.mrml.panel import PanelLogic
    from SpinalLesionSegLib.mrml.qt_worker import QtWorkerClient
    from SpinalLesionSegLib.mrml.results import lesion_segment_id


class SpinalLesionSeg(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Spinal Lesion Seg")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["SpinalLesionSeg contributors"]
        self.parent.helpText = _(
            "Segment multiple sclerosis lesions in spinal cord MRI with the published nnU-Net models "
            "(Benveniste et al. 2026 and siblings), correct them in the Segment Editor and report lesion counts "
            "and volumes per vertebral level. Version {version}. "
            '<a href="https://github.com/SpinalLesionSeg/SlicerSpinalLesionSeg/blob/main/docs/user-guide.md">'
            "User guide</a>."
        ).format(version=__version__)
        self.parent.acknowledgementText = _(
            "Models by the NeuroPoly lab (Polytechnique Montreal) and collaborators; nnU-Net by the MIC group of the "
            "German Cancer Research Center (DKFZ). Please cite the model papers listed in the documentation."
        )
        if VERSION_PROBLEM:
            self.parent.helpText = VERSION_PROBLEM
            logging.error(VERSION_PROBLEM)


@parameterNodeWrapper
class SpinalLesionSegParameterNode:
    """The panel's state, saved with the scene (fields: mrml/panel.py; choices, defaults, ranges: defaults.py)."""

    inputVolume: vtkMRMLScalarVolumeNode
    contrast: Annotated[str, Choice([contrast_label(c) for c in defaults.CONTRAST_CHOICES])] = defaults.CONTRAST
    model: str = defaults.MODEL
    device: Annotated[str, Choice(list(defaults.DEVICE_CHOICES))] = defaults.DEVICE
    folds: str = ""
    tta: bool = False
    fast: bool = False
    precision: Annotated[str, Choice(list(defaults.PRECISION_CHOICES))] = defaults.PANEL_PRECISION
    dropOutsideCord: bool = False
    roiNode: Union[vtkMRMLMarkupsROINode, vtkMRMLSegmentationNode, None]
    roiAuto: bool = False
    roiMarginMm: Annotated[float, WithinRange(*defaults.ROI_MARGIN_RANGE_MM)] = defaults.ROI_MARGIN_MM
    pythonPath: str = ""
    threshold: Annotated[float, WithinRange(*defaults.THRESHOLD_RANGE)] = defaults.THRESHOLD
    candidateThreshold: Annotated[float, WithinRange(*defaults.THRESHOLD_RANGE)] = defaults.CANDIDATE_THRESHOLD
    softMap: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    levelsNode: Union[vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode, vtkMRMLMarkupsFiducialNode, None]


class SpinalLesionSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds the .ui panel to the parameter node and forwards actions to the Logic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self._parameterNode = self._parameterNodeGuiTag = self._command = None
        self.timer = qt.QTimer()
        self.timer.setInterval(defaults.POLL_INTERVAL_MS)
        self.timer.connect("timeout()", self.onPoll)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        if VERSION_PROBLEM:
            self.layout.addWidget(qt.QLabel(VERSION_PROBLEM))
            return
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SpinalLesionSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SpinalLesionSegLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        lesions, candidates = self.ui.lesionTableView, self.ui.candidateTableView
        for button, handler in (
                (self.ui.checkInputButton, self.onCheckInputButton), (self.ui.runButton, self.onRunButton),
                (self.ui.cancelButton, self.onCancelButton), (self.ui.installModelButton, self.onInstallModelButton),
                (self.ui.installFromFileButton, self.onInstallFromFileButton),
                (self.ui.installDependenciesButton, self.onInstallDependenciesButton),
                (self.ui.rejectLesionButton, lambda: self._reviewStep(self.logic.reject_lesion, lesions)),
                (self.ui.acceptLesionButton, lambda: self._reviewStep(self.logic.accept_lesion, lesions)),
                (self.ui.undoReviewButton, lambda: self._reviewStep(self.logic.undo)),
                (self.ui.addCandidateButton, lambda: self._reviewStep(self.logic.add_candidate, candidates)),
                (self.ui.computeStatisticsButton, self.onComputeStatisticsButton),
                (self.ui.correctButton, self.onCorrectButton), (self.ui.exportButton, self.onExportButton)):
            button.connect("clicked(bool)", handler)
        # tracking is off in the .ui: valueIsChanging while dragging (preview), valueChanged once at release.
        self.ui.thresholdSliderWidget.connect("valueIsChanging(double)", self.onThresholdDragged)
        self.ui.thresholdSliderWidget.connect("valueChanged(double)", self.onThresholdChanged)
        for view in (lesions, candidates):
            view.connect("clicked(QModelIndex)", lambda index, view=view: self.onTableClicked(view))
        self.ui.candidateThresholdSliderWidget.connect("valueChanged(double)", self.onCandidateThresholdChanged)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onInputChanged)
        # The model list changes as models are installed, so it is not a fixed Choice: synchronised by hand.
        self.ui.modelComboBox.connect("currentTextChanged(QString)", self.onModelChanged)
        self.refreshModels()
        self.sequences = qt_sequences.SequenceRows(self.ui, self.logic)
        self.dataset = qt_dataset.DatasetSection(uiWidget, lambda: self._parameterNode, self._refreshReviewTable)
        self.followup = qt_followup.FollowupSection(uiWidget, self.ui.statisticsCollapsibleButton, lambda: self._parameterNode)
        self.dicom = qt_dicom.DicomSection(uiWidget, self.followup.section, lambda: self._parameterNode, self.logic)
        self.rows = [row(self.ui.statisticsCollapsibleButton, lambda: self._parameterNode, self.logic)
                     for row in (qt_levels.LevelsRow, qt_stations.StationRows)]
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.timer.stop()
        if self.logic:
            self.logic.stop_worker()
        self.removeObservers()

    def enter(self) -> None:
        if self.logic:
            self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.logic.stop_worker()  # closing the scene stops the worker
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = self.logic.default_input(slicer.mrmlScene)

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
            self.refreshModels()
            self._updateButtons()

    def _updateButtons(self, caller=None, event=None) -> None:
        p = self._parameterNode
        running = self.logic.busy
        hasInput = bool(p and p.inputVolume)
        hasResult = bool(p and p.segmentation and p.softMap)
        self.ui.checkInputButton.enabled = hasInput
        self.ui.runButton.enabled = hasInput and not running and self.ui.modelComboBox.count > 0
        self.ui.cancelButton.enabled = running or self._command is not None
        for button in (self.ui.correctButton, self.ui.computeStatisticsButton, self.ui.exportButton):
            button.enabled = hasResult and not running
        hasRow = hasResult and self._selectedRow(self.ui.lesionTableView) is not None
        self.ui.rejectLesionButton.enabled = self.ui.acceptLesionButton.enabled = hasRow
        self.ui.addCandidateButton.enabled = hasResult and self._selectedRow(self.ui.candidateTableView) is not None
        self.ui.undoReviewButton.enabled = hasResult and self.logic.can_undo(p)

    def onInputChanged(self, node) -> None:
        if node and self._parameterNode and self._parameterNode.contrast == defaults.CONTRAST:
            guessed = self.logic.guess_contrast(node, self.logic.seriesDescription(node))
            self.ui.inputInfoLabel.text = _("Contrast from the volume: {c}").format(c=guessed) if guessed else ""

    def onCheckInputButton(self) -> None:
        try:
            self.ui.inputInfoLabel.text, self.ui.inputInfoLabel.styleSheet = self.logic.check_volume(
                self._parameterNode.inputVolume), ""
        except InputError as error:
            self.ui.inputInfoLabel.text, self.ui.inputInfoLabel.styleSheet = str(error), "color: #c0392b"

    def onModelChanged(self, name: str) -> None:
        if self._parameterNode and name:
            self._parameterNode.model = name

    def refreshModels(self) -> None:
        current = self._parameterNode.model if self._parameterNode else defaults.MODEL
        self.ui.modelComboBox.clear()
        self.ui.modelComboBox.addItems(self.logic.model_names(installed=True))
        self.ui.modelComboBox.currentIndex = max(self.ui.modelComboBox.findText(current), 0)

    def onInstallModelButton(self) -> None:
        name = qt_dialogs.ask(_("Install model"), _("Model to download (checksums are verified):"),
                              self.logic.model_names(installed=False))
        if name:
            self._startInstall(name)

    def onInstallFromFileButton(self) -> None:
        paths = qt_dialogs.ask_model_sources()
        name = paths and qt_dialogs.ask(_("Install from file"),
                                        _("Model name (a known model such as lesion_ms, or a new name):"))
        if name:
            self._startInstall(name, paths)

    def _startInstall(self, name: str, sources=()) -> None:
        self._command = self.logic.start_install(self._parameterNode, name, list(sources))
        self.ui.logTextEdit.appendPlainText(" ".join([defaults.PROG, *self._command.args]))
        self.ui.statusLabel.text = _("Installing... (see the log)")
        self.timer.start()

    def onInstallDependenciesButton(self) -> None:
        if not slicer.util.confirmOkCancelDisplay(_("Install nnunetv2 into Slicer's Python (minutes)? torch comes "
                                                     "from the PyTorch extension; Slicer's own packages stay.")):
            return
        with slicer.util.tryWithErrorDisplay(_("Installing dependencies failed."), waitCursor=True):
            self.logic.installDependencies()
            slicer.util.infoDisplay(_("Dependencies installed."))

    def onRunButton(self) -> None:
        self.ui.logTextEdit.clear()
        self.ui.progressBar.value, p = 0, self._parameterNode
        try:
            self.logic.run(p, self.logic.seriesDescription(p.inputVolume))
        except (InputError, RuntimeError) as error:
            self.ui.statusLabel.text = str(error)
            return
        self.ui.statusLabel.text = _("Starting...")
        self.timer.start()
        self._updateButtons()

    def onCancelButton(self) -> None:
        self.logic.cancel()
        if self._command:
            self._command.cancel()
        self.ui.statusLabel.text, self.ui.progressBar.value = _("Cancelled."), 0
        self._updateButtons()

    def onPoll(self) -> None:
        """Timer callback: never blocks; handles whatever the worker (or an install command) said since last time."""
        if self._command:
            lines, code = self._command.poll()
            if lines:
                self.ui.logTextEdit.appendPlainText("\n".join(lines))
            if code is not None:
                self.ui.statusLabel.text = _("Installed.") if code == 0 else _("Install failed (see the log).")
                self._command = None
                self.refreshModels()
        for message in self.logic.poll():
            if isinstance(message, Progress):
                self.ui.progressBar.value = int(100 * message.fraction)
                self.ui.statusLabel.text = message.stage
            elif isinstance(message, Log):
                self.ui.logTextEdit.appendPlainText(message.message)
            elif isinstance(message, Error):
                self.ui.statusLabel.text = message.message
                self.ui.logTextEdit.appendPlainText("\n".join(message.log))
                self.ui.logCollapsibleButton.collapsed = False
            elif isinstance(message, Result):
                self._onResult(message)
        if not self.logic.busy and not self._command:
            self.timer.stop()
        self._updateButtons()

    def _onResult(self, message: Result) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Loading the results failed."), waitCursor=True):
            position = self.logic.load_results(p, message)
            p.segmentation.CreateClosedSurfaceRepresentation()
            slicer.util.setSliceViewerLayers(background=p.inputVolume, foreground=p.softMap, foregroundOpacity=0.4)
            if position is not None:
                slicer.modules.markups.logic().JumpSlicesToLocation(*position, True)
            self.ui.deviceInfoLabel.text = "{name}: {reason}".format(**message.device)
            self.ui.progressBar.value, self.ui.statusLabel.text = 100, self.logic.result_summary(message)
            self._refreshReviewTable()

    def onThresholdDragged(self, value: float) -> None:
        p = self._parameterNode
        if p and p.segmentation and p.softMap:
            self.logic.preview_threshold(p, value)

    def onThresholdChanged(self, value: float) -> None:
        """At release (tracking off): one re-threshold and one undo step, asking first if the segment was edited."""
        p = self._parameterNode  # also runs when the parameter node sets the value: act only on a real change
        if not p or not p.segmentation or not p.softMap or value == self.logic.applied_threshold(p):
            return
        overwrite = True
        if self.logic.lesion_segment_edited(p):
            overwrite = slicer.util.confirmYesNoDisplay(
                _("The lesion segment has been edited. Overwrite your edits with the new threshold? "
                  "No: the new threshold is added as a separate segment."))
        self._saveSegmentEditorUndoState()
        self.logic.apply_threshold(p, value, overwrite=overwrite)
        self._refreshReviewTable()

    def onCandidateThresholdChanged(self, value: float) -> None:
        """Runs before the parameter node's own connection stores the value: store it first."""
        if self._parameterNode and self._parameterNode.segmentation:
            self._parameterNode.candidateThreshold = value
            self._refreshReviewTable()

    def _saveSegmentEditorUndoState(self) -> None:
        """So that Undo in the Segment Editor, when it shows this segmentation, also undoes a re-threshold."""
        representation = slicer.modules.segmenteditor.widgetRepresentation()
        editor = representation.self().editor if representation is not None else None
        if editor is not None and editor.segmentationNode() is self._parameterNode.segmentation:
            editor.saveStateForUndo()

    def onCorrectButton(self) -> None:
        p = self._parameterNode
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(p.segmentation)
        editor.setSourceVolumeNode(p.inputVolume)
        editor.mrmlSegmentEditorNode().SetSelectedSegmentID(lesion_segment_id(p.segmentation))
        editor.setActiveEffectByName("Islands")
        effect = editor.activeEffect()
        if effect:
            effect.setParameter("MinimumSize", str(defaults.ISLANDS_MINIMUM_SIZE_VOXELS))
        editor.setActiveEffect(None)

    def _refreshReviewTable(self) -> None:
        self.ui.lesionTableView.setMRMLTableNode(self.logic.review_table(self._parameterNode))
        self.ui.candidateTableView.setMRMLTableNode(self.logic.candidate_table(self._parameterNode))

    @staticmethod
    def _selectedRow(view) -> Optional[int]:
        """The table row of the view's selection (view row = table row: column titles are the header)."""
        selection = view.selectionModel()
        rows = {index.row() for index in selection.selectedIndexes()} if selection else set()
        return min(rows) if rows and view.mrmlTableNode() else None

    def onTableClicked(self, view) -> None:
        row = self._selectedRow(view)
        if row is not None:
            position = self.logic.position_in_table(view.mrmlTableNode(), row)
            slicer.modules.markups.logic().JumpSlicesToLocation(*position, True)
        self._updateButtons()

    def _reviewStep(self, step, view=None) -> None:
        """A review step on the lesion or candidate selected in ``view`` (none for undo); the tables refreshed."""
        row = self._selectedRow(view) if view is not None else None
        if view is not None and row is None:
            return
        target = [] if view is None else [int(view.mrmlTableNode().GetCellText(row, 0))]
        with slicer.util.tryWithErrorDisplay(_("The review step failed."), waitCursor=True):
            step(self._parameterNode, *target)
            self._refreshReviewTable()
        self._updateButtons()

    def onComputeStatisticsButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Computing statistics failed."), waitCursor=True):
            nodes = self.logic.compute_statistics(self._parameterNode)
            slicer.modules.plots.logic().ShowChartInLayout(nodes.chart)

    def onExportButton(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Export statistics to"))
        if folder:
            with slicer.util.tryWithErrorDisplay(_("Export failed."), waitCursor=True):
                written = self.logic.export(self._parameterNode, Path(folder))
                slicer.util.infoDisplay(_("Written:") + "\n" + "\n".join(str(p) for p in written))


class SpinalLesionSegLogic(ScriptedLoadableModuleLogic, PanelLogic):
    """The panel's logic (:class:`SpinalLesionSegLib.mrml.panel.PanelLogic`) on Slicer's scene, plus what only a
    running Slicer has: the parameter node, the DICOM database and pip into Slicer's Python."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        PanelLogic.__init__(self, slicer.mrmlScene, shutil.which("PythonSlicer") or sys.executable,
                            slicer.util.startupEnvironment(), QtWorkerClient)

    def getParameterNode(self) -> SpinalLesionSegParameterNode:
        return SpinalLesionSegParameterNode(super().getParameterNode())

    @staticmethod
    def seriesDescription(volume) -> str:
        """The DICOM series description of a volume loaded from DICOM (a contrast hint), else ""."""
        uids = (volume.GetAttribute("DICOM.instanceUIDs") or "").split() if volume else []
        database = getattr(slicer, "dicomDatabase", None)
        if not uids or not database:
            return ""
        return database.fileValue(database.fileForInstance(uids[0]), "0008,103E") or ""

    @staticmethod
    def installDependencies() -> None:
        """torch through the PyTorch extension, then nnunetv2 (see SpinalLesionSegLib.slicer_requirements)."""
        try:
            import PyTorchUtils
        except ImportError:
            raise RuntimeError("the PyTorch extension is not installed: install it from the Extensions Manager")
        slicer_requirements.install_into_slicer(PyTorchUtils.PyTorchUtilsLogic(), slicer.util.pip_install,
                                                qt_dicom.slicer_dicom_packages_folder())


class SpinalLesionSegTest(ScriptedLoadableModuleTest):
    """Slicer self-test (Developer mode > Reload and Test): the headless steps of Testing/test_panel.py, in Slicer."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_workflow()

    def test_workflow(self) -> None:
        """SpinalLesionSegLib.mrml.workflow_check (also run headless by Testing/test_panel.py), in Slicer."""
        missing = [name for name in ("torch", "nnunetv2") if importlib.util.find_spec(name) is None]
        if missing:  # the extension build servers have no torch: skip there, run fully where it is installed
            self.skipTest(f"{', '.join(missing)} not installed (use Install dependencies)")
        from SpinalLesionSegLib.mrml.workflow_check import run_workflow_check
        from SpinalLesionSegLib.phantom import make_phantom

        phantom = make_phantom(3, contrast=defaults.PHANTOM_CONTRAST, spacing=(1.0, 1.0, 1.0))
        logic = SpinalLesionSegLogic()
        run_workflow_check(logic, logic.getParameterNode(), phantom.image, phantom.levels,
                           Path(tempfile.mkdtemp(prefix="SpinalLesionSegTest-")), step=self.delayDisplay,
                           on_idle=slicer.app.processEvents)
        self.delayDisplay("Test passed")
