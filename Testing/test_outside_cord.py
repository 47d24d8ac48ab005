"""Lesions outside the cord (issue 15, point 5; docs/conventions.md "Lesions outside the cord"): the one rule
(analysis/outside_cord.py) on a real cord, flagged by default and dropped on request by predict (sidecar; the soft
map zeroed there, so the mask stays soft >= threshold), batch (a change re-runs), stats (lesions.csv, summary.json, a
warning) and the Slicer panel (review table, the "Drop lesions outside the cord" parameter). Real files, the real
demo model and worker, slicer-core for the panel; nothing is mocked.

The demo model finds lesions only where the image looks like cord: blobs painted into the CSF or the muscles are
not found. So the lesion "outside the cord" is painted into a stretch of the real cord that the cord mask given to
predict leaves out (15 slices removed, as an automatic cord mask loses slices where a lesion changes the signal):
it lies a known 6 mm from that mask.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.distance import cdist
from SpinalLesionSegLib import defaults
from SpinalLesionSegLib.analysis.outside_cord import (
    DROP_REGION_PROBABILITY,
    drop_outside_cord,
    outside_cord_lesions,
)
from SpinalLesionSegLib.cli import main as cli_main
from SpinalLesionSegLib.inference.case import outside_cord_record, result_settings
from SpinalLesionSegLib.inference.predictor import Prediction
from SpinalLesionSegLib.inference.protocol import Job, ProtocolError

from conftest import MODULE_DIR

DEMO = MODULE_DIR / "Resources" / "Models" / "demo"
#: The painted lesions' centres (k, j, i) in the real t2 (j runs superior-inferior): one inside the cord mask, one
#: in the stretch the gap cord leaves out (j 8..22), 6 mm from its nearest slice.
INSIDE, IN_GAP, GAP = (25, 40, 31), (25, 15, 31), slice(8, 23)
#: Every 18-connected component (faces and edges), as the rule counts lesions: scipy's, independent of cc3d.
STRUCTURE = ndimage.generate_binary_structure(3, 2)


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _ball(shape: tuple[int, ...], centre: tuple[int, int, int], radius: float) -> np.ndarray:
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


def _anterior_voxel(cord: np.ndarray, j: int = 27) -> tuple[int, int, int]:
    """The most anterior cord voxel (largest i) of slice ``j`` (mid-height): the cord's front there."""
    front = np.argwhere(cord[:, j, :])
    k, i = front[np.argmax(front[:, 1])]
    return int(k), j, int(i)


def _distances(mask: np.ndarray, cord: np.ndarray, spacing_kji: tuple[float, ...]) -> dict[int, float]:
    """Each 18-connected component's smallest distance (mm) to a cord voxel, by brute force over voxel pairs."""
    labels, count = ndimage.label(mask, STRUCTURE)
    cord_mm = np.argwhere(cord) * spacing_kji
    return {n: float(cdist(np.argwhere(labels == n) * spacing_kji, cord_mm).min()) for n in range(1, count + 1)}


