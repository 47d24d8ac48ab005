"""SpinalLesionSeg: MS lesion segmentation of spinal cord MRI in 3D Slicer.

This file stays thin. The Module describes the module, the Widget binds the .ui panel to a parameter node, the
Logic orchestrates calls into ``SpinalLesionSegLib`` (the pure-Python core, also used by the command line and the
tests), and the Test class is Slicer's self-test. Inference never runs here: it runs in a worker process.
"""

from __future__ import annotations

import logging

import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from SpinalLesionSegLib import __version__
from SpinalLesionSegLib.describe import describe_image, format_description
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.mrml import image_from_volume_node
from SpinalLesionSegLib.validation import validate_image


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
            '<a href="https://github.com/SpinalLesionSeg/SpinalLesionSeg">Documentation</a>.'
        ).format(version=__version__)
        self.parent.acknowledgementText = _(
            "Models by the NeuroPoly lab (Polytechnique Montreal) and collaborators; nnU-Net by the MIC group of the "
            "German Cancer Research Center (DKFZ). Please cite the model papers listed in the documentation."
        )


@parameterNodeWrapper
class SpinalLesionSegParameterNode:
    """The panel's state, saved with the scene.

    inputVolume -- the MRI volume to segment.
    """

    inputVolume: vtkMRMLScalarVolumeNode


class SpinalLesionSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds the .ui panel to the parameter node and forwards actions to the Logic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

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

        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
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
            self._updateButtons()

    def _updateButtons(self, caller=None, event=None) -> None:
        hasInput = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.checkInputButton.enabled = hasInput
        self.ui.inputInfoLabel.text = ""

    def onCheckInputButton(self) -> None:
        try:
            self.ui.inputInfoLabel.text = self.logic.checkVolume(self._parameterNode.inputVolume)
            self.ui.inputInfoLabel.styleSheet = ""
        except InputError as error:
            self.ui.inputInfoLabel.text = str(error)
            self.ui.inputInfoLabel.styleSheet = "color: #c0392b"


class SpinalLesionSegLogic(ScriptedLoadableModuleLogic):
    """Orchestration: everything the panel does, callable without a GUI (the self-test and Python console use it)."""

    def getParameterNode(self) -> SpinalLesionSegParameterNode:
        return SpinalLesionSegParameterNode(super().getParameterNode())

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


class SpinalLesionSegTest(ScriptedLoadableModuleTest):
    """Slicer self-test: runs inside a real Slicer (Developer mode > Reload and Test)."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_checkVolume()

    def test_checkVolume(self) -> None:
        import numpy as np
        import SimpleITK as sitk

        from SpinalLesionSegLib.mrml import volume_node_from_image

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
