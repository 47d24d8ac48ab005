"""SpinalLesionSeg: MS lesion segmentation of spinal cord MRI in 3D Slicer.

This file stays thin. The Module describes the module, the Widget binds the .ui panel to a parameter node, the
Logic orchestrates calls into ``SpinalLesionSegLib`` (the pure-Python core, also used by the command line and the
tests), and the Test class is Slicer's self-test. Inference never runs here: it runs in a worker process that the
Logic drives through :class:`SpinalLesionSegLib.inference.worker_client.WorkerClient`, polled by a timer so that Slicer's
GUI never waits.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import qt
import slicer
import vtk
from slicer import (
    vtkMRMLNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from SpinalLesionSegLib import __version__
from SpinalLesionSegLib.contrasts import CONTRASTS, guess_contrast
from SpinalLesionSegLib.describe import describe_image, format_description
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.image_io import read_image, write_image
from SpinalLesionSegLib.mrml.nodes import image_from_volume_node, labelmap_from_segmentation
from SpinalLesionSegLib.analysis.levels import load_level_source
from SpinalLesionSegLib.mrml.results import (
    CORD_SEGMENT_NAME,
    add_thresholded_segment,
    create_lesion_segmentation,
    lesion_segment_id,
    rethreshold_lesion_segment,
    segment_was_edited,
    show_soft_map,
)
from SpinalLesionSegLib.mrml.review import (
    analyze_segment,
    largest_lesion_ras,
    lesion_centroid_ras,
    lesion_review_table,
    reject_lesion,
)
from SpinalLesionSegLib.mrml.statistics import export_statistics, level_source_from_markups, statistics_nodes
from SpinalLesionSegLib.inference.roi import box_from_corners, box_from_mask
from SpinalLesionSegLib.validation import validate_image
from SpinalLesionSegLib.inference.worker_client import BackgroundCommand, WorkerClient

#: Contrast choices shown in the panel (T2*w is the BIDS T2starw).
CONTRAST_CHOICES = ["auto", "T2w", "T2*w", "STIR", "PSIR", "T1w", "UNIT1"]
DEVICE_CHOICES = ["auto", "cuda", "mps", "cpu"]
#: Islands effect minimum size for lesions, in voxels (Slicer's default of 1000 would delete every lesion).
ISLANDS_MINIMUM_SIZE = 3
POLL_INTERVAL_MS = 200


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
            '<a href="https://github.com/SpinalLesionSeg/SpinalLesionSeg/blob/main/docs/user-guide.md">User guide</a>.'
        ).format(version=__version__)
        self.parent.acknowledgementText = _(
            "Models by the NeuroPoly lab (Polytechnique Montreal) and collaborators; nnU-Net by the MIC group of the "
            "German Cancer Research Center (DKFZ). Please cite the model papers listed in the documentation."
        )


@parameterNodeWrapper
class SpinalLesionSegParameterNode:
    """The panel's state, saved with the scene.

    inputVolume -- the MRI to segment; contrast -- contrast hint; model, device, folds, tta -- how to run;
    roiNode, roiMarginMm -- optional region of interest (markups ROI or cord segmentation) and its margin (mm);
    pythonPath -- external interpreter with torch (empty: Slicer's); threshold -- soft-map threshold;
    softMap, segmentation -- the results; levelsNode -- vertebral levels for statistics.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    contrast: Annotated[str, Choice(CONTRAST_CHOICES)] = "auto"
    model: str = "demo"
    device: Annotated[str, Choice(DEVICE_CHOICES)] = "auto"
    folds: str = ""
    tta: bool = False
    roiNode: vtkMRMLNode
    roiMarginMm: Annotated[float, WithinRange(0.0, 100.0)] = 10.0
    pythonPath: str = ""
    threshold: Annotated[float, WithinRange(0.05, 0.95)] = 0.5
    softMap: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    levelsNode: vtkMRMLNode


class SpinalLesionSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds the .ui panel to the parameter node and forwards actions to the Logic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._lastThreshold = None
        self._command = None
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_INTERVAL_MS)
        self.timer.connect("timeout()", self.onPoll)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SpinalLesionSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = SpinalLesionSegLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.checkInputButton.connect("clicked(bool)", self.onCheckInputButton)
        self.ui.runButton.connect("clicked(bool)", self.onRunButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.installModelButton.connect("clicked(bool)", self.onInstallModelButton)
        self.ui.installFromFileButton.connect("clicked(bool)", self.onInstallFromFileButton)
        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependenciesButton)
        self.ui.correctButton.connect("clicked(bool)", self.onCorrectButton)
        self.ui.rejectLesionButton.connect("clicked(bool)", self.onRejectLesionButton)
        self.ui.acceptLesionButton.connect("clicked(bool)", self.onAcceptLesionButton)
        self.ui.computeStatisticsButton.connect("clicked(bool)", self.onComputeStatisticsButton)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)
        self.ui.thresholdSliderWidget.connect("valueChanged(double)", self.onThresholdChanged)
        self.ui.lesionTableView.connect("clicked(QModelIndex)", self.onLesionClicked)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onInputChanged)
        # The model list changes as models are installed, so it is not a fixed Choice: synchronised by hand.
        self.ui.modelComboBox.connect("currentTextChanged(QString)", self.onModelChanged)

        self.refreshModels()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.timer.stop()
        self.logic.stopWorker()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        self.logic.stopWorker()  # closing the scene stops the worker
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolume:
                self._parameterNode.inputVolume = firstVolume

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
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
        self.ui.cancelButton.enabled = running
        for button in (self.ui.correctButton, self.ui.computeStatisticsButton, self.ui.exportButton):
            button.enabled = hasResult and not running
        hasRow = hasResult and self.ui.lesionTableView.selectionModel() is not None and bool(
            self.ui.lesionTableView.selectionModel().selectedIndexes())
        self.ui.rejectLesionButton.enabled = hasRow
        self.ui.acceptLesionButton.enabled = hasRow

    # --- input --------------------------------------------------------------------------------------------

    def onInputChanged(self, node) -> None:
        if node and self._parameterNode and self._parameterNode.contrast == "auto":
            guessed = self.logic.guessContrast(node)
            self.ui.inputInfoLabel.text = _("Contrast from the volume: {c}").format(c=guessed) if guessed else ""

    def onCheckInputButton(self) -> None:
        try:
            self._showInfo(self.logic.checkVolume(self._parameterNode.inputVolume))
        except InputError as error:
            self._showInfo(str(error), error=True)

    def _showInfo(self, text: str, error: bool = False) -> None:
        self.ui.inputInfoLabel.text = text
        self.ui.inputInfoLabel.styleSheet = "color: #c0392b" if error else ""

    # --- models and environment -------------------------------------------------------------------------

    def onModelChanged(self, name: str) -> None:
        if self._parameterNode and name:
            self._parameterNode.model = name

    def refreshModels(self) -> None:
        current = self._parameterNode.model if self._parameterNode else "demo"
        self.ui.modelComboBox.clear()
        for name in self.logic.installedModels():
            self.ui.modelComboBox.addItem(name)
        index = self.ui.modelComboBox.findText(current)
        self.ui.modelComboBox.currentIndex = max(index, 0)

    def onInstallModelButton(self) -> None:
        names = self.logic.publishedModels()
        name = qt.QInputDialog.getItem(slicer.util.mainWindow(), _("Install model"),
                                       _("Model to download (checksums are verified):"), names, 0, False)
        if name:
            self._startCommand(["models", "install", name])

    def onInstallFromFileButton(self) -> None:
        paths = qt.QFileDialog.getOpenFileNames(slicer.util.mainWindow(),
                                                _("Model zip(s): one per fold for lesion_ms (or cancel to pick a folder)"),
                                                "", "Zip archives (*.zip)")
        if not paths:
            folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Unzipped nnU-Net model folder"))
            paths = [folder] if folder else []
        if not paths:
            return
        name = qt.QInputDialog.getText(slicer.util.mainWindow(), _("Install from file"),
                                       _("Model name (a known model such as lesion_ms, or a new name):"))
        if name:
            args = ["models", "install", name.strip()]
            for path in paths:
                args += ["--from", path]
            self._startCommand(args)

    def _startCommand(self, args: list) -> None:
        self._command = self.logic.startCommand(args)
        self._appendLog(" ".join(["spinal-lesion-seg", *args]))
        self.ui.statusLabel.text = _("Installing... (see the log)")
        self.timer.start()

    def onInstallDependenciesButton(self) -> None:
        if not slicer.util.confirmOkCancelDisplay(
                _("Install nnunetv2 and its dependencies into Slicer's Python? torch comes from the PyTorch "
                  "extension; Slicer's SimpleITK, torch and requests are never replaced. This can take minutes.")):
            return
        with slicer.util.tryWithErrorDisplay(_("Installing dependencies failed."), waitCursor=True):
            self.logic.installDependencies()
            slicer.util.infoDisplay(_("Dependencies installed."))

    # --- run ------------------------------------------------------------------------------------------------

    def onRunButton(self) -> None:
        self.ui.logTextEdit.clear()
        self.ui.progressBar.value = 0
        try:
            self.logic.run(self._parameterNode)
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
        self.ui.statusLabel.text = _("Cancelled.")
        self.ui.progressBar.value = 0
        self._updateButtons()

    def onPoll(self) -> None:
        """Timer callback: never blocks; handles whatever the worker (or an install command) said since last time."""
        if self._command:
            lines, code = self._command.poll()
            for line in lines:
                self._appendLog(line)
            if code is not None:
                self.ui.statusLabel.text = _("Installed.") if code == 0 else _("Install failed (see the log).")
                self._command = None
                self.refreshModels()
        for message in self.logic.poll():
            kind = message.get("type")
            if kind == "progress":
                self.ui.progressBar.value = int(100 * message.get("fraction", 0))
                self.ui.statusLabel.text = message.get("stage", "")
            elif kind == "log":
                self._appendLog(message.get("message", ""))
            elif kind == "error":
                self.ui.statusLabel.text = message.get("message", _("Failed."))
                for line in message.get("log", []):
                    self._appendLog(line)
                self.ui.logCollapsibleButton.collapsed = False
            elif kind == "result":
                self._onResult(message)
        if not self.logic.busy and not self._command:
            self.timer.stop()
        self._updateButtons()

    def _onResult(self, message: dict) -> None:
        with slicer.util.tryWithErrorDisplay(_("Loading the results failed."), waitCursor=True):
            self.logic.loadResults(self._parameterNode, message)
            device = message.get("device", {})
            self.ui.deviceInfoLabel.text = "{name}: {reason}".format(**device) if device else ""
            self.ui.progressBar.value = 100
            timings = message["results"][0]["timings_s"]
            seconds = sum(v for k, v in timings.items() if k != "model_load_s") + message.get("model_load_s", 0.0)
            self.ui.statusLabel.text = _("Done in {s:.1f} s on {d}.").format(s=seconds, d=device.get("name", "?"))
            self._lastThreshold = self._parameterNode.threshold
            self.ui.lesionTableView.setMRMLTableNode(self.logic.reviewTable(self._parameterNode))

    def _appendLog(self, line: str) -> None:
        self.ui.logTextEdit.appendPlainText(line)

    # --- results, threshold and review ----------------------------------------------------------------------

    def onThresholdChanged(self, value: float) -> None:
        p = self._parameterNode
        if not p or not p.segmentation or not p.softMap or value == self._lastThreshold:
            return
        overwrite = True
        if self.logic.lesionSegmentEdited(p):
            overwrite = slicer.util.confirmYesNoDisplay(
                _("The lesion segment has been edited. Overwrite your edits with the new threshold? "
                  "No: the new threshold is added as a separate segment."))
        self.logic.applyThreshold(p, value, overwrite=overwrite)
        self._lastThreshold = value

    def onCorrectButton(self) -> None:
        self.logic.openSegmentEditor(self._parameterNode)

    def _selectedLesionId(self) -> Optional[int]:
        selection = self.ui.lesionTableView.selectionModel()
        rows = {index.row() for index in selection.selectedIndexes()} if selection else set()
        if not rows:
            return None
        table = self.ui.lesionTableView.mrmlTableNode()
        return int(table.GetCellText(min(rows), 0))

    def onLesionClicked(self, index) -> None:
        lesion = self._selectedLesionId()
        if lesion is not None:
            self.logic.jumpToLesion(self._parameterNode, lesion)
        self._updateButtons()

    def onRejectLesionButton(self) -> None:
        lesion = self._selectedLesionId()
        if lesion is not None:
            self.logic.rejectLesion(self._parameterNode, lesion)
            self.ui.lesionTableView.setMRMLTableNode(self.logic.reviewTable(self._parameterNode))

    def onAcceptLesionButton(self) -> None:
        lesion = self._selectedLesionId()
        if lesion is not None:
            self.logic.acceptLesion(self._parameterNode, lesion)

    def onComputeStatisticsButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Computing statistics failed."), waitCursor=True):
            self.logic.computeStatistics(self._parameterNode)

    def onExportButton(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Export statistics to"))
        if folder:
            with slicer.util.tryWithErrorDisplay(_("Export failed."), waitCursor=True):
                written = self.logic.export(self._parameterNode, Path(folder))
                slicer.util.infoDisplay(_("Written:") + "\n" + "\n".join(str(p) for p in written))


class SpinalLesionSegLogic(ScriptedLoadableModuleLogic):
    """Orchestration: everything the panel does, callable without a GUI (the self-test and Python console use it).

    Inference runs in the persistent worker process (model kept loaded between runs); this class builds jobs,
    turns worker outputs into MRML nodes through SpinalLesionSegLib, and never imports torch.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.client: Optional[WorkerClient] = None
        self.workDir: Optional[str] = None
        self.accepted: set = set()

    def getParameterNode(self) -> SpinalLesionSegParameterNode:
        return SpinalLesionSegParameterNode(super().getParameterNode())

    # --- input -------------------------------------------------------------------------------------------

    def checkVolume(self, volumeNode: vtkMRMLScalarVolumeNode) -> str:
        """Validate a volume exactly as the command line validates a file; return a description of its grid.

        Raises InputError (one line naming the volume) when it cannot be segmented.
        """
        if volumeNode is None:
            raise InputError(None, "no input volume selected")
        image = image_from_volume_node(volumeNode)
        validate_image(image, volumeNode.GetName())
        description = format_description(volumeNode.GetName(), describe_image(image))
        logging.info(description)
        return description

    @staticmethod
    def guessContrast(volumeNode: vtkMRMLScalarVolumeNode) -> Optional[str]:
        """Contrast from the volume name (BIDS suffix) or, for DICOM, the series description."""
        guessed = guess_contrast(volumeNode.GetName() + ".nii.gz")
        if guessed:
            return guessed
        uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
        if uids and getattr(slicer, "dicomDatabase", None):
            description = slicer.dicomDatabase.fileValue(slicer.dicomDatabase.fileForInstance(uids[0]), "0008,103E")
            for contrast in CONTRASTS:
                if contrast.lower().replace("starw", "*") in description.lower() or contrast.lower() in description.lower():
                    return contrast
        return None

    # --- models and environment --------------------------------------------------------------------------

    @staticmethod
    def installedModels() -> list:
        from SpinalLesionSegLib.models.registry import list_models

        return [status.name for status in list_models() if status.installed]

    @staticmethod
    def publishedModels() -> list:
        from SpinalLesionSegLib.models.registry import list_models

        return [status.name for status in list_models() if status.kind == "published"]

    def workerPython(self, parameterNode: Optional[SpinalLesionSegParameterNode] = None) -> str:
        """The external interpreter when one is set, else Slicer's own Python launcher."""
        if parameterNode is not None and parameterNode.pythonPath.strip():
            return parameterNode.pythonPath.strip()
        return shutil.which("PythonSlicer") or sys.executable

    def startCommand(self, args: list) -> BackgroundCommand:
        return BackgroundCommand(self.workerPython(self.getParameterNode()), list(args))

    @staticmethod
    def installDependencies() -> None:
        """nnunetv2 into Slicer's Python, on the main thread, with Slicer's SimpleITK, torch and requests pinned.

        torch itself comes from the PyTorch extension (PyTorchUtils), which picks the right CUDA build.
        """
        import importlib.metadata

        try:
            import PyTorchUtils

            PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True)
        except ImportError:
            raise RuntimeError("the PyTorch extension is not installed: install it from the Extensions Manager")
        pins = []
        for package in ("SimpleITK", "torch", "requests"):
            try:
                pins.append(f"{package}=={importlib.metadata.version(package)}")
            except importlib.metadata.PackageNotFoundError:
                pass
        constraints = Path(tempfile.mkdtemp(prefix="SpinalLesionSeg-")) / "constraints.txt"
        constraints.write_text("\n".join(pins) + "\n")
        slicer.util.pip_install(f"nnunetv2>=2.8,<2.9 connected-components-3d -c {constraints}")

    # --- run -----------------------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return bool(self.client and self.client.busy)

    def buildJob(self, p: SpinalLesionSegParameterNode) -> dict:
        """Write the input volume (its own grid, as Slicer holds it) to a temporary NIfTI and describe the job."""
        if p.inputVolume is None:
            raise InputError(None, "no input volume selected")
        image = image_from_volume_node(p.inputVolume)
        validate_image(image, p.inputVolume.GetName())
        self.workDir = self.workDir or tempfile.mkdtemp(prefix="SpinalLesionSeg-")
        source = write_image(image, Path(self.workDir) / "input.nii.gz")
        contrast = p.contrast.replace("T2*w", "T2starw")
        if contrast == "auto":  # the temporary file has no BIDS name: guess from the volume name or DICOM here
            contrast = self.guessContrast(p.inputVolume) or "auto"
        job = {"inputs": [str(source)], "output_dir": str(Path(self.workDir) / "output"), "model": p.model,
               "device": p.device, "tta": bool(p.tta), "threshold": float(p.threshold), "contrast": contrast}
        if p.folds.strip():
            try:
                job["folds"] = [int(f) for f in p.folds.replace(",", " ").split()]
            except ValueError:
                raise InputError(None, f"folds must be numbers such as '0 1 2', got {p.folds!r}") from None
        box = self.roiBox(p)
        if box is not None:
            job["roi_box"] = {"ras_min": list(box.ras_min), "ras_max": list(box.ras_max)}
        return job

    def roiBox(self, p: SpinalLesionSegParameterNode):
        """The region of interest in RAS mm (markups ROI bounds, or a cord segmentation's box) plus the margin."""
        node = p.roiNode
        if node is None:
            return None
        margin = float(p.roiMarginMm)
        if node.IsA("vtkMRMLSegmentationNode"):
            mask = labelmap_from_segmentation(node, p.inputVolume)
            return box_from_mask(mask, margin, source=node.GetName())
        bounds = [0.0] * 6
        node.GetRASBounds(bounds)
        return box_from_corners([bounds[0] - margin, bounds[2] - margin, bounds[4] - margin],
                                [bounds[1] + margin, bounds[3] + margin, bounds[5] + margin], node.GetName())

    def run(self, p: SpinalLesionSegParameterNode) -> str:
        """Submit a job to the persistent worker (started on first use). Returns the job id."""
        job = self.buildJob(p)
        python = self.workerPython(p)
        if self.client is None or self.client.python != python:
            self.stopWorker()
            self.client = WorkerClient(python)
        return self.client.submit(job)

    def poll(self) -> list:
        return self.client.poll() if self.client else []

    def cancel(self) -> None:
        if self.client:
            self.client.cancel()

    def stopWorker(self) -> None:
        if self.client:
            self.client.stop()
            self.client = None

    def loadResults(self, p: SpinalLesionSegParameterNode, message: dict) -> None:
        """Build the soft-map volume and the lesion segmentation from the worker's outputs; show and jump."""
        outputs = message["results"][0]["outputs"]
        name = p.inputVolume.GetName()
        p.softMap = show_soft_map(slicer.mrmlScene, read_image(outputs["lesion_soft"]), f"{name} lesion probability")
        cord = read_image(outputs["sc_seg"]) if "sc_seg" in outputs else None
        p.segmentation = create_lesion_segmentation(slicer.mrmlScene, read_image(outputs["lesion_seg"]),
                                                    p.inputVolume, cord)
        p.segmentation.CreateClosedSurfaceRepresentation()
        self.accepted.clear()
        slicer.util.setSliceViewerLayers(background=p.inputVolume, foreground=p.softMap, foregroundOpacity=0.4)
        position = largest_lesion_ras(p.segmentation, lesion_segment_id(p.segmentation), p.inputVolume)
        if position is not None:
            slicer.modules.markups.logic().JumpSlicesToLocation(*position, True)

    # --- threshold, correction and review -------------------------------------------------------------------

    def lesionSegmentEdited(self, p: SpinalLesionSegParameterNode) -> bool:
        return segment_was_edited(p.segmentation, lesion_segment_id(p.segmentation))

    def applyThreshold(self, p: SpinalLesionSegParameterNode, threshold: float, overwrite: bool = True) -> None:
        """Re-binarise from the soft map (no model run): in place, or as a new segment beside edited work.

        When the Segment Editor shows this segmentation, its undo state is saved first, so Undo there brings the
        previous mask back."""
        editorWidget = slicer.modules.segmenteditor.widgetRepresentation()
        if editorWidget is not None:
            editor = editorWidget.self().editor
            if editor.segmentationNode() is p.segmentation:
                editor.saveStateForUndo()
        if overwrite:
            rethreshold_lesion_segment(p.segmentation, lesion_segment_id(p.segmentation), p.softMap, threshold,
                                       p.inputVolume)
        else:
            add_thresholded_segment(p.segmentation, p.softMap, threshold, p.inputVolume)

    def openSegmentEditor(self, p: SpinalLesionSegParameterNode) -> None:
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(p.segmentation)
        editor.setSourceVolumeNode(p.inputVolume)
        editor.mrmlSegmentEditorNode().SetSelectedSegmentID(lesion_segment_id(p.segmentation))
        editor.setActiveEffectByName("Islands")
        effect = editor.activeEffect()
        if effect:
            effect.setParameter("MinimumSize", str(ISLANDS_MINIMUM_SIZE))
        editor.setActiveEffect(None)

    def reviewTable(self, p: SpinalLesionSegParameterNode):
        """The lesion table (id, volume, mean probability, level, flag), refreshed in place; accepted lesions
        keep the flag "accepted"."""
        existing = slicer.mrmlScene.GetFirstNodeByName(f"{p.inputVolume.GetName()} lesion review")
        table = lesion_review_table(slicer.mrmlScene, p.segmentation, lesion_segment_id(p.segmentation), p.softMap,
                                    p.inputVolume, table=existing)
        table.SetName(f"{p.inputVolume.GetName()} lesion review")
        flag = table.GetColumnIndex("flag")
        for row in range(table.GetNumberOfRows()):
            if self._centroidKey(table, row) in self.accepted:
                table.SetCellText(row, flag, "accepted")
        return table

    @staticmethod
    def _centroidKey(table, row: int) -> tuple:
        """A lesion's identity across edits: its centroid (RAS, 0.1 mm); ids are renumbered when lesions change."""
        return tuple(round(float(table.GetCellText(row, table.GetColumnIndex(f"centroid_{axis}_mm"))), 1)
                     for axis in "ras")

    def jumpToLesion(self, p: SpinalLesionSegParameterNode, lesion: int) -> None:
        position = lesion_centroid_ras(p.segmentation, lesion_segment_id(p.segmentation), lesion, p.inputVolume)
        slicer.modules.markups.logic().JumpSlicesToLocation(*position, True)

    def rejectLesion(self, p: SpinalLesionSegParameterNode, lesion: int) -> None:
        reject_lesion(p.segmentation, lesion_segment_id(p.segmentation), lesion, p.inputVolume)

    def acceptLesion(self, p: SpinalLesionSegParameterNode, lesion: int) -> None:
        """Mark a lesion as reviewed (its flag becomes "accepted")."""
        table = self.reviewTable(p)
        for row in range(table.GetNumberOfRows()):
            if int(table.GetCellText(row, 0)) == lesion:
                self.accepted.add(self._centroidKey(table, row))
        self.reviewTable(p)

    def levelSource(self, p: SpinalLesionSegParameterNode):
        """The vertebral levels for statistics: from a markups point list naming discs, or from a label map
        (SCT labelled cord, TotalSpineSeg or disc points, detected as the command line does); None for totals."""
        node = p.levelsNode
        if node is None:
            return None
        if node.IsA("vtkMRMLMarkupsFiducialNode"):
            return level_source_from_markups(node)
        self.workDir = self.workDir or tempfile.mkdtemp(prefix="SpinalLesionSeg-")
        path = write_image(image_from_volume_node(node), Path(self.workDir) / "levels.nii.gz")
        return load_level_source(path)

    def _cordSegmentId(self, p: SpinalLesionSegParameterNode):
        content = p.segmentation.GetSegmentation()
        return content.GetSegmentIdBySegmentName(CORD_SEGMENT_NAME) or None

    def computeStatistics(self, p: SpinalLesionSegParameterNode):
        """Lesion and per-level tables and the volume-per-level bar chart, from the current (corrected) segment."""
        source = self.levelSource(p)
        analysis = analyze_segment(p.segmentation, lesion_segment_id(p.segmentation), p.inputVolume,
                                   soft_node=p.softMap, levels=source, cord_segment_id=self._cordSegmentId(p))
        nodes = statistics_nodes(slicer.mrmlScene, analysis, source, p.inputVolume.GetName(),
                                 with_cord=self._cordSegmentId(p) is not None)
        slicer.modules.plots.logic().ShowChartInLayout(nodes.chart)
        return nodes

    def export(self, p: SpinalLesionSegParameterNode, folder: Path) -> list:
        """Write lesions.csv, levels.csv, summary.json (as the command line) and the corrected segmentation
        (.seg.nrrd and NIfTI) into ``folder``; return the paths written."""
        export_statistics(folder, p.segmentation, lesion_segment_id(p.segmentation), p.inputVolume,
                                    soft_node=p.softMap, levels=self.levelSource(p),
                                    cord_segment_id=self._cordSegmentId(p), save_seg_nrrd=True, save_nifti=True)
        return sorted(path for path in Path(folder).iterdir() if path.is_file() and not path.name.startswith("."))