@pytest.fixture(scope="module")
def painted(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict:
    """The real t2 with two lesions painted into its cord, the real cord mask and the gap cord, as files."""
    folder = tmp_path_factory.mktemp("painted")
    t2_dir = shared_data / "sct_testing_data" / "t2"
    image, cord_image = sitk.ReadImage(str(t2_dir / "t2.nii.gz")), sitk.ReadImage(str(t2_dir / "t2_seg-manual.nii.gz"))
    cord = sitk.GetArrayFromImage(cord_image) > 0
    voxels = sitk.GetArrayFromImage(image)
    for centre in (INSIDE, IN_GAP):
        voxels[_ball(voxels.shape, centre, 2) & cord] = 600  # about twice the cord's T2 signal
    gap = cord.copy()
    gap[:, GAP, :] = False
    paths = {"image": folder / "t2_T2w.nii.gz", "gap_cord": folder / "t2_gap_cord.nii.gz"}
    for path, array, like in ((paths["image"], voxels, image), (paths["gap_cord"], gap.astype(np.uint8), cord_image)):
        written = sitk.GetImageFromArray(array)
        written.CopyInformation(like)
        sitk.WriteImage(written, str(path))
    return {**paths, "cord": cord, "gap": gap, "shape": voxels.shape}


def test_the_rule_measures_millimetres_from_a_real_cord(painted: dict) -> None:
    cord, shape = painted["cord"], painted["shape"]
    k0, j0, i0 = _anterior_voxel(cord)
    inside = _ball(shape, INSIDE, 2) & cord
    at_edge = _ball(shape, (k0, j0, i0 + 2), 1.5)  # sticks out of the cord: touches it
    outside = np.zeros(shape, bool)
    outside[k0, j0 - 1:j0 + 2, i0 + 5] = True  # 5 voxels in front of the cord's front: 5 mm by brute force
    mask = inside | at_edge | outside
    expected = _distances(mask, cord, (1.0, 1.0, 1.0))

    found = outside_cord_lesions(mask, cord, (1.0, 1.0, 1.0), defaults.OUTSIDE_CORD_MARGIN_MM)
    np.testing.assert_allclose(found.distances_mm[1:], [expected[n] for n in sorted(expected)])
    assert sorted(expected.values())[0] == 0.0 and sorted(expected.values())[1:] == pytest.approx([1.0, 5.0])
    [lesion] = found.lesions
    assert lesion.distance_mm == 5.0 and lesion.voxel_count == 3 and lesion.volume_mm3 == 3.0
    assert found.records() == [{"id": lesion.id, "volume_mm3": 3.0, "distance_to_cord_mm": 5.0}]
    # "Touch" includes the margin itself; a hair less and the lesion is outside.
    assert not outside_cord_lesions(mask, cord, (1.0, 1.0, 1.0), 5.0).lesions
    assert outside_cord_lesions(mask, cord, (1.0, 1.0, 1.0), 4.99).ids == [lesion.id]
    # Millimetres, not voxels: at 0.5 mm along i the same voxels are 2.5 mm away (touching); at 3 mm along k a
    # lesion one voxel off the cord's side is 3 mm away, two voxels 6 mm (outside), where a voxel dilation by
    # the margin would say 1 and 2 voxels alike.
    assert not outside_cord_lesions(mask, cord, (1.0, 1.0, 0.5)).lesions
    kmax = np.argwhere(cord)[:, 0].max()
    row = np.argwhere(cord[kmax])[len(np.argwhere(cord[kmax])) // 2]
    spacing = (3.0, 1.0, 1.0)
    for step, distance in ((1, 3.0), (2, 6.0)):
        side = np.zeros(shape, bool)
        side[kmax + step, row[0], row[1]] = True
        found_side = outside_cord_lesions(side, cord, spacing)
        assert found_side.distances_mm[1] == _distances(side, cord, spacing)[1] == distance
        assert found_side.ids == ([] if distance <= defaults.OUTSIDE_CORD_MARGIN_MM else [1])
    # No cord, or an empty one, judges nothing (a model that found no cord must not flag or drop everything).
    assert outside_cord_lesions(mask, None, (1.0, 1.0, 1.0)) is None
    assert outside_cord_lesions(mask, np.zeros(shape, bool), (1.0, 1.0, 1.0)) is None
    assert outside_cord_lesions(np.zeros(shape, bool), cord, (1.0, 1.0, 1.0)).lesions == []


def test_dropping_zeroes_the_soft_region_so_the_mask_stays_the_threshold(painted: dict) -> None:
    cord, shape, spacing = painted["cord"], painted["shape"], (1.0, 1.0, 1.0)
    k0, j0, i0 = _anterior_voxel(cord)
    blobs = _ball(shape, INSIDE, 2) | _ball(shape, (k0, j0, i0 + 2), 1.5) | _ball(shape, (k0, j0 - 12, i0 + 8), 2)
    soft = ndimage.gaussian_filter(blobs.astype(np.float64), 1.0)
    soft = (soft / soft.max()).astype(np.float32)  # a smooth probability map with halos below the threshold
    threshold = defaults.THRESHOLD
    mask = soft >= threshold
    found = outside_cord_lesions(mask, cord, spacing)
    assert len(found.lesions) == 1 and ndimage.label(mask, STRUCTURE)[1] == 3

    kept, new_soft = drop_outside_cord(mask, soft, found, cord, spacing)
    dropped = np.isin(found.labels, found.ids)
    np.testing.assert_array_equal(kept, mask & ~dropped)
    np.testing.assert_array_equal(kept, new_soft >= threshold)  # the invariant, after dropping
    assert not new_soft[dropped].any()
    changed = new_soft != soft
    assert not (changed & (found.labels != 0) & ~dropped).any(), "a kept lesion's probabilities changed"
    # The dropped lesion's halo, at every threshold the panel offers, is gone where it lies outside the dilated
    # cord: neither the slider nor the candidate table brings the lesion back.
    near_cord = ndimage.distance_transform_edt(~cord, sampling=spacing) <= found.margin_mm
    halo, _ = ndimage.label(soft >= DROP_REGION_PROBABILITY, STRUCTURE)
    around = np.isin(halo, np.unique(halo[dropped])) & (halo != 0) & ~near_cord & ~(found.labels != 0) | dropped
    assert not new_soft[around].any() and not (changed & near_cord).any()


@pytest.fixture(scope="module")
def predicted(painted: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """predict with the demo model (both folds: fold 0 alone takes much of the cord around this very bright painted
    lesion for lesion, docs/performance.md) and the gap cord as --roi-mask: flagged (the default), then dropped."""
    runs = {}
    for name, extra in (("flagged", []), ("dropped", ["--drop-outside-cord"])):
        out = tmp_path_factory.mktemp(name)
        assert cli_main(["predict", str(painted["image"]), "-o", str(out), "--model", str(DEMO), "--device", "cpu",
                         "--roi-mask", str(painted["gap_cord"]), *extra]) == 0
        runs[name] = {"mask": _array(out / "t2_T2w_lesion_seg.nii.gz") != 0,
                      "soft": _array(out / "t2_T2w_lesion_soft.nii.gz"),
                      "sidecar": json.loads((out / "t2_T2w_lesion_seg.json").read_text()), "folder": out}
    return runs


def test_predict_flags_by_default_and_drops_on_request(painted: dict, predicted: dict) -> None:
    flagged, dropped = predicted["flagged"], predicted["dropped"]
    threshold = flagged["sidecar"]["threshold"]
    for run in (flagged, dropped):  # the invariant, with and without dropping
        np.testing.assert_array_equal(run["mask"], run["soft"] >= threshold)

    distances = _distances(flagged["mask"], painted["gap"], (1.0, 1.0, 1.0))
    outside = {n: d for n, d in distances.items() if d > defaults.OUTSIDE_CORD_MARGIN_MM}
    record = flagged["sidecar"]["outside_cord"]
    assert record["cord"] == "roi_mask" and record["margin_mm"] == defaults.OUTSIDE_CORD_MARGIN_MM
    assert not record["dropped"]  # the sidecar gives distances to the micrometre
    assert {o["id"]: o["distance_to_cord_mm"] for o in record["lesions"]} == {n: round(d, 3) for n, d in outside.items()}
    labels, _ = ndimage.label(flagged["mask"], STRUCTURE)
    painted_outside = set(np.unique(labels[_ball(labels.shape, IN_GAP, 1)])) - {0}
    assert painted_outside and painted_outside <= set(outside), "the lesion painted 6 mm from the cord is flagged"
    assert {outside[n] for n in painted_outside} == {6.0}
    assert not set(np.unique(labels[_ball(labels.shape, INSIDE, 1)])) & set(outside), "the one inside is not"
    assert all(o["volume_mm3"] == np.count_nonzero(labels == o["id"]) for o in record["lesions"])

    # Dropped: the same lesions listed, gone from the mask, their probabilities zeroed; everything else as before.
    gone = np.isin(labels, list(outside))
    assert dropped["sidecar"]["outside_cord"] == {**record, "dropped": True}
    np.testing.assert_array_equal(dropped["mask"], flagged["mask"] & ~gone)
    assert not dropped["soft"][gone].any()
    changed = dropped["soft"] != flagged["soft"]
    assert not (changed & flagged["mask"] & ~gone).any()
    assert flagged["sidecar"]["settings"]["drop_outside_cord"] is False
    assert dropped["sidecar"]["settings"]["drop_outside_cord"] is True


def test_stats_flags_the_same_lesions_and_warns(painted: dict, predicted: dict, tmp_path: Path, capsys) -> None:
    flagged = predicted["flagged"]
    lesion = flagged["folder"] / "t2_T2w_lesion_seg.nii.gz"
    capsys.readouterr()
    assert cli_main(["stats", "--lesion", str(lesion), "--cord", str(painted["gap_cord"]), "-o", str(tmp_path)]) == 0
    warning = capsys.readouterr().err
    listed = flagged["sidecar"]["outside_cord"]["lesions"]
    assert f"warning: {len(listed)} lesion(s) outside the cord (farther than 3 mm" in warning
    with (tmp_path / "lesions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {int(r["lesion_id"]) for r in rows if r["outside_cord"] == "1"} == {o["id"] for o in listed}
    assert {int(r["lesion_id"]): round(float(r["cord_distance_mm"]), 3) for r in rows if r["outside_cord"] == "1"} == {
        o["id"]: o["distance_to_cord_mm"] for o in listed}
    summary = json.loads((tmp_path / "summary.json").read_text())["outside_cord"]
    assert summary["count"] == len(listed) and summary["lesions"] == listed
    assert summary["volume_mm3"] == sum(o["volume_mm3"] for o in listed)

    # A wider margin flags fewer; without a cord nothing is judged (empty columns, null in summary.json).
    assert cli_main(["stats", "--lesion", str(lesion), "--cord", str(painted["gap_cord"]), "-o", str(tmp_path),
                     "--outside-cord-margin", "5.5"]) == 0
    wider = json.loads((tmp_path / "summary.json").read_text())["outside_cord"]
    assert wider["margin_mm"] == 5.5 and {o["id"] for o in wider["lesions"]} == {
        o["id"] for o in listed if o["distance_to_cord_mm"] > 5.5}
    assert cli_main(["stats", "--lesion", str(lesion), "-o", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["outside_cord"] is None
    with (tmp_path / "lesions.csv").open() as handle:
        assert {row["outside_cord"] for row in csv.DictReader(handle)} == {""}


def test_the_cord_is_the_given_mask_else_the_models_own(painted: dict) -> None:
    """outside_cord_record's cord: the user's mask first, else the model's cord output; neither: nothing judged."""
    image = sitk.ReadImage(str(painted["image"]))

    def wrap(array: np.ndarray, pixel: int) -> sitk.Image:
        result = sitk.Cast(sitk.GetImageFromArray(array.astype(np.float32)), pixel)
        result.CopyInformation(image)
        return result

    lesions = _ball(painted["shape"], IN_GAP, 2) & painted["cord"]
    soft = wrap(lesions * 0.9, sitk.sitkFloat32)
    binary = wrap(lesions, sitk.sitkUInt8)
    job = Job(inputs=[str(painted["image"])], output_dir="unused")
    for cord, expected in ((painted["gap"], [6.0]), (painted["cord"], []), (np.zeros_like(lesions), None)):
        prediction = Prediction(soft=soft, binary=binary, cord=wrap(cord, sitk.sitkUInt8), roi=None)
        _, record = outside_cord_record(prediction, job, image, warnings := [])
        assert record["cord"] == (None if expected is None else "model")
        assert (None if record["lesions"] is None else [o["distance_to_cord_mm"] for o in record["lesions"]]) \
            == expected
        assert bool(warnings) == bool(expected)
    with_mask = Job(inputs=[str(painted["image"])], output_dir="unused", roi_mask=str(painted["gap_cord"]))
    prediction = Prediction(soft=soft, binary=binary, cord=wrap(painted["cord"], sitk.sitkUInt8), roi=None)
    _, record = outside_cord_record(prediction, with_mask, image, [])
    assert record["cord"] == "roi_mask" and [o["distance_to_cord_mm"] for o in record["lesions"]] == [6.0]


def test_the_job_carries_and_checks_the_settings_and_a_change_reruns() -> None:
    job = Job.from_dict({"inputs": ["a.nii.gz"], "output_dir": "out", "drop_outside_cord": True,
                         "outside_cord_margin_mm": 2})
    assert Job.from_json(job.to_json()) == job and job.outside_cord_margin_mm == 2
    assert Job(inputs=["a"], output_dir="o").drop_outside_cord is False
    for key, value in (("drop_outside_cord", "yes"), ("outside_cord_margin_mm", -1), ("outside_cord_margin_mm", True)):
        with pytest.raises(ProtocolError, match=key):
            Job.from_dict({"inputs": ["a.nii.gz"], "output_dir": "out", key: value})
    plain = result_settings(Job(inputs=["a"], output_dir="o"))
    assert plain["drop_outside_cord"] is False and plain["outside_cord_margin_mm"] == defaults.OUTSIDE_CORD_MARGIN_MM
    assert result_settings(Job(inputs=["a"], output_dir="o", drop_outside_cord=True)) != plain
    assert result_settings(Job(inputs=["a"], output_dir="o", outside_cord_margin_mm=5.0)) != plain


def test_batch_reruns_when_the_outside_cord_settings_change(painted: dict, tmp_path: Path, capsys) -> None:
    root = tmp_path / "ds"
    (root / "sub-01" / "anat").mkdir(parents=True)
    (root / "sub-01" / "anat" / "sub-01_T2w.nii.gz").write_bytes(painted["image"].read_bytes())
    (root / "dataset_description.json").write_text(json.dumps({"Name": "test", "BIDSVersion": "1.9.0"}))
    common = ["batch", str(root), "--model", str(DEMO), "--device", "cpu", "--folds", "0"]
    assert cli_main(common) == 0
    sidecar = root / "derivatives" / "spinal-lesion-seg" / "sub-01" / "anat" / "sub-01_T2w_lesion_seg.json"
    assert json.loads(sidecar.read_text())["outside_cord"]["cord"] == "model"  # the demo model's own cord
    capsys.readouterr()
    for extra, changed in ((["--drop-outside-cord"], "drop_outside_cord"),
                           (["--outside-cord-margin", "5"], "outside_cord_margin_mm"), ([], None)):
        assert cli_main([*common, "--dry-run", *extra]) == 0
        line = capsys.readouterr().out.strip()
        assert (line.startswith("run ") and f"settings changed ({changed})" in line) if changed else \
            line.startswith("skip "), line


def test_the_panel_flags_in_the_review_table_and_drops_with_its_parameter(painted: dict, mrml_scene) -> None:
    from SpinalLesionSegLib.mrml.nodes import image_from_volume_node, read_volume_node, segmentation_node_from_labelmap
    from SpinalLesionSegLib.mrml.panel import PanelLogic
    from SpinalLesionSegLib.mrml.results import lesion_segment_id, node_array, segment_mask
    from SpinalLesionSegLib.mrml.review import OUTSIDE_CORD_TEXT

    volume = read_volume_node(mrml_scene, painted["image"], "t2_T2w")
    cord_node = read_volume_node(mrml_scene, painted["gap_cord"], "gap cord", "vtkMRMLLabelMapVolumeNode")
    cord = segmentation_node_from_labelmap(mrml_scene, image_from_volume_node(cord_node), {1: "Spinal cord"},
                                           "t2 cord", reference_volume=volume)
    p = SimpleNamespace(inputVolume=volume, contrast=defaults.CONTRAST, model=str(DEMO), device="cpu", folds="",
                        tta=False, roiNode=cord, roiMarginMm=defaults.ROI_MARGIN_MM, pythonPath="",
                        threshold=defaults.THRESHOLD, candidateThreshold=defaults.CANDIDATE_THRESHOLD, softMap=None,
                        segmentation=None, levelsNode=None, dropOutsideCord=False)
    logic = PanelLogic(mrml_scene)
    try:
        results = {}
        for drop in (False, True):
            p.dropOutsideCord = drop
            logic.run(p)
            result = logic.wait(300)
            logic.load_results(p, result)
            table = logic.review_table(p)
            column = {name: table.GetColumnIndex(name) for name in ("id", "flag")}
            rows = [{name: table.GetCellText(row, index) for name, index in column.items()}
                    for row in range(table.GetNumberOfRows())]
            mask = segment_mask(p.segmentation, lesion_segment_id(p.segmentation), volume)
            np.testing.assert_array_equal(mask, node_array(p.softMap) >= p.threshold)
            results[drop] = (json.loads(Path(result.results[0]["outputs"]["sidecar"]).read_text()), rows, mask)
            assert "outside the cord" in logic.result_summary(result)
    finally:
        logic.stop_worker()

    sidecar, rows, mask = results[False]
    listed = {o["id"]: o["distance_to_cord_mm"] for o in sidecar["outside_cord"]["lesions"]}
    assert listed and sidecar["outside_cord"]["cord"] == "roi_mask"
    flagged = {int(r["id"]): r["flag"].split(", ")[-1] for r in rows if OUTSIDE_CORD_TEXT in r["flag"]}
    assert flagged == {n: f"{OUTSIDE_CORD_TEXT} ({d:.1f} mm)" for n, d in listed.items()}, \
        "the review table flags what the worker listed, with the distance (after any other flag: 'check, ...')"
    sidecar, rows, dropped_mask = results[True]
    assert sidecar["outside_cord"]["dropped"] and not any(OUTSIDE_CORD_TEXT in r["flag"] for r in rows)
    assert len(rows) == len(results[False][1]) - len(listed) and dropped_mask.sum() < mask.sum()
