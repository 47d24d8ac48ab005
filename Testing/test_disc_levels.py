"""Levels from sparse input (analysis/disc_levels.py): disc points + the cord mask -> a labelled cord, measured
against the real SCT labelled cord of sct_testing_data/t2 (the only real labelled cord in the shared data).

Disc points are derived from SCT's labels (:func:`analysis_data.level_boundary_discs`: the centre of each boundary
between levels), the rule runs on the real manual cord mask, and the result is compared voxel by voxel with SCT's
labels: accuracy over the cord voxels SCT labelled, and Dice per level on them. The same real labels and cord are
also resampled onto three other voxel layouts (tilted, axial 3 mm, both), so the cord runs oblique to the slices.
The figures are in docs/conventions.md ("Levels from disc points along the cord"); the bars here sit just below
the lowest measured value of each scenario.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from analysis_data import T2, level_boundary_discs, resampled_layout, save
from SpinalLesionSegLib.analysis.disc_levels import label_cord, labelled_cord_image, levels_along_cord
from SpinalLesionSegLib.analysis.lesions import analyze_lesions
from SpinalLesionSegLib.analysis.level_sources import load_level_source
from SpinalLesionSegLib.analysis.levels import MAX_LEVEL, UNASSIGNED, LevelSource, assign_levels
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.geometry import ijk_to_ras_matrix, ras_to_voxel

#: Voxel layouts of the real labels and cord: None = as stored (sagittal, 1 mm), else resampled_layout arguments.
LAYOUTS = {
    "sagittal 1 mm": None,
    "tilted 20 deg 1 mm": {"spacing": (1.0, 1.0, 1.0), "tilt_deg": 20.0},
    "axial 0.8x0.8x3 mm": {"spacing": (0.8, 0.8, 3.0), "axial": True},
    "axial 3 mm tilted 15 deg": {"spacing": (0.8, 0.8, 3.0), "axial": True, "tilt_deg": 15.0},
}
RIGHT, ANTERIOR = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
#: Scenario -> (disc numbers kept or None for all, shift of disc n in RAS mm, accuracy bar, per-level Dice bar for
#: the levels between the kept discs).
SCENARIOS = {
    "all discs": (None, lambda n: 0.0 * RIGHT, 0.98, 0.98),
    "every other disc (2, 4)": ((2, 4), lambda n: 0.0 * RIGHT, 0.90, 0.94),
    "every other disc (3, 5)": ((3, 5), lambda n: 0.0 * RIGHT, 0.92, 0.92),
    "lateral +-1 mm": (None, lambda n: (-1) ** n * RIGHT, 0.98, 0.98),
    "lateral +-2 mm": (None, lambda n: 2.0 * (-1) ** n * RIGHT, 0.98, 0.97),
    "anterior 6 mm": (None, lambda n: 6.0 * ANTERIOR, 0.97, 0.95),
}


def agreement(ours: np.ndarray, sct: np.ndarray, cord: np.ndarray) -> dict:
    """Accuracy and Dice per level over the cord voxels SCT labelled; cord voxels only one side labelled."""
    labelled = sct > 0
    mine, theirs = ours[labelled], sct[labelled]
    dice = {int(n): 2.0 * np.count_nonzero((mine == n) & (theirs == n))
            / (np.count_nonzero(mine == n) + np.count_nonzero(theirs == n)) for n in np.unique(theirs)}
    return {"accuracy": float(np.mean(mine == theirs)), "dice": dice,
            "extra": int(np.count_nonzero(cord & ~labelled & (ours > 0))),
            "missing": int(np.count_nonzero(labelled & (ours == UNASSIGNED)))}


@pytest.fixture(scope="module")
def layouts(shared_data: Path) -> dict[str, tuple[sitk.Image, np.ndarray, np.ndarray, dict[int, np.ndarray]]]:
    """Layout name -> (grid, SCT labels, real cord mask, disc points from SCT's labels)."""
    labels = sitk.Cast(sitk.ReadImage(str(shared_data / T2 / "t2_seg-manual_labeled.nii.gz")), sitk.sitkInt16)
    cord = sitk.ReadImage(str(shared_data / T2 / "t2_seg-manual.nii.gz"))
    found = {}
    for name, layout in LAYOUTS.items():
        grid = labels if layout is None else resampled_layout(labels, **layout)
        sct = sitk.GetArrayFromImage(grid).astype(np.int16)
        mask = sitk.GetArrayFromImage(cord if layout is None else resampled_layout(cord, **layout)) > 0
        found[name] = (grid, sct, mask, level_boundary_discs(sct, mask, grid))
    return found


def test_disc_points_come_from_every_level_boundary(layouts) -> None:
    for grid, sct, cord, discs in layouts.values():
        assert sorted(discs) == [2, 3, 4, 5]  # top of C2, C2/C3, C3/C4, C4/C5; C5 below is extrapolated
        assert not np.any(sct[~cord])  # SCT's labels lie on the cord mask


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_labelled_cord_agrees_with_sct(layouts, layout: str, scenario: str) -> None:
    grid, sct, cord, discs = layouts[layout]
    kept, shift, accuracy_bar, dice_bar = SCENARIOS[scenario]
    given = {n: p + shift(n) for n, p in discs.items() if kept is None or n in kept}
    result = agreement(label_cord(given, cord, grid), sct, cord)
    assert result["accuracy"] >= accuracy_bar, result
    bounded = range(min(given), max(given))
    assert all(result["dice"][n] >= dice_bar for n in bounded), result


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_cord_beats_image_axis_planes(layouts, layout: str) -> None:
    """Without a cord, levels come from planes across the image axis and stop at the outer discs."""
    grid, sct, cord, discs = layouts[layout]
    index = np.flatnonzero(cord)
    planes = np.zeros(cord.shape, dtype=np.int16)
    planes.reshape(-1)[index] = assign_levels(LevelSource("disc-points", Path("d"), discs=discs), grid, index)
    along_cord = agreement(label_cord(discs, cord, grid), sct, cord)
    image_axis = agreement(planes, sct, cord)
    assert along_cord["accuracy"] > image_axis["accuracy"]
    assert image_axis["dice"][5] == 0.0 and along_cord["dice"][5] >= 0.94  # C5: below the last disc


def _straight_cord(tilt_deg: float) -> tuple[sitk.Image, np.ndarray, np.ndarray, np.ndarray]:
    """A straight 5 mm wide cord through a 1 mm grid (numpy k = superior), tilted ``tilt_deg`` towards anterior:
    (grid, mask, a point on its axis and its unit direction, both RAS)."""
    grid = sitk.Image(40, 40, 80, sitk.sitkUInt8)  # LPS identity: i = left, j = posterior, k = superior
    k, j, i = np.indices((80, 40, 40), dtype=float)
    angle = np.radians(tilt_deg)
    centre_j = 20 - (k - 40) * np.tan(angle)  # anterior = -j (LPS) as k grows
    mask = ((j - centre_j) * np.cos(angle)) ** 2 + (i - 20) ** 2 <= 2.5 ** 2
    point = np.array([-20.0, 20.0, 40.0])  # RAS of voxel (i, j, k) = (20, 20, 40)
    return grid, mask, point, np.array([0.0, np.sin(angle), np.cos(angle)])


def test_hand_worked_rule_on_a_straight_cord() -> None:
    grid, cord, point, up = _straight_cord(0.0)
    # Discs 3 (s = 10 mm), 4 (0 mm) and 6 (-20 mm): C3 (0, 10], C4 (-10, 0], C5 (-20, -10] (gap split evenly),
    # one mean level (10 mm) beyond each outer disc: C2 (10, 20], C6 (-30, -20]; unassigned farther out.
    discs = {3: point + 10 * up, 4: point, 6: point - 20 * up}
    per_slice = label_cord(discs, cord, grid).max(axis=(1, 2))
    s = np.arange(80) - 40.0
    expected = np.select([s > 20, s > 10, s > 0, s > -10, s > -20, s > -30], [0, 2, 3, 4, 5, 6], 0)
    assert per_slice.tolist() == expected.tolist()
    # Nothing is extrapolated above disc 1 (no level above C1).
    top = label_cord({1: point, 2: point - 10 * up}, cord, grid).max(axis=(1, 2))
    assert top[41:].max() == UNASSIGNED and set(top[31:41]) == {1}


@pytest.mark.parametrize("tilt_deg", [30.0, -45.0])
def test_levels_follow_planes_perpendicular_to_the_cord(tilt_deg: float) -> None:
    grid, cord, point, up = _straight_cord(tilt_deg)
    discs = {3: point + 12 * up + 2 * RIGHT, 4: point - 2 * RIGHT, 5: point - 12 * up + 2 * RIGHT}
    labelled = label_cord(discs, cord, grid)
    kji = np.argwhere(cord)
    ras = kji[:, ::-1] * np.array([-1.0, -1.0, 1.0])  # LPS identity grid, origin 0
    s = (ras - point) @ up  # exact position along the straight cord
    expected = np.select([s > 24, s > 12, s > 0, s > -12, s > -24], [0, 2, 3, 4, 5], 0)
    clear = np.min(np.abs(s[:, None] - np.array([24, 12, 0, -12, -24])), axis=1) > 0.5
    assert clear.mean() > 0.9
    assert np.array_equal(labelled[tuple(kji.T)][clear], expected[clear])


def test_sct_single_voxel_disc_labels_with_the_cord(layouts, tmp_path: Path) -> None:
    """SCT disc labels as sct_label_utils writes them: single voxels valued with the disc number."""
    grid, sct, cord, discs = layouts["sagittal 1 mm"]
    points = np.zeros(sct.shape, dtype=np.int16)
    for number, ras in discs.items():
        i, j, k = np.round(ras_to_voxel(ijk_to_ras_matrix(grid), ras)[0]).astype(int)
        points[k, j, i] = number
    source = load_level_source(save(points, grid, tmp_path / "discs.nii.gz"))
    assert source.kind == "disc-points"
    index = np.flatnonzero(cord)
    ours = np.zeros(sct.shape, dtype=np.int16)
    ours.reshape(-1)[index] = assign_levels(source, grid, index, cord=cord)
    # Each disc is rounded to a voxel centre, 0.5 mm off the boundary: about one slice per boundary changes side.
    assert agreement(ours, sct, cord)["accuracy"] >= 0.96


def test_totalspineseg_discs_with_the_cord(layouts, tmp_path: Path) -> None:
    """TotalSpineSeg step-1 output: discs C2C3..C4C5 (63..65) as blobs in the disc space, 6 mm anterior."""
    grid, sct, cord, discs = layouts["sagittal 1 mm"]
    tss = np.where(cord, 50, 0).astype(np.int16)  # step 1: every vertebra but C1 is 50
    for number, code in ((3, 63), (4, 64), (5, 65)):
        i, j, k = np.round(ras_to_voxel(ijk_to_ras_matrix(grid), discs[number] + 6 * ANTERIOR)[0]).astype(int)
        tss[k - 1:k + 2, j - 1:j + 2, i - 1:i + 2] = code
    source = load_level_source(save(tss, grid, tmp_path / "tss.nii.gz"))
    assert source.kind == "totalspineseg" and sorted(source.discs) == [3, 4, 5]
    index = np.flatnonzero(cord)
    ours = np.zeros(sct.shape, dtype=np.int16)
    ours.reshape(-1)[index] = assign_levels(source, grid, index, cord=cord)
    result = agreement(ours, sct, cord)
    # No C1/C2 disc: the top 1-2 mm of C2 lie beyond one mean level length, unassigned (as with discs 3 and 5).
    assert result["accuracy"] >= 0.93 and min(result["dice"].values()) >= 0.85, result
    # Without the cord (image-axis planes, unchanged) nothing is extrapolated: no voxel gets C2, above disc 3.
    planes = assign_levels(source, grid, index)
    assert 2 not in planes and np.mean(planes[sct.reshape(-1)[index] == 2] == UNASSIGNED) > 0.9


def test_markups_and_cord_in_the_lesion_analysis(layouts, tmp_path: Path) -> None:
    """A Slicer point list + the cord: lesion levels and the cord's volume per level come from the labelled cord."""
    grid, sct, cord, discs = layouts["sagittal 1 mm"]
    names = {2: "C1-C2", 3: "C2-C3", 4: "C3-C4", 5: "C4-C5"}
    points = [{"label": names[n], "position": (p + 1.5 * RIGHT).tolist(), "positionStatus": "defined"}
              for n, p in discs.items()]
    path = tmp_path / "discs.mrk.json"
    path.write_text(json.dumps({"markups": [{"type": "Fiducial", "coordinateSystem": "RAS",
                                             "controlPoints": points}]}))
    source = load_level_source(path)
    labelled = label_cord(source.discs, cord, grid, path)
    lesion = cord & (np.arange(sct.shape[1]) >= 40)[None, :, None] & (np.arange(sct.shape[1]) < 46)[None, :, None]
    analysis = analyze_lesions(lesion, grid, levels=source, cord=cord)
    assert analysis.lesions[0].primary_level == 2
    assert np.array_equal(analysis.cord_level_voxels, np.bincount(labelled[cord], minlength=MAX_LEVEL + 1))
    # The same levels as an SCT-style labelled cord file, read back as a region source.
    cord_image = sitk.ReadImage(str(save(cord.astype(np.uint8), grid, tmp_path / "cord.nii.gz")))
    saved = tmp_path / "cord_labeled.nii.gz"
    sitk.WriteImage(labelled_cord_image(source, cord_image), str(saved))
    again = load_level_source(saved)
    assert again.kind == "cord-labels"
    index = np.flatnonzero(cord)
    assert np.array_equal(assign_levels(again, grid, index), labelled.reshape(-1)[index])


def test_voxels_off_the_cord_take_the_level_at_their_position(layouts) -> None:
    grid, sct, cord, discs = layouts["sagittal 1 mm"]
    far = np.zeros(cord.shape, dtype=bool)
    far[2:4, 25:27, 2:4] = True  # > 10 mm beside the cord, between the C2/C3 and C3/C4 discs
    codes = levels_along_cord(discs, cord, grid, np.flatnonzero(far))
    assert set(codes.tolist()) == {3}


def test_discs_out_of_order_along_the_cord_are_refused(layouts) -> None:
    grid, _, cord, discs = layouts["tilted 20 deg 1 mm"]
    with pytest.raises(InputError, match="superior-to-inferior order along the cord"):
        label_cord({3: discs[4], 4: discs[3]}, cord, grid, Path("discs.mrk.json"))
