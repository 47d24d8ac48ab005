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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-MRI folder; skips (or fails when SPINAL_LESION_SEG_REQUIRE_DATA=1) if it is missing."""
    if not DATA_DIR.is_dir():
        message = f"real test data not found at {DATA_DIR}"
        if os.environ.get("SPINAL_LESION_SEG_REQUIRE_DATA") == "1":
            pytest.fail(message + " (SPINAL_LESION_SEG_REQUIRE_DATA=1)")
        pytest.skip(message)
    return DATA_DIR


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
