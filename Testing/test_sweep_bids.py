"""``sweep --bids``: pairing, recommended thresholds, FROC, calibration and bootstrap on a BIDS dataset of real
images (``bids_data.build_bids``) whose soft maps are built so that every expected number is known by hand.

Soft maps (values exact in float32, so ``soft >= t`` has no rounding surprise):

* sub-01 (the real sagittal T2w): a lesion L painted in the real cord (the mirror of sub-02's), with a core C (the
  lesion voxels within 1 voxel of its centre) at 0.75 and the rest of it, the rim, at 0.3125, and a separate 8-voxel
  false-positive blob B at 0.375 far from the cord. Thresholds <= 0.30: L + B; 0.35: C + B; 0.40..0.75: C;
  0.80 and above: nothing. F1 is best (1.0) from 0.40, Dice is best (with B) at 0.05..0.30.
* sub-02 ses-01 (the flipped T2w, whose manual lesion build_bids paints): the lesion at 0.625, nothing else:
  perfect at every threshold up to 0.60.
* sub-03: a soft map only; sub-02 ses-02 (the axial crop): a manual mask only.
"""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from bids_data import build_bids
from PIL import Image
from scipy import ndimage
from SpinalLesionSegLib.analysis.bids_sweep import pair_dataset, run_bids_sweep
from SpinalLesionSegLib.analysis.sweep import THRESHOLDS
from SpinalLesionSegLib.errors import InputError
from test_cli import _command

PIPELINE = Path("derivatives") / "spinal-lesion-seg"
LABELS = Path("derivatives") / "labels"
SUB01 = "sub-01/anat/sub-01_T2w"
SUB02 = "sub-02/ses-01/anat/sub-02_ses-01_T2w"
AXIAL = "sub-02/ses-02/anat/sub-02_ses-02_acq-ax_T2w"
CORE, RIM, BLOB, LESION02 = 0.75, 0.3125, 0.375, 0.625
BLOB_VOXELS = 8


def _read(path: Path) -> tuple[np.ndarray, sitk.Image]:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image


def _save(array: np.ndarray, grid: sitk.Image, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(grid)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)


