"""``batch --levels auto``: per-level tables for a whole dataset, levels from TotalSpineSeg (batch/level_stats.py).

TotalSpineSeg cannot run here (no weights), so, as in test_totalspineseg.py, its outputs are REAL-format label maps
made from the shared real labels, cached in the image's output folder as a finished run caches them. The batch must
use them without looking for the tool, and give the annotator's corrected mask the per-level table that ``stats``
gives with SCT's labelled cord. Without the cache and without the tool, nothing runs: one line, exit 2.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import pytest
import SimpleITK as sitk
from test_batch import _batch
from test_totalspineseg import _no_tool_env, _publish, case, real  # noqa: F401 (fixtures)

from SpinalLesionSegLib import bids
from SpinalLesionSegLib.batch.level_stats import LEVELS_TSV


def _dataset(root: Path, data: dict, lesion: Path | None) -> bids.BidsImage:
    """One subject: the real sagittal T2w, its real cord as ``seg-manual`` and, when given, a corrected lesion mask."""
    anat = root / "sub-01" / "anat"
    anat.mkdir(parents=True)
    shutil.copyfile(data["image"], anat / "sub-01_T2w.nii.gz")
    labels = root / "derivatives" / "labels" / "sub-01" / "anat"
    labels.mkdir(parents=True)
    shutil.copyfile(data["cord_path"], labels / "sub-01_T2w_seg-manual.nii.gz")
    if lesion is not None:
        shutil.copyfile(lesion, labels / "sub-01_T2w_lesion-manual.nii.gz")
    (root / "dataset_description.json").write_text('{"Name": "levels", "BIDSVersion": "1.9.0"}')
    return bids.find_images(root)[0]


@pytest.fixture(autouse=True)
def no_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TotalSpineSeg can be found in these tests' batches (the cache must do, or nothing runs)."""
    for key, value in _no_tool_env().items():
        monkeypatch.setenv(key, value)


def _run(root: Path) -> subprocess.CompletedProcess:
    return _batch(root, "--levels", "auto", "--roi-label", "seg-manual")


def _table(root: Path) -> dict[str, dict[str, str]]:
    with (bids.pipeline_dir(root) / LEVELS_TSV).open() as handle:
        return {row["level"]: row for row in csv.DictReader(handle, delimiter="\t")}


def test_batch_levels_auto_gives_the_labelled_cords_table(case: dict, real: dict, tmp_path: Path) -> None:  # noqa: F811
    image = _dataset(tmp_path / "ds", real, case["lesion"])
    _publish(case, real, image.output_dir(), image.path)
    done = _run(tmp_path / "ds")
    assert done.returncode == 0, done.stderr
    assert "TotalSpineSeg runs on 0 image(s), cached for 1" in done.stderr
    table = _table(tmp_path / "ds")
    # The manual correction (lesions in C2, C3, C4) is what is measured, not the prediction; the volumes per level
    # are those stats gives with SCT's labelled cord (test_totalspineseg: C2 459, C3 453, C4 99 mm3).
    volumes = {level: float(row["volume_mm3"]) for level, row in table.items() if float(row["volume_mm3"])}
    assert volumes == {"C2": 459.0, "C3": 453.0, "C4": 99.0}
    assert {row["mask"] for row in table.values()} == {"manual"}
    assert {row["levels_from"] for row in table.values()} == {"TotalSpineSeg discs along the cord"}
    assert {row["image"] for row in table.values()} == {"sub-01/anat/sub-01_T2w"}
    assert all(row["lesion_load_pct"] for level, row in table.items() if level in volumes)  # the cord is known
    stats = image.output_dir() / "sub-01_T2w_stats"
    assert {p.name for p in stats.iterdir()} == {"lesions.csv", "levels.csv", "summary.json",
                                                 "sub-01_T2w_lesion-manual_lesion_label.nii.gz"}
    label = sitk.ReadImage(str(next(stats.glob("*_lesion_label.nii.gz"))))
    assert label.GetSize() == sitk.ReadImage(str(image.path)).GetSize()

    # A new correction (the C4 lesion erased) changes the table on the next run; nothing is predicted again.
    corrected = sitk.ReadImage(str(image.manual_lesion()))
    values = sitk.GetArrayFromImage(corrected)
    values[real["labels"] == 4] = 0
    edited = sitk.GetImageFromArray(values)
    edited.CopyInformation(corrected)
    sitk.WriteImage(edited, str(image.manual_lesion()))
    again = _run(tmp_path / "ds")
    assert again.returncode == 0, again.stderr
    assert "up to date" not in again.stderr
    assert float(_table(tmp_path / "ds")["C4"]["volume_mm3"]) == 0.0


def test_batch_levels_auto_without_the_tool_runs_nothing(real: dict, tmp_path: Path) -> None:  # noqa: F811
    image = _dataset(tmp_path / "ds", real, None)
    done = _run(tmp_path / "ds")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spinal-lesion-seg: error:") and "totalspineseg" in lines[0]
    assert not image.output_dir().exists() or not any(image.output_dir().iterdir())
