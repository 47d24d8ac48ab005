"""The report of a multi-station exam (``report --image A B --lesion A_mask B_mask``): one report for the patient.

The numbers are those of ``stats`` on the same stations (:mod:`..analysis.station_stats`): each station read and
checked as one scan is (:func:`..analysis.report.read_stats_inputs`), merged on the union grid
(:func:`..analysis.stations.merge_stations`: the overlap split, each lesion once, disc points pooled), then analysed.
The pictures are drawn from the stations' scans merged the same way (each voxel from the station that owns it,
linear interpolation), so the sagittal overview shows the whole cord the stations cover.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..analysis.lesions import analyze_lesions
from ..analysis.level_sources import AUTO
from ..analysis.report import read_stats_inputs
from ..analysis.station_stats import per_station
from ..analysis.stations import Station, merge_stations, pick_on_grid
from ..errors import InputError
from ..image_io import array_to_image, image_to_array, input_digest, read_image, resample_to_grid, sha256_file
from .data import ReportData, report_data

PathLike = str | os.PathLike[str]


def gather_station_report_data(image_paths: Sequence[PathLike], lesion_paths: Sequence[PathLike], *,
                               soft_paths: Sequence[PathLike] = (), cord_paths: Sequence[PathLike] = (),
                               levels_paths: Sequence[PathLike] = (), levels_kind: str = AUTO,
                               patient_id: str | None = None, resample: bool = False) -> ReportData:
    """:class:`.data.ReportData` of the stations (the i-th image, soft map, cord and levels belong to the i-th
    lesion mask; each list empty or one per station). InputError for an unusable input or stations that do not
    overlap or touch."""
    if len(image_paths) != len(lesion_paths):
        raise InputError(None, f"{len(image_paths)} image(s) for {len(lesion_paths)} lesion masks: give one --image "
                               "per --lesion station, in the same order")
    files = per_station(lesion_paths, {"--image": image_paths, "--soft": soft_paths, "--cord": cord_paths,
                                       "--levels": levels_paths})
    stations = [_station(number, row, levels_kind, resample) for number, row in enumerate(files, start=1)]
    exam = merge_stations(stations)
    analysis = analyze_lesions(exam.lesion, exam.grid, soft=exam.soft, levels=exam.levels, cord=exam.cord)
    scans = pick_on_grid(stations, exam.owner, exam.grid, lambda s: image_to_array(s.image).astype(np.float32),
                         sitk.sitkLinear)
    volumes = {"image": array_to_image(scans, exam.grid)}
    if exam.soft is not None:
        volumes["soft"] = array_to_image(exam.soft.astype(np.float32), exam.grid)
    if exam.cord is not None:
        volumes["cord"] = array_to_image(exam.cord.astype(np.uint8), exam.grid)
    roles = ("lesion", "image", "soft", "cord", "levels")  # the order of per_station's rows
    inputs = {f"{role}_{number}": Path(row[roles.index(role)]) for number, row in enumerate(files, start=1)
              for role in ("image", "lesion", "soft", "levels", "cord") if row[roles.index(role)]}
    digests = {role: input_digest(path) if role.startswith("image_") else sha256_file(path)
               for role, path in inputs.items()}
    return report_data(analysis, exam.grid, exam.levels, inputs, digests, with_cord=exam.cord is not None,
                       patient_id=patient_id, volumes=volumes, station_count=len(stations))


def _station(number: int, row: tuple, levels_kind: str, resample: bool) -> Station:
    """One station read as ``stats`` reads one scan, with its scan on the lesion mask's grid (the pictures')."""
    lesion, image, soft, cord, levels = row
    reference, mask, soft_values, cord_mask, source = read_stats_inputs(lesion, soft, cord, levels, levels_kind,
                                                                        resample)
    scan = resample_to_grid(read_image(image), reference, image, f"the lesion mask {lesion}", allow=resample)
    return Station(sitk.Cast(scan, sitk.sitkFloat32), mask, f"station {number} ({lesion})", soft=soft_values,
                   cord=cord_mask, levels=source)
