"""Reading and writing NIfTI/NRRD with exact geometry; atomic writes; image/array conversion."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from SpinalLesionSegLib import image_io as sls_io
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.image_io import (
    array_to_image,
    image_to_array,
    read_image,
    same_grid,
    split_image_suffix,
    write_image,
)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd"])
def test_round_trip_preserves_geometry_and_voxels(t2_ms_path: Path, tmp_path: Path, suffix: str) -> None:
    image = read_image(t2_ms_path)  # oblique, anisotropic: the hard case
    out = write_image(image, tmp_path / "sub" / f"copy{suffix}")
    back = read_image(out)
    assert back.GetSize() == image.GetSize()
    # NIfTI stores geometry in float32: equality to float32 precision; NRRD keeps doubles.
    tolerance = 1e-9 if suffix == ".nrrd" else 1e-5
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=tolerance)
    np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), atol=tolerance)
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=tolerance)
    assert back.GetPixelID() == image.GetPixelID()
    assert np.array_equal(image_to_array(back), image_to_array(image))
    assert same_grid(back, image)


def test_real_images_read_with_every_voxel_as_nibabel_reads_it(t2_path: Path, t2_ms_path: Path) -> None:
    """The checks before the read (header, complete gzip stream, NaN scan) leave real scans exactly as they were."""
    for path in (t2_path, t2_ms_path):
        image = read_image(path)
        expected = np.asanyarray(nib.load(path).dataobj)
        assert np.array_equal(image_to_array(image), expected.T)
        np.testing.assert_allclose(image.GetSpacing(), nib.load(path).header.get_zooms(), rtol=1e-6)


def test_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    image = sitk.Image(4, 5, 6, sitk.sitkUInt8)
    write_image(image, tmp_path / "a.nii.gz")
    write_image(image, tmp_path / "a.nii.gz")  # overwrite by rename
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"]


def test_failed_write_leaves_nothing_under_the_final_name(tmp_path: Path, monkeypatch) -> None:
    """A writer that dies half-way (disk full, killed) must not leave a truncated file under the final name."""
    real_write = sitk.WriteImage

    def dying_write(image, name, useCompression=False):
        real_write(image, name, useCompression)
        Path(name).write_bytes(Path(name).read_bytes()[:10])  # truncated file...
        raise OSError("No space left on device")  # ...then the failure

    monkeypatch.setattr(sls_io.sitk, "WriteImage", dying_write)
    with pytest.raises(OSError):
        write_image(sitk.Image(4, 5, 6, sitk.sitkFloat32), tmp_path / "soft.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_array_conversion_keeps_geometry_and_checks_shape(t2_path: Path) -> None:
    image = read_image(t2_path)
    array = image_to_array(image)
    assert array.shape == tuple(reversed(image.GetSize()))  # [k, j, i]
    mask = array_to_image((array > 300).astype(np.uint8), image)
    assert same_grid(mask, image)
    i, j, k = 10, 20, 30
    assert mask[i, j, k] == int(array[k, j, i] > 300)
    with pytest.raises(ValueError, match="does not match"):
        array_to_image(array.transpose(), image)


def test_same_grid_detects_shifted_origin(t2_path: Path) -> None:
    image = read_image(t2_path)
    moved = sitk.Image(image)
    moved.SetOrigin(tuple(np.add(image.GetOrigin(), (0, 0, 0.01))))
    assert not same_grid(image, moved)


def test_split_image_suffix() -> None:
    assert split_image_suffix("/x/sub-01_T2w.nii.gz") == ("sub-01_T2w", ".nii.gz")
    assert split_image_suffix("a.b.NRRD") == ("a.b", ".NRRD")
    with pytest.raises(InputError, match="unsupported file type"):
        split_image_suffix("scan.png")
    with pytest.raises(InputError):
        split_image_suffix(".nii.gz")
