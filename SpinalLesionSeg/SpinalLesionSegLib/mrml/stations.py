"""Statistics over the stations of one exam in the panel (scene and nodes passed in): the current volume and its
segmentation plus other stations (a cervical and a thoracic series...), one lesion and one per-level table.

The same merge as ``stats --lesion A B`` (:func:`..analysis.stations.merge_stations`: union grid, the overlap split,
each lesion once, disc points pooled), on each station's corrected segment, cord segment (plus its lesions, as
:func:`.review.analyze_segment` takes the cord) and levels. Soft maps are left out: another station's soft map is not
known to the panel, and a merged soft map needs one for every station.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import slicer

from ..analysis.lesions import analyze_lesions
from ..analysis.levels import LevelSource
from ..analysis.stations import Station, merge_stations
from .results import CORD_SEGMENT_NAME, lesion_segment_id
from .review import grid_image, segment_arrays
from .review_steps import Parameters
from .statistics import StatisticsNodes, level_source_from_node, statistics_nodes


@dataclass(frozen=True)
class StationNodes:
    """One station: its volume, its segmentation (the lesion segment as corrected, and a ``Spinal cord`` segment
    when there is one) and its levels (None: none)."""

    volume: slicer.vtkMRMLScalarVolumeNode
    segmentation: slicer.vtkMRMLSegmentationNode
    levels: LevelSource | None = None


def station_statistics(scene: slicer.vtkMRMLScene, stations: Sequence[StationNodes], name: str,
                       owner: slicer.vtkMRMLNode | None = None) -> StatisticsNodes:
    """The lesion and per-level tables and the chart of the stations merged (:func:`.statistics.statistics_nodes`,
    refreshed in place for the same ``owner``). InputError when the stations neither overlap nor touch, or when
    some have a cord segment and others not."""
    exam = merge_stations([_station(number, nodes) for number, nodes in enumerate(stations, start=1)])
    analysis = analyze_lesions(exam.lesion, exam.grid, levels=exam.levels, cord=exam.cord)
    return statistics_nodes(scene, analysis, exam.levels, name, with_cord=exam.cord is not None, owner=owner)


def panel_station_statistics(scene: slicer.vtkMRMLScene, p: Parameters, others: Sequence[tuple[Any, Any, Any]],
                             work_path: Callable[[str], Path]) -> StatisticsNodes:
    """The panel's statistics over its scan (input volume, segmentation, Levels selector) and ``others``
    (volume, segmentation, levels node or None per station), in the tables of its own statistics (the
    segmentation owns them); label maps of levels are written to ``work_path(name)`` (the panel's work folder)
    to be read as files are."""
    stations = [StationNodes(volume, segmentation, level_source_from_node(levels, work_path(f"levels_{n}.nii.gz")))
                for n, (volume, segmentation, levels) in enumerate([(p.inputVolume, p.segmentation, p.levelsNode),
                                                                    *others], start=1)]
    return station_statistics(scene, stations, p.inputVolume.GetName(), owner=p.segmentation)


def _station(number: int, nodes: StationNodes) -> Station:
    segmentation = nodes.segmentation
    cord_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName(CORD_SEGMENT_NAME) or None
    lesion, _, cord = segment_arrays(segmentation, lesion_segment_id(segmentation), nodes.volume, None, cord_id)
    return Station(grid_image(nodes.volume), lesion, f"station {number} ({nodes.volume.GetName()})",
                   cord=None if cord is None else cord | lesion, levels=nodes.levels)
