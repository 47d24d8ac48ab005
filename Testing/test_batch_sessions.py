"""``batch --compare-sessions`` on a dataset with three sessions of one subject, built from real anatomy.

Each session is the real sagittal T2w of ``sct_testing_data/t2`` (sessions 2 and 3 moved by known rigid motions,
as a patient moves between visits) with lesions painted inside its real cord and a manual correction of those
lesions in ``derivatives/labels`` (what an annotator saves from Slicer), so the comparison uses the corrections, not
the demo model's guesses. Planted time course (lesion -> radius in voxels, absent = no lesion)::

    ses-01   A 1.5   B 1.5   C 2.5
    ses-02   A 1.5   B 2.5   C 2.5   D 1.5      01->02: new 1, enlarged 1, stable 2
    ses-03           B 2.5   C 1.5   D 1.5      02->03: disappeared 1, shrunk 1, stable 2
                                                01->03: new 1, disappeared 1, enlarged 1, shrunk 1
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from analysis_data import T2, paint_ellipsoids, rigid_motion
from bids_data import SEG_SIDECAR
from conftest import MODULE_DIR
from scipy import ndimage
from SpinalLesionSegLib import bids
from SpinalLesionSegLib.analysis.longitudinal import CLASSES
from SpinalLesionSegLib.batch.pair_runs import compare_pair, read_pair_records
from SpinalLesionSegLib.batch.pairs import (
    BASELINE_TO_LAST,
    CONSECUTIVE,
    pairs_of,
    session_order,
)

DEMO = MODULE_DIR / "Resources" / "Models" / "demo"
LESIONS = {"A": 10, "B": 27, "C": 43, "D": 50}  # centre slice j of each lesion
RADII = {"ses-01": {"A": 1.5, "B": 1.5, "C": 2.5}, "ses-02": {"A": 1.5, "B": 2.5, "C": 2.5, "D": 1.5},
         "ses-03": {"B": 2.5, "C": 1.5, "D": 1.5}}
MOTIONS = {"ses-01": ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)), "ses-02": ((3.0, 0.0, 0.0), (1.0, -1.0, 1.4)),
           "ses-03": ((-2.0, 1.0, 0.0), (-1.5, 0.5, 1.0))}
EXPECTED = {("ses-01", "ses-02"): {"new": 1, "enlarged": 1, "stable": 2},
            ("ses-02", "ses-03"): {"disappeared": 1, "shrunk": 1, "stable": 2},
            ("ses-01", "ses-03"): {"new": 1, "disappeared": 1, "enlarged": 1, "shrunk": 1}}


def _image(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def _write(image: sitk.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def _session(root: Path, data: Path, session: str) -> dict[str, float]:
    """Write one session's image, cord (seg-manual) and corrected lesions; return its lesion volumes (mm3)."""
    t2 = sitk.ReadImage(str(data / T2 / "t2.nii.gz"))
    cord = sitk.GetArrayFromImage(sitk.ReadImage(str(data / T2 / "t2_seg-manual.nii.gz"))) > 0
    painted = paint_ellipsoids(cord, {name: (LESIONS[name], (r, r, r)) for name, r in RADII[session].items()})
    labels = np.zeros(cord.shape, np.uint8)
    for number, mask in enumerate(painted.values(), start=1):
        labels[mask] = number
    values = sitk.GetArrayFromImage(t2).astype(np.float32)
    values[labels > 0] = 1.6 * float(np.median(values[cord]))
    centre = t2.TransformContinuousIndexToPhysicalPoint(np.argwhere(cord).mean(axis=0)[::-1].tolist())
    motion = rigid_motion(centre, *MOTIONS[session])

    def move(array: np.ndarray, interpolator: int, pixel: int) -> sitk.Image:
        return sitk.Resample(_image(array, t2), t2, motion, interpolator, 0, pixel)

    stem = f"sub-01_{session}_T2w"
    anat, labels_dir = Path("sub-01") / session / "anat", root / "derivatives" / "labels" / "sub-01" / session / "anat"
    _write(move(values, sitk.sitkLinear, sitk.sitkFloat32), root / anat / f"{stem}.nii.gz")
    cord_moved = move(cord.astype(np.uint8), sitk.sitkNearestNeighbor, sitk.sitkUInt8)
    _write(cord_moved, labels_dir / f"{stem}_seg-manual.nii.gz")
    moved = sitk.GetArrayFromImage(move(labels, sitk.sitkNearestNeighbor, sitk.sitkUInt8))
    _write(_image((moved > 0).astype(np.uint8), t2), labels_dir / f"{stem}_lesion-manual.nii.gz")
    for name in ("seg-manual", "lesion-manual"):
        (labels_dir / f"{stem}_{name}.json").write_text(json.dumps(SEG_SIDECAR))
    return {name: float(np.count_nonzero(moved == n)) * float(np.prod(t2.GetSpacing()))
            for n, name in enumerate(painted, start=1)}


