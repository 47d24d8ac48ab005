"""Shared fixtures.

Real MRI lives in ``../shared/data`` beside the checkout (override with SPINAL_LESION_SEG_DATA). Tests that need
it skip when it is absent, except when SPINAL_LESION_SEG_REQUIRE_DATA=1 (set by ``.ci/run``): then they fail, so
CI can never pass by silently skipping the real-data tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO_ROOT / "SpinalLesionSeg"
DATA_DIR = Path(os.environ.get("SPINAL_LESION_SEG_DATA", REPO_ROOT.parent / "shared" / "data"))


REFERENCE_DIR = DATA_DIR.parent / "reference"


def _required(folder: Path, what: str) -> Path:
    """``folder``, or a skip (a failure when SPINAL_LESION_SEG_REQUIRE_DATA=1, as in CI) when it is missing."""
    if not folder.is_dir():
        message = f"{what} not found at {folder}"
        if os.environ.get("SPINAL_LESION_SEG_REQUIRE_DATA") == "1":
            pytest.fail(message + " (SPINAL_LESION_SEG_REQUIRE_DATA=1)")
        pytest.skip(message)
    return folder


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-MRI folder; skips (or fails when SPINAL_LESION_SEG_REQUIRE_DATA=1) if it is missing."""
    return _required(DATA_DIR, "real test data")


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    """``../shared/reference`` (Slicer's schemas, index rules and terminology codes, sources named there)."""
    return _required(REFERENCE_DIR, "shared reference material")


@pytest.fixture(scope="session")
def t2_path(shared_data: Path) -> Path:
    """Real sagittal T2w cervical crop, 60x55x52 at 1 mm, voxel axes P, S, R (a left-handed grid)."""
    return shared_data / "sct_testing_data" / "t2" / "t2.nii.gz"


@pytest.fixture(scope="session")
def t2_ms_path(shared_data: Path) -> Path:
    """Real axial T2w, 320x256x19 at 0.6875x0.6875x7.5 mm, LAS, slightly oblique."""
    return shared_data / "sct_tutorial_data" / "t2_ms" / "t2.nii.gz"


@pytest.fixture()
def mrml_scene():
    """An MRML scene (slicer-core) with Slicer's default colour nodes, as the application logic adds them in
    Slicer; the application logic also saves and opens scene bundles (.mrb)."""
    import slicer

    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    colors = app.GetColorLogic()
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()
    scene.app_logic = app  # keep the logic alive as long as the scene
    return scene
