"""Multi-station exams: two overlapping stations cut from one real labelled image give the whole image's per-level
table, with a lesion in the overlap counted once, whether the levels are label images or disc points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from analysis_data import T2, box_lesion, level_boundary_discs, load
from SpinalLesionSegLib.analysis.lesions import analyze_lesions
from SpinalLesionSegLib.analysis.levels import LevelSource
from SpinalLesionSegLib.analysis.report import level_table
from SpinalLesionSegLib.analysis.stations import Station, merge_stations
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.image_io import array_to_image, image_to_array

#: Stations along j (inferior -> superior): slices 0..33 and 20..54; the overlap is slices 20..33.
CUTS = (slice(0, 34), slice(20, 55))


@pytest.fixture(scope="module")
def exam(shared_data: Path) -> dict:
    """The real T2w crop with its real cord and SCT labels (C2-C5); lesions below, in and above the overlap, one
    spanning the split in the overlap's middle; a soft map."""
    image, _ = load(shared_data / T2 / "t2.nii.gz")
    cord = image_to_array(sitk.ReadImage(str(shared_data / T2 / "t2_seg-manual.nii.gz"))) > 0
    labels = image_to_array(sitk.ReadImage(str(shared_data / T2 / "t2_seg-manual_labeled.nii.gz"))).astype(np.int16)
    lesion = box_lesion(cord, range(8, 12)) | box_lesion(cord, range(24, 30)) | box_lesion(cord, range(44, 48))
    soft = np.where(lesion, 0.9, np.where(cord, 0.1, 0.0))
    return {"image": image, "cord": cord, "labels": labels, "lesion": lesion, "soft": soft}


def _table(lesion: np.ndarray, image: sitk.Image, soft: np.ndarray, cord: np.ndarray, levels: LevelSource) -> list:
    return level_table(analyze_lesions(lesion, image, soft=soft, cord=cord, levels=levels), levels)


def _rounded(rows: list[dict]) -> list[dict]:
    """Rows with floats to 9 significant digits (sums in another order differ in the last bits)."""
    return [{key: float(f"{value:.9g}") if isinstance(value, float) else value for key, value in row.items()}
            for row in rows]


def _stations(exam: dict, discs: bool) -> list[Station]:
    stations = []
    for number, cut in enumerate(CUTS):
        part = exam["image"][:, cut, :]  # SimpleITK slicing keeps the cut's position in space
        labels, cord = exam["labels"][:, cut, :], exam["cord"][:, cut, :]
        levels = LevelSource("discs", Path("discs"), discs=level_boundary_discs(labels, cord, part)) if discs \
            else LevelSource("cord_labels", Path("labels"), regions=array_to_image(labels, part))
        stations.append(Station(part, exam["lesion"][:, cut, :], f"station {number + 1}", soft=exam["soft"][:, cut, :],
                                cord=cord, levels=levels))
    return stations


@pytest.mark.parametrize("discs", [False, True], ids=["labelled cords", "disc points"])
def test_two_stations_give_the_whole_images_table(exam: dict, discs: bool) -> None:
    merged = merge_stations(_stations(exam, discs))
    assert merged.grid.GetSize() == exam["image"].GetSize()
    assert np.allclose(merged.grid.GetOrigin(), exam["image"].GetOrigin(), atol=1e-6)
    assert np.array_equal(merged.lesion, exam["lesion"]) and np.array_equal(merged.cord, exam["cord"])
    owner = merged.owner[0, :, 0]
    assert set(owner[:20]) == {0} and set(owner[34:]) == {1} and {0, 1} <= set(owner[20:34])  # split in the overlap
    if discs:
        whole_levels = LevelSource("discs", Path("discs"),
                                   discs=level_boundary_discs(exam["labels"], exam["cord"], exam["image"]))
    else:
        whole_levels = LevelSource("cord_labels", Path("labels"), regions=array_to_image(exam["labels"], exam["image"]))
    whole = _table(exam["lesion"], exam["image"], exam["soft"], exam["cord"], whole_levels)
    combined = _table(merged.lesion, merged.grid, merged.soft, merged.cord, merged.levels)
    assert _rounded(combined) == _rounded(whole)
    assert sum(row["lesion_count"] for row in combined) == 3  # the lesion in the overlap is counted once
    per_station = sum(len(analyze_lesions(s.lesion, s.image).lesions) for s in _stations(exam, discs))
    assert per_station == 4  # adding the stations' own counts would count it twice


