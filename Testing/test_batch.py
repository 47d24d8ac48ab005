"""``spinal-lesion-seg batch`` on a BIDS dataset built from the real images (Testing/bids_data.py): mirrored outputs
with the input's geometry, a broken image failing alone, resume, edits kept, parts, nothing written elsewhere."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from bids_data import build_bids
from conftest import MODULE_DIR
from SpinalLesionSegLib import bids
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.image_io import write_image

DEMO = MODULE_DIR / "Resources" / "Models" / "demo"
GOOD = ("sub-01_T2w", "sub-02_ses-01_T2w", "sub-02_ses-02_acq-ax_T2w")


def _batch(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "SpinalLesionSegLib", "batch", str(root), "--model", str(DEMO),
                           "--device", "cpu", "--folds", "0", *args], capture_output=True, text=True, timeout=600)


def _tree(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _tsv(root: Path) -> dict[str, dict[str, str]]:
    with (bids.pipeline_dir(root) / "batch.tsv").open() as handle:
        return {Path(row["image"]).name.split(".")[0]: row for row in csv.DictReader(handle, delimiter="\t")}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict:
    """The dataset after a first batch run with two jobs (timed), and the files before it."""
    root = tmp_path_factory.mktemp("bids") / "ds"
    paths = build_bids(root, shared_data)
    before = _tree(root)
    started = time.monotonic()
    result = _batch(root, "--jobs", "2")
    return {"root": root, "paths": paths, "before": before, "result": result,
            "seconds": time.monotonic() - started}


def test_outputs_mirror_the_dataset_with_each_inputs_exact_grid(dataset: dict) -> None:
    root, result = dataset["root"], dataset["result"]
    assert result.returncode == 2, result.stderr  # the broken image failed; the rest completed
    for image in bids.find_images(root):
        if image.stem == "sub-03_T2w":
            continue
        out = image.output_dir()
        assert out == root / "derivatives" / "spinal-lesion-seg" / image.folder
        source = sitk.ReadImage(str(image.path))
        for name in ("lesion_seg", "lesion_soft"):
            written = sitk.ReadImage(str(out / f"{image.stem}_{name}.nii.gz"))
            assert written.GetSize() == source.GetSize() and written.GetSpacing() == source.GetSpacing()
            # NIfTI stores the geometry in float32 (quaternion and sform): what a reader makes of the output equals
            # what it made of the input to float32 precision (1e-6 mm, 1e-6 in direction cosines).
            assert np.allclose(written.GetOrigin(), source.GetOrigin(), rtol=0, atol=1e-6)
            assert np.allclose(written.GetDirection(), source.GetDirection(), rtol=0, atol=1e-6)
        sidecar = json.loads((out / f"{image.stem}_lesion_seg.json").read_text())
        assert sidecar["settings"]["threshold"] == 0.5 and sidecar["Sources"][0]["path"] == str(image.path)


def test_the_broken_image_is_reported_and_the_rest_complete(dataset: dict) -> None:
    root, result = dataset["root"], dataset["result"]
    errors = [line for line in result.stderr.splitlines() if line.startswith("spinal-lesion-seg: error:")]
    assert len(errors) == 1 and "sub-03_T2w.nii.gz" in errors[0] and "truncated" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    rows = _tsv(root)
    assert {stem: rows[stem]["status"] for stem in rows} == {**dict.fromkeys(GOOD, "done"), "sub-03_T2w": "failed"}
    assert "truncated" in rows["sub-03_T2w"]["error"] and float(rows["sub-01_T2w"]["seconds"]) > 0
    assert all(rows[stem]["lesion_count"].isdigit() and rows[stem]["volume_mm3"] for stem in GOOD)
    logs = bids.pipeline_dir(root) / "logs"
    assert {p.name for p in logs.glob("*.log")} == {f"{s}.log" for s in (*GOOD, "sub-03_T2w")}
    assert "truncated" in (logs / "sub-03_T2w.log").read_text()


def test_only_the_pipeline_folder_is_written(dataset: dict) -> None:
    """The raw data and derivatives/labels are untouched; every new file is under derivatives/spinal-lesion-seg."""
    root = dataset["root"]
    after = _tree(root)
    assert {k: v for k, v in after.items() if k in dataset["before"]} == dataset["before"]
    assert all(k.startswith("derivatives/spinal-lesion-seg/") for k in set(after) - set(dataset["before"]))
    description = json.loads((bids.pipeline_dir(root) / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    generated = description["GeneratedBy"][0]
    assert generated["Name"] == "SpinalLesionSeg" and generated["CodeURL"].startswith("https://")
    assert generated["Version"] and len(generated["Model"]["SHA256"]) == 64 and generated["Model"]["Name"]


def test_a_rerun_skips_everything_and_is_much_faster(dataset: dict) -> None:
    root = dataset["root"]
    started = time.monotonic()
    result = _batch(root, "--jobs", "2", "--exclude", "sub-03")
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert {stem: row["status"] for stem, row in _tsv(root).items() if stem in GOOD} == dict.fromkeys(GOOD, "skipped")
    assert seconds < dataset["seconds"] / 2, (seconds, dataset["seconds"])


def test_a_changed_threshold_reruns_what_it_affects_dry_run_writes_nothing(dataset: dict) -> None:
    root = dataset["root"]
    before = _tree(root)
    result = _batch(root, "--threshold", "0.3", "--dry-run", "--include", "sub-01", "sub-02")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("run ") and "threshold" in line for line in lines), lines
    assert _tree(root) == before


def test_deleting_one_output_reruns_only_that_image(dataset: dict) -> None:
    root = dataset["root"]
    image = next(i for i in bids.find_images(root) if i.stem == "sub-01_T2w")
    (image.output_dir() / "sub-01_T2w_lesion_soft.nii.gz").unlink()
    plan = _batch(root, "--dry-run", "--exclude", "sub-03").stdout.splitlines()
    assert [line.split()[0] for line in plan] == ["run", "skip", "skip"], plan
    assert "lesion_soft.nii.gz missing" in plan[0]
    result = _batch(root, "--exclude", "sub-03")
    assert result.returncode == 0 and result.stderr.count(": done (") == 1, result.stderr
    assert (image.output_dir() / "sub-01_T2w_lesion_soft.nii.gz").is_file()


def test_an_edited_mask_survives_a_rerun_until_overwrite(dataset: dict) -> None:
    root = dataset["root"]
    image = next(i for i in bids.find_images(root) if i.stem == "sub-02_ses-01_T2w")
    mask_path = image.output_dir() / f"{image.stem}_lesion_seg.nii.gz"
    mask = sitk.ReadImage(str(mask_path))
    edited = sitk.GetArrayFromImage(mask)
    edited[tuple(np.array(edited.shape) // 2)] = 1  # a person adds a voxel
    corrected = sitk.GetImageFromArray(edited)
    corrected.CopyInformation(mask)
    write_image(corrected, mask_path)
    digest = hashlib.sha256(mask_path.read_bytes()).hexdigest()
    result = _batch(root, "--include", "sub-02", "--threshold", "0.4")
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(mask_path.read_bytes()).hexdigest() == digest
    assert _tsv(root)[image.stem]["status"] == "kept"
    assert _tsv(root)["sub-02_ses-02_acq-ax_T2w"]["status"] == "done"  # the threshold change re-ran the other one
    result = _batch(root, "--include", image.stem, "--threshold", "0.4", "--overwrite")
    assert result.returncode == 0 and hashlib.sha256(mask_path.read_bytes()).hexdigest() != digest


def test_two_parts_run_concurrently_cover_every_image_exactly_once(tmp_path: Path, shared_data: Path) -> None:
    root = tmp_path / "ds"
    build_bids(root, shared_data)
    shutil.rmtree(root / "sub-03")
    command = [sys.executable, "-m", "SpinalLesionSegLib", "batch", str(root), "--model", str(DEMO), "--device",
               "cpu", "--folds", "0", "--num-parts", "2"]
    parts = [subprocess.Popen([*command, "--part-id", str(k)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for k in range(2)]
    outputs = [part.communicate(timeout=600) for part in parts]
    assert all(part.returncode == 0 for part in parts), outputs
    ran = [line.split("] ")[1].split(":")[0] for _, err in outputs for line in err.splitlines() if "] " in line]
    assert sorted(ran) == sorted(GOOD)  # each image once, in one part
    rebuilt = subprocess.run([*command[:5], "--qc-only"], capture_output=True, text=True, timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert {stem: row["status"] for stem, row in _tsv(root).items()} == dict.fromkeys(GOOD, "done")


def test_selection_by_labels_names_and_fails_lists(tmp_path: Path, shared_data: Path) -> None:
    root = tmp_path / "ds"
    build_bids(root, shared_data)
    images = bids.find_images(root)
    stems = lambda chosen: [i.stem for i in chosen]  # noqa: E731
    assert stems(images) == sorted([*GOOD, "sub-03_T2w"])
    assert stems(bids.select(images, exclude=["sub-02", "sub-03"])) == ["sub-01_T2w"]
    assert stems(bids.select(images, include=["ses-02"])) == ["sub-02_ses-02_acq-ax_T2w"]
    fails = tmp_path / "qc_fail.yml"
    fails.write_text("FILES_LESION:\n- sub-01/anat/sub-01_T2w.nii.gz\n- sub-02_ses-01_T2w_lesion_seg.nii.gz  # bad\n")
    assert stems(bids.select(images, include=bids.read_selection([f"@{fails}"]))) == ["sub-01_T2w",
                                                                                     "sub-02_ses-01_T2w"]
    with pytest.raises(InputError, match="'sub-9' matches no image"):
        bids.select(images, include=["sub-9"])
    parts = [stems(bids.split_part(images, 3, k)) for k in range(3)]
    assert sorted(sum(parts, [])) == stems(images) and all(parts)
    assert stems(bids.find_images(root, ["acq-ax_T2w"])) == ["sub-02_ses-02_acq-ax_T2w"]


def test_bad_roots_and_options_are_one_line_errors(tmp_path: Path) -> None:
    for root, args, phrase in ((tmp_path / "missing", (), "is not a folder"),
                               (tmp_path, (), "holds neither sub-* folders (BIDS) nor DICOM")):
        result = _batch(root, *args)
        assert result.returncode == 2 and phrase in result.stderr and len(result.stderr.splitlines()) == 1
