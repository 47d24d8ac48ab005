"""``batch`` with a multi-sequence model (issue 16, point 1): a session's images grouped into one case by BIDS suffix,
each on its model channel; a missing sequence as the model's policy says; resume over every image of a case.

The end-to-end run uses the bundled ``demo_multisequence`` (T2w + STIR, policy ``impute``) on one held-out phantom
acquired twice (T2w 1 mm, STIR 0.8 x 0.8 x 2 mm) and on a STIR-only exam; real nnunetv2, torch, worker processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from SpinalLesionSegLib import bids
from SpinalLesionSegLib.batch.sequence_cases import SequenceCase, group_sequences, job_inputs
from SpinalLesionSegLib.image_io import write_image
from SpinalLesionSegLib.phantom import make_phantom

SEED = 700_001  # bench/demo_multisequence_quality.py's held-out range
CHANNELS = ["T2w", "STIR"]


def _batch(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "SpinalLesionSegLib", "batch", str(root), "--model",
                           "demo_multisequence", "--device", "cpu", *args], capture_output=True, text=True,
                          timeout=600)


def _image(relative: str) -> bids.BidsImage:
    parts = Path(relative).parts
    stem = Path(relative).name.split(".")[0]
    return bids.BidsImage(Path("/data"), Path(relative), parts[0], parts[1] if len(parts) == 4 else None, stem,
                          stem.rsplit("_", 1)[1])


def test_grouping_by_suffix_prefix_and_policy() -> None:
    images = [_image(p) for p in (
        "sub-01/anat/sub-01_T2w.nii.gz", "sub-01/anat/sub-01_stir.nii.gz",  # suffix case ignored
        "sub-02/ses-01/anat/sub-02_ses-01_acq-sag_T2w.nii.gz", "sub-02/ses-01/anat/sub-02_ses-01_acq-ax_T2w.nii.gz",
        "sub-02/ses-01/anat/sub-02_ses-01_acq-sag_STIR.nii.gz",  # one STIR: joins both T2w
        "sub-03/anat/sub-03_STIR.nii.gz", "sub-03/anat/sub-03_T1w.nii.gz")]  # T1w is no channel
    cases, notes = group_sequences(images, CHANNELS, 0, "impute", "m")
    named = {case.stem: [(name, image.stem) for name, image in case.sequences] for case in cases}
    assert named == {
        "sub-01_T2w": [("T2w", "sub-01_T2w"), ("STIR", "sub-01_stir")],
        "sub-02_ses-01_acq-ax_T2w": [("T2w", "sub-02_ses-01_acq-ax_T2w"), ("STIR", "sub-02_ses-01_acq-sag_STIR")],
        "sub-02_ses-01_acq-sag_T2w": [("T2w", "sub-02_ses-01_acq-sag_T2w"),
                                      ("STIR", "sub-02_ses-01_acq-sag_STIR")],
        "sub-03_STIR": [("STIR", "sub-03_STIR")]} and not notes
    assert job_inputs(cases[0]) == (["/data/sub-01/anat/sub-01_T2w.nii.gz", "/data/sub-01/anat/sub-01_stir.nii.gz"],
                                    ["T2w", "STIR"])
    assert cases[0].matches("sub-01_stir") and not cases[0].matches("sub-03")
    refused, notes = group_sequences(images, CHANNELS, 1, "refuse", "m")
    assert [case.stem for case in refused] == ["sub-01_stir"]  # named after the reference (STIR)
    assert notes == ["sub-03/anat: sub-03_STIR.nii.gz has no T2w beside it (model m needs every sequence: T2w, STIR)",
                     "sub-02/ses-01/anat: sub-02_ses-01_acq-sag_STIR.nii.gz pairs with several images of another "
                     "sequence (one case per image of the reference sequence): choose with --suffix or --exclude"]
    assert all(isinstance(case, SequenceCase) for case in refused)
    shared = [_image(p) for p in ("sub-04/anat/sub-04_T2w.nii.gz", "sub-04/anat/sub-04_acq-sag_STIR.nii.gz",
                                  "sub-04/anat/sub-04_acq-ax_STIR.nii.gz")]
    cases, notes = group_sequences(shared, CHANNELS, 0, "impute", "m")  # both pairings would be named sub-04_T2w
    assert cases == [] and notes == ["sub-04/anat: sub-04_T2w.nii.gz pairs with several images of another sequence "
                                     "(one case per image of the reference sequence): choose with --suffix or "
                                     "--exclude"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """sub-01: T2w + STIR of one phantom on two grids; sub-02: a STIR alone; then a first batch run."""
    root = tmp_path_factory.mktemp("multisequence_bids") / "ds"
    t2 = make_phantom(SEED, "T2w", spacing=(1.0, 1.0, 1.0))
    stir = make_phantom(SEED, "STIR", spacing=(0.8, 0.8, 2.0))
    paths = {"t2": write_image(t2.image, root / "sub-01" / "anat" / "sub-01_T2w.nii.gz"),
             "stir": write_image(stir.image, root / "sub-01" / "anat" / "sub-01_STIR.nii.gz"),
             "alone": write_image(make_phantom(SEED + 1, "STIR").image, root / "sub-02" / "anat" / "sub-02_STIR.nii.gz")}
    return {"root": root, "paths": paths, "truth": t2.lesion, "first": _batch(root)}


def test_each_exam_is_one_case_on_its_reference_grid(dataset: dict) -> None:
    assert dataset["first"].returncode == 0, dataset["first"].stderr
    out = bids.pipeline_dir(dataset["root"])
    both = json.loads((out / "sub-01" / "anat" / "sub-01_T2w_lesion_seg.json").read_text())
    assert [source["channel"] for source in both["Sources"]] == CHANNELS
    assert both["sequences"]["missing"] == [] and both["sequences"]["to_reference"]["STIR"]["accepted"]
    mask = sitk.ReadImage(str(out / "sub-01" / "anat" / "sub-01_T2w_lesion_seg.nii.gz"))
    truth = dataset["truth"]
    assert mask.GetSize() == truth.GetSize() and np.allclose(mask.GetDirection(), truth.GetDirection())
    found = sitk.GetArrayFromImage(mask) > 0
    planted = sitk.GetArrayFromImage(truth) > 0
    assert 2 * (found & planted).sum() / (found.sum() + planted.sum()) > 0.6  # the test run measured 0.7+
    alone = json.loads((out / "sub-02" / "anat" / "sub-02_STIR_lesion_seg.json").read_text())
    assert alone["sequences"]["missing"] == ["T2w"] and alone["sequences"]["missing_policy"] == "impute"
    assert not list(out.rglob("sub-01_STIR_lesion_seg.*"))  # the STIR is an input of sub-01's case, not a case


def test_a_rerun_skips_and_a_changed_second_sequence_reruns_its_case(dataset: dict) -> None:
    assert dataset["first"].returncode == 0, dataset["first"].stderr
    again = _batch(dataset["root"], "--dry-run")
    assert again.returncode == 0 and again.stdout.count("skip ") == 2, again.stdout
    stir = dataset["paths"]["stir"]
    image = sitk.ReadImage(str(stir))
    write_image(image * 1.01, stir)
    changed = _batch(dataset["root"], "--dry-run")
    lines = {rest: action for action, rest in (line.split(None, 1) for line in changed.stdout.splitlines())}
    assert lines["sub-01/anat/sub-01_T2w.nii.gz  (an image of the case changed)"] == "run", lines
    assert lines["sub-02/anat/sub-02_STIR.nii.gz  (up to date)"] == "skip"