def _paint(root: Path, data: Path, identical: bool = False) -> dict:
    """Soft maps and extra manual masks on the dataset's real grids (module docstring); ``identical``: sub-02's soft
    map is the mirror of sub-01's, so that both subjects have exactly the same numbers. Returns the regions."""
    built = build_bids(root, data)
    cord = _read(built["cord"])[0] > 0
    lesion02, grid02 = _read(built["manual"])
    lesion01 = lesion02[::-1] > 0  # sub-02 ses-01 is sub-01 flipped along the array's first axis
    k, j, i = np.argwhere(cord[::-1])[int(cord.sum()) // 2]  # the centre bids_data.lesion_in_cord chose on sub-02
    centre = np.array([cord.shape[0] - 1 - k, j, i])  # ... mirrored onto sub-01
    core = lesion01 & (np.sum((np.indices(cord.shape) - centre[:, None, None, None]) ** 2, axis=0) <= 1)
    blob = np.zeros_like(cord)
    blob[0:2, 0:2, 0:2] = True
    assert not (ndimage.binary_dilation(cord, iterations=3) & blob).any()
    soft01 = np.where(core, CORE, np.where(lesion01, RIM, np.where(blob, BLOB, 0.0))).astype(np.float32)
    soft02 = soft01[::-1] if identical else np.where(lesion02 > 0, LESION02, 0.0).astype(np.float32)
    grid01 = _read(built["sub-01"])[1]
    _save(lesion01.astype(np.uint8), grid01, root / LABELS / f"{SUB01}_lesion-manual.nii.gz")
    _save(soft01, grid01, root / PIPELINE / f"{SUB01}_lesion_soft.nii.gz")
    _save(np.ascontiguousarray(soft02), grid02, root / PIPELINE / f"{SUB02}_lesion_soft.nii.gz")
    _save(soft01, grid01, root / PIPELINE / "sub-03/anat/sub-03_T2w_lesion_soft.nii.gz")
    axial, axial_grid = _read(built["sub-02_ses-02"])
    box = np.zeros(axial.shape, dtype=np.uint8)
    box[8:11, 44:50, 44:50] = 1
    _save(box, axial_grid, root / LABELS / f"{AXIAL}_lesion-manual.nii.gz")
    return {"lesion": int(lesion01.sum()), "core": int(core.sum()), "lesions01": ndimage.label(lesion01)[1],
            "core_parts": ndimage.label(core)[1], "voxels": cord.size}


@pytest.fixture(scope="module")
def dataset(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("bids")
    regions = _paint(root, shared_data)
    result = run_bids_sweep(root)
    return {"root": root, "regions": regions, "document": result.document, "files": result.files}


def _row(rows: list[dict], threshold: float) -> dict:
    return next(row for row in rows if row["threshold"] == threshold)


def _expected01(threshold: float, lesion: int, core: int) -> tuple[float, float]:
    """(F1, Dice) of sub-01 worked by hand (module docstring)."""
    if threshold <= RIM:
        return 2 / 3, 2 * lesion / (2 * lesion + BLOB_VOXELS)
    if threshold <= BLOB:
        return 2 / 3, 2 * core / (core + BLOB_VOXELS + lesion)
    if threshold <= CORE:
        return 1.0, 2 * core / (core + lesion)
    return 0.0, 0.0


def test_the_painted_regions_are_what_the_expectations_assume(dataset: dict) -> None:
    regions = dataset["regions"]
    assert regions["lesions01"] == 1 and regions["core_parts"] == 1
    assert 10 * regions["core"] >= regions["lesion"] > regions["core"]  # the core alone detects the lesion


def test_pairs_and_unpaired_images_are_counted(dataset: dict) -> None:
    pairing = dataset["document"]["pairing"]
    assert pairing["counts"] == {"images": 4, "paired": 2, "soft_only": 1, "manual_only": 1, "neither": 0}
    assert pairing["soft_only"] == ["sub-03/anat/sub-03_T2w.nii.gz"]
    assert pairing["manual_only"] == [f"{AXIAL}.nii.gz"]
    inputs = dataset["document"]["inputs"]
    assert [entry["image"] for entry in inputs] == [f"{SUB01}.nii.gz", f"{SUB02}.nii.gz"]
    assert inputs[0]["manual"] == f"{LABELS.as_posix()}/{SUB01}_lesion-manual.nii.gz"
    assert all(len(entry["soft_sha256"]) == 64 and len(entry["manual_sha256"]) == 64 for entry in inputs)


def test_scores_match_the_hand_worked_values(dataset: dict) -> None:
    regions = dataset["regions"]
    images = {image["name"]: image for image in dataset["document"]["images"]}
    for threshold in THRESHOLDS:
        f1, dice = _expected01(threshold, regions["lesion"], regions["core"])
        row01 = _row(images[f"{SUB01}.nii.gz"]["scores"], threshold)
        row02 = _row(images[f"{SUB02}.nii.gz"]["scores"], threshold)
        assert (row01["f1"], row01["dice"]) == pytest.approx((f1, dice)), threshold
        assert row02["f1"] == row02["dice"] == (1.0 if threshold <= LESION02 else 0.0)
        mean = _row(dataset["document"]["dataset"]["scores"], threshold)
        assert mean["f1"] == pytest.approx((f1 + row02["f1"]) / 2)


def test_recommended_thresholds_over_the_dataset_and_per_subject(dataset: dict) -> None:
    document = dataset["document"]
    assert document["recommended"]["f1"]["threshold"] == 0.40  # F1 1.0 on 0.40..0.60, lowest wins the tie
    assert document["recommended"]["f1"]["mean_f1"] == 1.0
    assert document["recommended"]["dice"]["threshold"] == 0.05  # L + B beats C alone; lowest of 0.05..0.30
    subjects = {subject["name"]: subject["recommended"] for subject in document["subjects"]}
    assert subjects["sub-01"]["f1"]["threshold"] == 0.40 and subjects["sub-01"]["dice"]["threshold"] == 0.05
    assert subjects["sub-02"]["f1"]["threshold"] == 0.05 and subjects["sub-02"]["f1"]["mean_f1"] == 1.0
    assert [subject["images"] for subject in document["subjects"]] == [[f"{SUB01}.nii.gz"], [f"{SUB02}.nii.gz"]]


def test_froc_is_monotonic_with_the_known_points(dataset: dict) -> None:
    points = dataset["document"]["froc"]["points"]
    assert [p["threshold"] for p in points] == list(THRESHOLDS)
    for before, after in itertools.pairwise(points):
        assert after["lesion_sensitivity"] <= before["lesion_sensitivity"]
        assert after["fp_per_scan"] <= before["fp_per_scan"]
    for threshold, sensitivity, fp_per_scan in ((0.05, 1.0, 0.5), (0.35, 1.0, 0.5), (0.40, 1.0, 0.0),
                                                (0.60, 1.0, 0.0), (0.65, 0.5, 0.0), (0.80, 0.0, 0.0)):
        point = _row(points, threshold)
        assert (point["lesion_sensitivity"], point["fp_per_scan"]) == (sensitivity, fp_per_scan), threshold
        assert point["ref_lesions"] == 2


def test_calibration_bins_match_hand_counts(dataset: dict) -> None:
    regions = dataset["regions"]
    rim = regions["lesion"] - regions["core"]
    lesion02 = regions["lesion"]  # sub-02's lesion is sub-01's mirror
    calibration = dataset["document"]["calibration"]
    bins = {(row["low"], row["high"]): row for row in calibration["bins"]}
    assert len(bins) == 10 and calibration["edges"][0] == 0.05 and calibration["edges"][-1] == 1.0
    mixed = bins[0.3, 0.4]  # the rim (0.3125, in the mask) and the blob (0.375, outside)
    assert mixed["voxels"] == rim + BLOB_VOXELS
    assert mixed["observed_fraction"] == pytest.approx(rim / (rim + BLOB_VOXELS))
    assert mixed["mean_probability"] == pytest.approx((RIM * rim + BLOB * BLOB_VOXELS) / (rim + BLOB_VOXELS))
    assert (bins[0.6, 0.7]["voxels"], bins[0.6, 0.7]["observed_fraction"]) == (lesion02, 1.0)
    assert (bins[0.7, 0.8]["voxels"], bins[0.7, 0.8]["observed_fraction"]) == (regions["core"], 1.0)
    assert bins[0.1, 0.2] == {"low": 0.1, "high": 0.2, "voxels": 0, "mean_probability": None,
                              "observed_fraction": None}
    above = 2 * lesion02 + BLOB_VOXELS  # both lesions and the blob; nothing else is above 0
    assert calibration["below"] == {"high": 0.05, "voxels": 2 * regions["voxels"] - above, "in_manual_mask": 0}
    errors = [mixed["voxels"] * abs(mixed["observed_fraction"] - mixed["mean_probability"]),
              lesion02 * (1 - LESION02), regions["core"] * (1 - CORE)]  # voxels x |observed - predicted|
    assert calibration["expected_calibration_error"] == pytest.approx(sum(errors) / above)


def test_intervals_contain_the_point_estimates(dataset: dict) -> None:
    document = dataset["document"]
    assert document["bootstrap"]["subjects"] == 2 and document["bootstrap"]["resamples"] == 1000
    for row in document["dataset"]["scores"]:
        for key in ("dice", "f1", "lesion_sensitivity", "fp_per_scan"):
            low, high = row["ci95"][key]
            assert low <= row[key] <= high, (row["threshold"], key)
    # Two different subjects: a resample of sub-01 twice or sub-02 twice is likely, so the interval spans both.
    dice = document["recommended"]["dice"]
    assert dice["ci95"]["mean_dice"] == pytest.approx([_row(document["images"][0]["scores"], 0.05)["dice"], 1.0])
    assert _row(document["froc"]["points"], 0.05)["ci95"]["fp_per_scan"] == [0.0, 1.0]


def test_intervals_shrink_to_a_point_when_subjects_are_identical(shared_data: Path, tmp_path: Path) -> None:
    _paint(tmp_path, shared_data, identical=True)
    document = run_bids_sweep(tmp_path, tmp_path / "out", resamples=200, seed=3).document
    for row in document["dataset"]["scores"]:
        for key in ("dice", "f1", "lesion_sensitivity", "fp_per_scan"):
            assert row["ci95"][key] == pytest.approx([row[key], row[key]], abs=1e-12), (row["threshold"], key)


def test_files_are_written_in_the_pipeline_folder(dataset: dict) -> None:
    out = dataset["root"] / PIPELINE / "sweep"
    assert [path.name for path in dataset["files"]] == ["sweep.csv", "sweep.png", "froc.png", "calibration.png",
                                                        "sweep.json"]
    assert json.loads((out / "sweep.json").read_text()) == dataset["document"]
    with open(out / "sweep.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 19 * (1 + 2 + 2)  # the dataset, two subjects, two images
    assert [row["scope"] for row in rows[::19]] == ["dataset", "subject", "subject", "image", "image"]
    assert rows[0]["dice_ci95_low"] != "" and rows[19]["dice_ci95_low"] == ""
    for name in ("sweep.png", "froc.png", "calibration.png"):
        with Image.open(out / name) as png:
            assert png.format == "PNG" and png.size[0] >= 600
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_no_pair_is_one_clear_error(shared_data: Path, tmp_path: Path) -> None:
    build_bids(tmp_path, shared_data)  # only sub-02 ses-01 has a manual mask, and nothing has a soft map
    with pytest.raises(InputError, match="no image has both a soft map .* of 4 image.*, 0 have only a soft map, "
                                         "1 only a manual mask, 3 neither"):
        pair_dataset(tmp_path)
    result = _run("sweep", "--bids", tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("spinal-lesion-seg: error: ")
    assert not (tmp_path / PIPELINE).exists()  # nothing created before the error


def _run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([*_command(), *map(str, args)], check=False, capture_output=True, text=True)


def test_cli_writes_the_files_and_a_summary(shared_data: Path, tmp_path: Path) -> None:
    _paint(tmp_path, shared_data)
    result = _run("sweep", "--bids", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "4 image(s): 2 with a soft map and a manual mask (scored), 1 with only a soft map, 1 with only a " \
           "manual mask, 0 with neither; 2 subject(s)" in result.stdout
    assert "best lesion F1 at threshold 0.40: mean F1 1.000 [1.000, 1.000]" in result.stdout
    assert "best Dice at threshold 0.05" in result.stdout
    assert "false-positive lesions per scan 0.500 [0.000, 1.000]" in result.stdout
    assert "best lesion F1 threshold per subject: 0.05 to 0.40" in result.stdout
    out = tmp_path / PIPELINE / "sweep"
    assert str(out / "sweep.json") in result.stdout
    assert {p.name for p in out.iterdir()} == {"sweep.csv", "sweep.json", "sweep.png", "froc.png", "calibration.png"}


@pytest.mark.parametrize("args", [("--bids", "ROOT", "--soft", "a.nii.gz"), ("--bids", "ROOT", "--ref", "a.nii.gz"),
                                  ("--soft", "a.nii.gz", "-o", "OUT"), ("--soft", "a.nii.gz", "--ref", "b.nii.gz"),
                                  ("-o", "OUT")])
def test_exactly_one_form_is_accepted(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = _run("sweep", *(str(tmp_path) if a == "ROOT" else str(tmp_path / "out") if a == "OUT" else a
                             for a in args))
    assert result.returncode == 2 and "usage:" in result.stderr and "Traceback" not in result.stderr


def test_a_soft_map_on_another_grid_needs_resample(shared_data: Path, tmp_path: Path) -> None:
    _paint(tmp_path, shared_data)
    axial = sitk.ReadImage(str(tmp_path / f"{AXIAL}.nii.gz"))[2:90, 3:92, :]
    soft = sitk.Cast(axial * 0, sitk.sitkFloat32) + 0.5
    _save(sitk.GetArrayFromImage(soft), soft, tmp_path / PIPELINE / f"{AXIAL}_lesion_soft.nii.gz")
    result = _run("sweep", "--bids", tmp_path, "-o", tmp_path / "out")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "another voxel grid" in result.stderr and "--resample" in result.stderr
    assert f"{AXIAL}_lesion-manual.nii.gz" in result.stderr
    document = run_bids_sweep(tmp_path, tmp_path / "out", resample=True).document
    assert document["pairing"]["counts"]["paired"] == 3
    assert _row(document["images"][2]["scores"], 0.5)["ref_lesion_count"] == 1
