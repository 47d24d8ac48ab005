"""``batch`` over a folder tree of DICOM studies (real MR series written from the shared real T2w): one output folder
per series with the DICOM outputs, records kept apart for two patients whose series share a name, a localiser
left out with its reason, resume and parts as on BIDS."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
import SimpleITK as sitk
from conftest import MODULE_DIR
from dicom_data import write_mr_series
from SpinalLesionSegLib import bids

DEMO = MODULE_DIR / "Resources" / "Models" / "demo"


def _batch(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "SpinalLesionSegLib", "batch", str(root), "--model", str(DEMO),
                           "--device", "cpu", "--folds", "0", *args], capture_output=True, text=True, timeout=600,
                          check=False)


@pytest.fixture(scope="module")
def tree(t2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two patients with a "sag T2 TSE" series number 5 each (one nested per study, one flat), and a localiser
    with two orientations; after a first batch with two jobs."""
    root = tmp_path_factory.mktemp("dicomtree") / "export"
    crop = sitk.ReadImage(str(t2_path))[:, :, 12:40]
    uids = {"P1": write_mr_series(crop, root / "PAT1" / "STUDY1" / "SE5", patient_id="P1"),
            "P2": write_mr_series(crop, root / "PAT2" / "SE5", patient_id="P2")}
    localiser = root / "PAT2" / "SE1"
    write_mr_series(crop[:, :, :3], localiser, patient_id="P2", description="localizer", series_number=1)
    tilted = sorted(localiser.glob("*.dcm"))[1]
    dataset = pydicom.dcmread(tilted)
    dataset.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    dataset.save_as(tilted)
    return {"root": root, "uids": uids, "result": _batch(root, "--jobs", "2")}


def _rows(root: Path) -> list[dict[str, str]]:
    with (bids.pipeline_dir(root) / "batch.tsv").open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_each_series_gets_its_own_folder_with_dicom_outputs(tree: dict) -> None:
    root, result = tree["root"], tree["result"]
    assert result.returncode == 0, result.stderr
    assert "left out: series" in result.stderr and "mixed slice orientations" in result.stderr
    rows = _rows(root)
    assert sorted(row["image"] for row in rows) == ["PAT1/STUDY1/SE5", "PAT2/SE5"]
    records = sorted((bids.pipeline_dir(root) / "logs").glob("*.json"))
    assert len(records) == 2, "two patients' series with one name keep two records"
    for patient, uids in tree["uids"].items():
        (folder,) = (bids.pipeline_dir(root) / patient).glob("*/sag_T2_TSE_s5")
        sidecar = json.loads((folder / "sag_T2_TSE_s5_lesion_seg.json").read_text())
        assert sidecar["Sources"][0]["dicom"]["SeriesInstanceUID"] == uids["series"]
        seg = hd.seg.segread(folder / "sag_T2_TSE_s5_lesion_seg.dcm")
        assert seg.StudyInstanceUID == uids["study"] and seg.PatientID == patient
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "sag_T2_TSE_s5_lesion_seg.nii.gz")))
        assert mask.shape == (28, 55, 60)  # the series' grid: 28 slices of 55 x 60


def test_a_rerun_skips_and_parts_split_the_series(tree: dict) -> None:
    root = tree["root"]
    again = _batch(root)
    assert again.returncode == 0, again.stderr
    assert {row["status"] for row in _rows(root)} == {"skipped"}
    parts = [_batch(root, "--dry-run", "--num-parts", "2", "--part-id", str(k)).stdout.splitlines()
             for k in (0, 1)]
    assert [len(lines) for lines in parts] == [1, 1] and parts[0] != parts[1]


def test_a_folder_with_neither_bids_nor_dicom_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    result = _batch(tmp_path)
    assert result.returncode == 2 and "holds neither sub-* folders (BIDS) nor DICOM MR image series" in result.stderr
    assert "Traceback" not in result.stderr