def _batch(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "SpinalLesionSegLib", "batch", str(root), "--model", str(DEMO),
                           "--device", "cpu", "--folds", "0", "--roi-label", "seg-manual", "--compare-sessions",
                           *args], capture_output=True, text=True, timeout=600, check=False)


def _pairs(root: Path) -> dict[tuple[str, str], dict[str, str]]:
    with (bids.pipeline_dir(root) / "longitudinal.tsv").open(newline="") as handle:
        return {(row["baseline_session"], row["followup_session"]): row
                for row in csv.DictReader(handle, delimiter="\t")}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict:
    """Three sessions (listed out of order in sub-01_sessions.tsv), after a first batch with two jobs."""
    root = tmp_path_factory.mktemp("sessions") / "ds"
    volumes = {session: _session(root, shared_data, session) for session in RADII}
    (root / "sub-01" / "sub-01_sessions.tsv").write_text(
        "session_id\tacq_time\nses-03\t2025-03-01T09:00:00\nses-01\t2023-03-01T09:00:00\n"
        "ses-02\t2024-03-01T09:00:00\n")
    (root / "dataset_description.json").write_text(json.dumps({"Name": "sessions", "BIDSVersion": "1.9.0"}))
    return {"root": root, "volumes": volumes, "result": _batch(root, "--jobs", "2")}


def test_each_pair_and_baseline_to_last_give_the_planted_changes(dataset: dict) -> None:
    root, result = dataset["root"], dataset["result"]
    assert result.returncode == 0, result.stderr
    rows = _pairs(root)
    assert set(rows) == set(EXPECTED)
    for (before, after), expected in EXPECTED.items():
        row = rows[(before, after)]
        assert {c: int(row[c]) for c in CLASSES} == {c: expected.get(c, 0) for c in CLASSES}, (before, after)
        assert row["kind"] == (BASELINE_TO_LAST if (before, after) == ("ses-01", "ses-03") else CONSECUTIVE)
        for scan, session in (("baseline", before), ("followup", after)):
            planted = dataset["volumes"][session]
            assert float(row[f"{scan}_volume_mm3"]) == pytest.approx(sum(planted.values()), rel=0.01)
            assert int(row[f"{scan}_lesion_count"]) == len(planted)
        summary = json.loads((bids.pipeline_dir(root) / row["folder"] / "summary.json").read_text())
        assert summary["inputs"]["followup_lesion"]["path"].endswith(f"sub-01_{after}_T2w_lesion-manual.nii.gz")
        assert summary["inputs"]["baseline_cord"]["path"].endswith(f"sub-01_{before}_T2w_seg-manual.nii.gz")
        assert summary["registration"]["accepted"] and summary["registration"]["region"]
    assert "[compare 3/3]" in result.stderr and "Traceback" not in result.stderr


def test_the_qc_page_shows_the_timeline_in_time_order(dataset: dict) -> None:
    page = (bids.pipeline_dir(dataset["root"]) / "qc" / "index.html").read_text()
    section = page[page.index('<section id="timeline">'):]
    line = section[section.index('<div class="line">'):section.index('<p class="overall">')]
    assert line.index(">ses-01<") < line.index(">ses-02<") < line.index(">ses-03<")
    assert line.count('class="tag">corrected') == 3
    assert '<span class="c-new">1 new</span>' in line and '<span class="c-disappeared">1 disappeared</span>' in line
    overall = section[section.index('<p class="overall">'):]
    assert "ses-01 &rarr; ses-03</b> (baseline to last)" in overall and "1 enlarged" in overall
    for link in ("ses-01_to_ses-02/registration.png", "ses-02_to_ses-03/lesion_changes.csv"):
        href = f"../sub-01/longitudinal/T2w/{link}"
        assert f'href="{href}"' in section
        assert (bids.pipeline_dir(dataset["root"]) / "qc" / href).is_file()
    assert "<svg" in section


