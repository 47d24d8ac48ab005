"""The panel's per-sequence volume selectors (Slicer's PythonQt ``qt``; imported only by the module file).

When the chosen model has several input channels (T2w + STIR...), the Inputs section gets one volume selector per
sequence, pre-filled from the volumes' names and DICOM series descriptions (also for volumes loaded later, into an
empty selector), offering "missing" where the model's policy allows a sequence to be left out. The choice is the
logic's ``sequence_choice`` (:mod:`.sequence_inputs`, tested headless), which the run turns into a multi-sequence
job; the input volume follows the reference sequence's volume, so the results, levels and statistics are on its
grid. A one-input model removes the rows and gives the input volume selector back.

Built in code rather than in the .ui (the number of rows is the model's), so the module file binds it in one line.
"""

from __future__ import annotations

from typing import Any

import qt
import slicer
from slicer.i18n import tr as _

from ..contrasts import contrast_label
from ..errors import InputError
from .nodes import scalar_volumes
from .qt_section import PanelSection
from .sequence_inputs import SequenceChoice, model_sequences, prefill


class SequenceRows(PanelSection):
    """The rows, in ``ui.inputsCollapsibleButton``'s form, following ``ui.modelComboBox``; ``logic`` is the
    panel's logic (its ``sequence_choice`` is set here; ``seriesDescription`` gives a volume's DICOM one)."""

    def __init__(self, ui: Any, logic: Any) -> None:
        self.ui, self.logic = ui, logic
        self.form = ui.inputsCollapsibleButton.layout()
        self.selectors: list[Any] = []
        self.statusLabel = qt.QLabel()
        self.statusLabel.wordWrap = True
        self.form.addRow(self.statusLabel)
        ui.modelComboBox.connect("currentTextChanged(QString)", self.onModelChanged)
        self.onModelChanged(ui.modelComboBox.currentText)

    def onModelChanged(self, name: str) -> None:
        """Rebuild the rows for model ``name`` (none for a one-input model)."""
        for selector in self.selectors:
            self.form.removeRow(selector)  # deletes the selector and its label
        self.selectors, self.logic.sequence_choice = [], None
        sequences = model_sequences(name) if name else None
        self.ui.inputVolumeSelector.enabled = sequences is None
        if sequences is None:
            self._say("")
            return
        volumes = scalar_volumes(slicer.mrmlScene)
        choice = prefill(sequences, volumes, {v.GetID(): self.logic.seriesDescription(v) for v in volumes})
        for channel in sequences.channels:
            selector = self._selector(self.form, _("{sequence} volume:").format(sequence=contrast_label(channel)),
                                      ["vtkMRMLScalarVolumeNode"], _(
                "The volume of this sequence; the others are registered onto the reference sequence's grid, where "
                "the results are."))
            selector.noneEnabled = sequences.may_miss
            selector.noneDisplay = _("missing")
            selector.setCurrentNode(choice.volumes[channel])
            choice.volumes[channel] = selector.currentNode()
            selector.connect("currentNodeChanged(vtkMRMLNode*)",
                             lambda node, channel=channel: self.onVolumeChanged(choice, channel, node))
            selector.connect("nodeAdded(vtkMRMLNode*)", lambda node, channel=channel, selector=selector:
                             self.onVolumeAdded(choice, channel, selector, node))
            self.selectors.append(selector)
        self.logic.sequence_choice = choice
        self.onVolumeChanged(choice, None, None)

    def onVolumeAdded(self, choice: SequenceChoice, channel: str, selector: Any, node: Any) -> None:
        """A volume loaded after the model was chosen fills its sequence's selector when that one is empty and the
        volume's name or series description names the sequence (as the pre-fill does)."""
        found = prefill(choice.sequences, [node], {node.GetID(): self.logic.seriesDescription(node)})
        if selector.currentNode() is None and found.volumes[channel] is node:
            selector.setCurrentNode(node)

    def onVolumeChanged(self, choice: SequenceChoice, channel: str | None, node: Any) -> None:
        """Record a selector's volume; the input volume follows the reference sequence's."""
        if channel is not None:
            choice.volumes[channel] = node
        try:
            choice.present()
            self.ui.inputVolumeSelector.setCurrentNode(choice.reference_volume())
        except InputError as error:
            self._say(str(error), error=True)
            return
        missing = [contrast_label(c) for c, volume in choice.volumes.items() if volume is None]
        self._say(_("Model {model} reads {count} sequences; missing: {missing}.").format(
            model=choice.sequences.model, count=len(choice.sequences.channels),
            missing=", ".join(missing) or _("none")))