class SpinalLesionSegTest(ScriptedLoadableModuleTest):
    """Slicer self-test: runs inside a real Slicer (Developer mode > Reload and Test)."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_checkVolume()
        self.setUp()
        self.test_workflow()

    def test_checkVolume(self) -> None:
        import numpy as np
        import SimpleITK as sitk

        from SpinalLesionSegLib.mrml.nodes import volume_node_from_image

        self.delayDisplay("Checking a synthetic volume")
        image = sitk.GetImageFromArray(np.random.default_rng(0).normal(100, 10, (12, 20, 16)).astype(np.float32))
        image.SetSpacing((0.5, 0.5, 3.0))
        image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # LPS identity flipped = RAS-aligned voxel axes
        volume = volume_node_from_image(slicer.mrmlScene, image, "phantom")
        logic = SpinalLesionSegLogic()
        description = logic.checkVolume(volume)
        self.assertIn("RAS", description)
        self.assertIn("16 x 20 x 12", description)

        self.delayDisplay("Refusing a volume with NaN voxels")
        array = sitk.GetArrayFromImage(image)
        array[3, 4, 5] = np.nan
        bad = sitk.GetImageFromArray(array)
        bad.CopyInformation(image)
        badVolume = volume_node_from_image(slicer.mrmlScene, bad, "bad")
        with self.assertRaises(InputError):
            logic.checkVolume(badVolume)
        self.delayDisplay("Test passed")

    def test_workflow(self) -> None:
        """Phantom -> demo model in the worker -> soft map + segmentation -> threshold -> review -> statistics."""
        import time

        import numpy as np

        from SpinalLesionSegLib.mrml.nodes import volume_node_from_image
        from SpinalLesionSegLib.mrml.results import segment_mask
        from SpinalLesionSegLib.phantom import make_phantom

        self.delayDisplay("Running the demo model on a phantom in the background worker")
        phantom = make_phantom(3, contrast="T2w", spacing=(1.0, 1.0, 1.0))
        volume = volume_node_from_image(slicer.mrmlScene, phantom.image, "phantom_T2w")
        logic = SpinalLesionSegLogic()
        p = logic.getParameterNode()
        p.inputVolume = volume
        p.model = "demo"
        p.device = "cpu"
        logic.run(p)
        result = None
        deadline = time.monotonic() + 300
        while result is None and time.monotonic() < deadline:
            slicer.app.processEvents()  # the GUI stays responsive while the worker runs
            for message in logic.poll():
                self.assertNotEqual(message["type"], "error", message.get("message"))
                if message["type"] == "result":
                    result = message
            time.sleep(0.1)
        self.assertIsNotNone(result, "the worker did not answer in time")
        logic.loadResults(p, result)
        self.assertEqual(p.segmentation.GetName(), "phantom_T2w lesions")
        segment = lesion_segment_id(p.segmentation)
        self.assertEqual(p.segmentation.GetSegmentation().GetSegment(segment).GetName(), "MS lesion")

        self.delayDisplay("Live threshold")
        logic.applyThreshold(p, 0.3)
        soft = slicer.util.arrayFromVolume(p.softMap)
        mask = segment_mask(p.segmentation, segment, p.inputVolume)
        self.assertTrue(np.array_equal(mask, soft >= 0.3))
        self.assertFalse(logic.lesionSegmentEdited(p))

        self.delayDisplay("Lesion review")
        table = logic.reviewTable(p)
        count = table.GetNumberOfRows()
        self.assertGreater(count, 0, "the demo model should find the phantom's lesions")
        lesion = int(table.GetCellText(0, 0))
        logic.jumpToLesion(p, lesion)
        logic.rejectLesion(p, lesion)
        self.assertEqual(logic.reviewTable(p).GetNumberOfRows(), count - 1)

        self.delayDisplay("Statistics per level and export")
        levels = volume_node_from_image(slicer.mrmlScene, phantom.levels, "phantom levels",
                                        "vtkMRMLLabelMapVolumeNode")
        p.levelsNode = levels
        nodes = logic.computeStatistics(p)
        self.assertEqual(nodes.lesions.GetNumberOfRows(), count - 1)
        folder = Path(tempfile.mkdtemp(prefix="SpinalLesionSegTest-"))
        names = {path.name for path in logic.export(p, folder)}
        self.assertTrue({"lesions.csv", "levels.csv", "summary.json"} <= names, names)
        logic.stopWorker()
        self.delayDisplay("Test passed")
