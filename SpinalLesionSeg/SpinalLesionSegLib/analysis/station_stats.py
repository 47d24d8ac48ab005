"""``stats`` over the stations of one exam (``--lesion A B ...``): one per-level table for the patient.

Each station's files are read and checked as a single ``stats`` reads them (:func:`.report.read_stats_inputs`); the
stations are merged on their union grid (:mod:`.stations`: the overlap split at its middle, each lesion once); the
analysis and the files written are then those of ``stats`` (:func:`.report.write_report`), with the lesion label
image on the union grid and the inputs of every station listed in ``summary.json``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..defaults import CONNECTIVITY, LEVEL_MAX_DISTANCE_MM, OUTSIDE_CORD_MARGIN_MM
from .level_sources import AUTO
from ..errors import InputError
from ..image_io import sha256_file
from .lesions import analyze_lesions
from .outside_cord import with_outside_cord
from .report import PathLike, StatsOutputs, read_stats_inputs, write_report
from .stations import Station, merge_stations

#: File stem of the merged lesion label image.
STEM = "stations"


def run_station_stats(lesion_paths: Sequence[PathLike], out_dir: PathLike, *,
                      soft_paths: Sequence[PathLike] = (), cord_paths: Sequence[PathLike] = (),
                      levels_paths: Sequence[PathLike] = (), levels_kind: str = AUTO,
                      restrict_to_cord: bool = False, cord_dilation_mm: float = 0.0, connectivity: int = CONNECTIVITY, min_size_mm3: float = 0.0,
                      max_distance_mm: float = LEVEL_MAX_DISTANCE_MM, resample: bool = False,
                      outside_cord_margin_mm: float = OUTSIDE_CORD_MARGIN_MM) -> StatsOutputs:
    """Per-lesion and per-level statistics of a multi-station exam: the i-th soft map, cord and levels file belong
    to the i-th lesion mask (each list empty or as long as ``lesion_paths``)."""
    files = per_station(lesion_paths, {"--soft": soft_paths, "--cord": cord_paths, "--levels": levels_paths})
    stations = []
    for number, (lesion, soft, cord, levels) in enumerate(files, start=1):
        reference, mask, soft_values, cord_mask, source = read_stats_inputs(lesion, soft, cord, levels, levels_kind,
                                                                            resample)
        stations.append(Station(reference, mask, f"station {number} ({lesion})", soft=soft_values, cord=cord_mask,
                                levels=source))
    exam = merge_stations(stations)
    analysis = analyze_lesions(exam.lesion, exam.grid, soft=exam.soft, levels=exam.levels, cord=exam.cord,
                               restrict_to_cord=restrict_to_cord, cord_dilation_mm=cord_dilation_mm,
                               max_distance_mm=max_distance_mm, connectivity=connectivity, min_size_mm3=min_size_mm3)
    analysis = with_outside_cord(analysis, exam.cord, exam.grid.GetSpacing()[::-1], outside_cord_margin_mm)
    inputs = {f"{role}_{number}": {"path": str(path), "sha256": sha256_file(path)}
              for number, row in enumerate(files, start=1)
              for role, path in zip(("lesion", "soft", "cord", "levels"), row) if path}
    return write_report(analysis, exam.grid, out_dir, STEM, source=exam.levels, with_cord=exam.cord is not None,
                        inputs=inputs, restrict_to_cord=restrict_to_cord, cord_dilation_mm=cord_dilation_mm,
                        min_size_mm3=min_size_mm3, max_distance_mm=max_distance_mm)


def per_station(lesions: Sequence[PathLike], others: dict[str, Sequence[PathLike]]
                 ) -> list[tuple[PathLike, PathLike | None, PathLike | None, PathLike | None]]:
    """(lesion, soft, cord, levels) per station; InputError when an option has another number of files."""
    for option, paths in others.items():
        if paths and len(paths) != len(lesions):
            raise InputError(None, f"{option} gives {len(paths)} file(s) for {len(lesions)} stations: give one per "
                                   "--lesion, in the same order")
    columns = [list(paths) or [None] * len(lesions) for paths in others.values()]
    return list(zip(lesions, *columns))