def test_incomplete_or_mixed_inputs_are_one_line_errors(exam: dict) -> None:
    labelled, pointed = _stations(exam, False), _stations(exam, True)
    with pytest.raises(InputError, match="levels of one kind"):
        merge_stations([labelled[0], pointed[1]])
    with pytest.raises(InputError, match="give a soft for every station or none"):
        merge_stations([labelled[0], Station(labelled[1].image, labelled[1].lesion, "station 2")])
    with pytest.raises(InputError, match="at least two stations"):
        merge_stations(labelled[:1])
    inner = exam["image"][:, 22:30, :]
    with pytest.raises(InputError, match="hidden by the others"):
        merge_stations([labelled[0], labelled[1], Station(inner, exam["lesion"][:, 22:30, :], "inner")])


def test_stats_takes_the_stations_of_one_exam(exam: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``stats --lesion A B --cord ... --levels ...`` writes the whole image's levels.csv from two station files."""
    import csv

    from SpinalLesionSegLib.cli.app import main

    files: dict[str, list[str]] = {"lesion": [], "cord": [], "levels": [], "soft": []}
    for number, station in enumerate(_stations(exam, False), start=1):
        for role, array in (("lesion", station.lesion.astype(np.uint8)), ("cord", station.cord.astype(np.uint8)),
                            ("levels", image_to_array(station.levels.regions)), ("soft", station.soft)):
            path = tmp_path / f"station{number}_{role}.nii.gz"
            sitk.WriteImage(array_to_image(array, station.image), str(path))
            files[role].append(str(path))
    args = [arg for role, paths in files.items() for arg in (f"--{role}", *paths)]
    assert main(["stats", *args, "-o", str(tmp_path / "out")]) == 0
    with (tmp_path / "out" / "levels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    whole = _table(exam["lesion"], exam["image"], exam["soft"], exam["cord"],
                   LevelSource("cord_labels", Path("labels"), regions=array_to_image(exam["labels"], exam["image"])))
    assert [(r["level"], int(r["lesion_count"]), float(r["volume_mm3"])) for r in rows] == \
        [(r["level"], r["lesion_count"], r["volume_mm3"]) for r in whole]
    assert (tmp_path / "out" / "stations_lesion_label.nii.gz").is_file()
    assert main(["stats", *args[:3], "--cord", files["cord"][0], "-o", str(tmp_path / "bad")]) == 2
    assert "--cord gives 1 file(s) for 2 stations" in capsys.readouterr().err


def test_the_panels_station_statistics_equal_the_whole_images(exam: dict, mrml_scene, tmp_path: Path) -> None:
    """In the panel (real MRML, slicer-core): each station a volume node with its segmentation (lesions, cord) and
    a labelled-cord label map node as its levels; the merged per-level table equals the whole image's (cord = cord
    segment + lesions, as the panel takes it for one scan)."""
    from types import SimpleNamespace

    from SpinalLesionSegLib.mrml.nodes import volume_node_from_image
    from SpinalLesionSegLib.mrml.results import create_lesion_segmentation
    from SpinalLesionSegLib.mrml.stations import panel_station_statistics

    stations = []
    for number, cut in enumerate(CUTS):
        part = exam["image"][:, cut, :]
        volume = volume_node_from_image(mrml_scene, part, f"station{number}")
        lesion, cord = (array_to_image(exam[key][:, cut, :].astype(np.uint8), part) for key in ("lesion", "cord"))
        levels = volume_node_from_image(mrml_scene, array_to_image(exam["labels"][:, cut, :], part),
                                        f"station{number} levels", "vtkMRMLLabelMapVolumeNode")
        stations.append((volume, create_lesion_segmentation(mrml_scene, lesion, volume, cord), levels))
    p = SimpleNamespace(inputVolume=stations[0][0], segmentation=stations[0][1], levelsNode=stations[0][2])
    made = panel_station_statistics(mrml_scene, p, stations[1:], lambda name: tmp_path / name)
    table = made.levels.GetTable()
    columns = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    rows = {table.GetValue(r, columns.index("level")).ToString(): float(table.GetValue(r, columns.index("volume_mm3"))
            .ToString()) for r in range(table.GetNumberOfRows())}
    whole = LevelSource("cord_labels", Path("labels"), regions=array_to_image(exam["labels"], exam["image"]))
    expected = _table(exam["lesion"], exam["image"], None, exam["cord"] | exam["lesion"], whole)
    assert rows == {row["level"]: float(f"{row['volume_mm3']:.6g}") for row in expected}
    assert sum(float(v) for v in rows.values()) == float(exam["lesion"].sum())  # 1 mm3 voxels, each lesion once
    assert made.lesions.GetNumberOfRows() == 3  # the lesion in the overlap once
    again = panel_station_statistics(mrml_scene, p, stations[1:], lambda name: tmp_path / name)
    assert again.levels is made.levels, "recomputing refreshes the same table node"
