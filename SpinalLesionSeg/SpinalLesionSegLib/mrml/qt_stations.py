"""The panel's "Other station" rows (Slicer's PythonQt ``qt``; imported only by the module file).

An exam in two series (a cervical and a thoracic station): pick the other station's volume, its segmentation and its
levels under "Levels and statistics", and "Compute statistics over both stations" fills the panel's statistics
tables and chart with one table for the patient, each lesion counted once. What happens is
:func:`.stations.panel_station_statistics`'s (tested headless); this file builds the widgets and shows the outcome.

Built in code rather than in the .ui, so the module file binds it in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import qt
import slicer
from slicer.i18n import tr as _

from .qt_section import PanelSection
from .review_steps import Parameters
from .stations import panel_station_statistics


class StationRows(PanelSection):
    """The rows, appended to ``section`` (the "Levels and statistics" section, a form). ``parameters`` returns
    the panel's parameter node (None while the module is not shown); ``logic`` is the panel's logic (its work
    folder takes the levels written for reading)."""

    def __init__(self, section: qt.QWidget, parameters: Callable[[], Parameters | None], logic: Any) -> None:
        self.parameters, self.logic = parameters, logic
        form = section.layout()
        self.volumeSelector = self._selector(form, _("Other station:"), ["vtkMRMLScalarVolumeNode"], _(
            "Another series of the same exam (e.g. the thoracic station when the input is the cervical one), "
            "overlapping or touching the input volume in space."))
        self.segmentationSelector = self._selector(form, _("Its lesions:"), ["vtkMRMLSegmentationNode"], _(
            "The other station's segmentation: its 'MS lesion' segment (or its only segment) as corrected, and its "
            "'Spinal cord' segment if the input's segmentation has one too."))
        self.levelsSelector = self._selector(form, _("Its levels:"), [
            "vtkMRMLLabelMapVolumeNode", "vtkMRMLMarkupsFiducialNode"], _(
            "The other station's levels, of the same kind as the input's (a labelled cord or TotalSpineSeg map, or "
            "disc points); disc points of both stations are used together."))
        self._button(form, _("Compute statistics over both stations"), self.onCompute, _(
            "One lesion and per-level table for the patient: the two stations merged in space, the overlap split "
            "at its middle, so a lesion seen in both series is counted once (as 'stats --lesion A B')."))
        self.statusLabel = qt.QLabel()
        self.statusLabel.wordWrap = True
        form.addRow(self.statusLabel)

    def onCompute(self) -> None:
        p = self.parameters()
        volume, segmentation = self.volumeSelector.currentNode(), self.segmentationSelector.currentNode()
        if p is None or p.segmentation is None or volume is None or segmentation is None:
            self._say(_("Run the model (or pick a segmentation) first, and choose the other station and its "
                        "lesions."), error=True)
            return

        def compute() -> None:
            others = [(volume, segmentation, self.levelsSelector.currentNode())]
            nodes = panel_station_statistics(slicer.mrmlScene, p, others, self.logic.work_path)
            slicer.modules.plots.logic().ShowChartInLayout(nodes.chart)
            self._say(_("Statistics over {count} stations: {lesions} lesion(s).").format(
                count=len(others) + 1, lesions=nodes.lesions.GetNumberOfRows()))

        self._attempt(compute, _("Computing statistics over the stations failed."))
