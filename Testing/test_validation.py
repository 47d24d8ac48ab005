"""Bad input gets one line naming the file and the problem, and exit code 2 from the CLI; never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.image_io import read_image
from SpinalLesionSegLib.validation import validate_image


def _nifti(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> Path:
    nib.save(nib.Nifti1Image(array, np.diag([*spacing[:3], 1.0])), path)
    return path


def _sitk_file(path: Path, array: np.ndarray) -> Path:
    """NRRD through SimpleITK: NaN survives SimpleITK's NRRD reader (its NIfTI reader turns NaN into 0, which
    read_image catches in the raw data: test_image_checks)."""
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase the error must contain)."""
    cube = np.ones((6, 7, 8), np.float32)
    nan = cube.copy()
    nan[1, 2, 3] = np.nan
    inf = cube.copy()
    inf[0, 0, 0] = np.inf
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    (tmp_path / "garbage.nii.gz").write_bytes(b"this is not an image" * 20)
    (tmp_path / "folder.nii.gz").mkdir()
    rgb = sitk.Image([6, 7, 8], sitk.sitkVectorUInt8, 3)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.nrrd"))
    zero_spacing = tmp_path / "zero_spacing.nrrd"
    zero_spacing.write_bytes(
        b"NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\nsizes: 2 2 2\n"
        b"space directions: (0,0,0) (0,1,0) (0,0,1)\nkinds: domain domain domain\nendian: little\n"
        b"encoding: raw\nspace origin: (0,0,0)\n\n" + bytes(32)
    )
    return {
        "missing": (tmp_path / "missing.nii.gz", "file not found"),
        "folder": (tmp_path / "folder.nii.gz", "is a folder"),
        "empty": (tmp_path / "empty.nii.gz", "empty"),
        "garbage": (tmp_path / "garbage.nii.gz", "cannot be read"),
        "wrong type": (tmp_path / "garbage.png", "unsupported file type"),
        "2D": (_nifti(tmp_path / "slice2d.nii.gz", np.ones((6, 7), np.float32)), "2D image"),
        "4D": (_nifti(tmp_path / "series4d.nii.gz", np.ones((6, 7, 8, 3), np.float32)), "4D image"),
        "one slice": (_nifti(tmp_path / "one_slice.nii.gz", np.ones((6, 7, 1), np.float32)), "single slice"),
        "NaN": (_sitk_file(tmp_path / "nan.nrrd", nan), "NaN"),
        "inf": (_sitk_file(tmp_path / "inf.nrrd", inf), "infinite"),
        "metres": (_nifti(tmp_path / "metres.nii.gz", cube, (0.001, 0.001, 0.001)), "metres"),
        "huge spacing": (_nifti(tmp_path / "huge.nii.gz", cube, (1.0, 1.0, 120.0)), "implausibly large"),
        "zero spacing": (zero_spacing, "spacing"),
        "RGB": (tmp_path / "rgb.nrrd", "3 components"),
    }


def test_every_bad_input_is_one_line_with_file_and_problem(tmp_path: Path) -> None:
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG")
    cases = _bad_inputs(tmp_path)
    for name, (path, phrase) in cases.items():
        result = subprocess.run(
            [sys.executable, "-m", "SpinalLesionSegLib", "info", str(path)], capture_output=True, text=True
        )
        assert result.returncode == 2, name
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, f"{name}: {result.stderr}"
        assert "Traceback" not in result.stderr, name
        assert str(path) in lines[0], name
        assert phrase in lines[0], f"{name}: {lines[0]}"


def test_good_real_images_pass(t2_path: Path, t2_ms_path: Path) -> None:
    for path in (t2_path, t2_ms_path):
        validate_image(read_image(path), path)


def test_validation_names_the_source_and_catches_a_single_bad_voxel() -> None:
    array = np.zeros((5, 6, 7), np.float64)
    image = sitk.GetImageFromArray(array)
    validate_image(image, "volume A")
    array[4, 5, 6] = np.nan
    bad = sitk.GetImageFromArray(array)
    with pytest.raises(InputError) as info:
        validate_image(bad, "volume A")
    assert str(info.value) == "volume A: contains 1 NaN voxel(s); intensities must be finite"


def test_degenerate_direction_is_refused() -> None:
    image = sitk.Image(4, 4, 4, sitk.sitkFloat32)
    image.SetDirection((1, 0, 0, 0.6, 0.6, 0, 0, 0, 1))  # sheared axes: det 0.6, not a rotation
    with pytest.raises(InputError, match="direction"):
        validate_image(image, "oblique.nii")


def test_sheared_axes_with_unit_determinant_are_refused() -> None:
    """|det| = 1 is not enough: these axes have det 1 but are 45 degrees apart (issue 11, finding 12)."""
    image = sitk.Image(4, 4, 4, sitk.sitkFloat32)
    image.SetDirection((1, 1, 0, 0, 1, 0, 0, 0, 1))
    with pytest.raises(InputError, match="not orthonormal"):
        validate_image(image, "sheared")


def test_oversized_grid_is_refused_in_memory_too() -> None:
    """The size limit of file headers (validation.MAX_AXIS_VOXELS) also holds for images built in memory."""
    with pytest.raises(InputError, match="at most 4096 per axis"):
        validate_image(sitk.Image(4097, 2, 2, sitk.sitkUInt8), "long")


def test_complex_voxels_are_refused() -> None:
    with pytest.raises(InputError, match="complex-valued"):
        validate_image(sitk.Image(4, 4, 4, sitk.sitkComplexFloat32), "complex")


def test_error_message_is_always_one_line() -> None:
    error = InputError("a.nii", "line one\nline two")
    assert str(error) == "a.nii: line one line two"