def test_a_rerun_skips_current_pairs_and_an_edit_reruns_its_pairs(dataset: dict) -> None:
    root = dataset["root"]
    folders = {pair: bids.pipeline_dir(root) / row["folder"] for pair, row in _pairs(root).items()}
    before = {pair: (folder / "summary.json").read_bytes() for pair, folder in folders.items()}
    again = _batch(root)
    assert again.returncode == 0, again.stderr
    assert {pair: row["status"] for pair, row in _pairs(root).items()} == dict.fromkeys(EXPECTED, "skipped")
    assert {pair: (folder / "summary.json").read_bytes() for pair, folder in folders.items()} == before
    # The annotator erases lesion D in session 3: the pairs with session 3 are compared again, the other is not.
    manual = root / "derivatives" / "labels" / "sub-01" / "ses-03" / "anat" / "sub-01_ses-03_T2w_lesion-manual.nii.gz"
    mask = sitk.ReadImage(str(manual))
    array = sitk.GetArrayFromImage(mask)
    components, count = ndimage.label(array)
    assert count == 3
    top = max(range(1, count + 1), key=lambda n: np.argwhere(components == n)[:, 1].mean())  # D: highest j
    array[components == top] = 0
    _write(_image(array, mask), manual)
    edited = _batch(root)
    assert edited.returncode == 0, edited.stderr
    rows = _pairs(root)
    assert {pair: row["status"] for pair, row in rows.items()} == {
        ("ses-01", "ses-02"): "skipped", ("ses-02", "ses-03"): "done", ("ses-01", "ses-03"): "done"}
    assert int(rows[("ses-02", "ses-03")]["disappeared"]) == 2 and int(rows[("ses-01", "ses-03")]["new"]) == 0


def test_dry_run_lists_the_comparisons(dataset: dict) -> None:
    result = _batch(dataset["root"], "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("compare")]
    assert lines == ["compare  sub-01 T2w ses-01 -> ses-02  (consecutive; skipped if current)",
                     "compare  sub-01 T2w ses-02 -> ses-03  (consecutive; skipped if current)",
                     "compare  sub-01 T2w ses-01 -> ses-03  (baseline-to-last; skipped if current)"]


def test_session_order_and_pairs(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for session in ("ses-2", "ses-10", "ses-1"):
        (root / "sub-01" / session / "anat").mkdir(parents=True)
        for name in ("T2w", "acq-ax_T2w"):
            (root / "sub-01" / session / "anat" / f"sub-01_{session}_{name}.nii.gz").write_bytes(b"")
    (root / "sub-02" / "anat").mkdir(parents=True)
    (root / "sub-02" / "anat" / "sub-02_T2w.nii.gz").write_bytes(b"")
    assert session_order(root, "sub-01", ["ses-2", "ses-10", "ses-1"]) == ["ses-1", "ses-2", "ses-10"]
    pairs = pairs_of(bids.find_images(root))
    assert [(p.series, p.baseline.session, p.followup.session, p.kind) for p in pairs] == [
        ("T2w", "ses-1", "ses-2", CONSECUTIVE), ("T2w", "ses-2", "ses-10", CONSECUTIVE),
        ("T2w", "ses-1", "ses-10", BASELINE_TO_LAST), ("acq-ax_T2w", "ses-1", "ses-2", CONSECUTIVE),
        ("acq-ax_T2w", "ses-2", "ses-10", CONSECUTIVE), ("acq-ax_T2w", "ses-1", "ses-10", BASELINE_TO_LAST)]
    # acq_time decides when it dates every session; a session without one falls back to the labels.
    (root / "sub-01" / "sub-01_sessions.tsv").write_text(
        "session_id\tacq_time\nses-1\t2024-05-01\nses-2\t2023-01-01\nses-10\t2025-01-01\n")
    assert session_order(root, "sub-01", ["ses-1", "ses-2", "ses-10"]) == ["ses-2", "ses-1", "ses-10"]
    (root / "sub-01" / "sub-01_sessions.tsv").write_text("session_id\tacq_time\nses-1\t2024-05-01\nses-2\t\n")
    assert session_order(root, "sub-01", ["ses-1", "ses-2", "ses-10"]) == ["ses-1", "ses-2", "ses-10"]


def test_a_pair_without_a_lesion_mask_waits(tmp_path: Path) -> None:
    """A scan with neither a prediction nor a correction (its image failed, or another part has not run it yet):
    its pairs wait, with a record naming the image, and nothing is compared."""
    root = tmp_path / "ds"
    for session in ("ses-01", "ses-02"):
        anat = root / "sub-01" / session / "anat"
        anat.mkdir(parents=True)
        (anat / f"sub-01_{session}_T2w.nii.gz").write_bytes(b"")
    (pair,) = pairs_of(bids.find_images(root))
    record = compare_pair(pair, "seg-manual")
    assert record.status == "waiting" and "sub-01_ses-01_T2w.nii.gz" in record.error
    assert [r.name for r in read_pair_records(root)] == [pair.name] and not pair.output_dir().exists()
