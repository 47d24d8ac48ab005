"""IJK-to-RAS conversion, orientation codes and reorientation, against nibabel's independent reading of real files."""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from SpinalLesionSegLib.geometry import (
    axcodes,
    axcodes_to_sct,
    geometry_from_ijk_to_ras,
    ijk_to_ras_matrix,
    is_right_handed,
    reorient,
    sct_to_axcodes,
    set_ijk_to_ras,
    to_right_handed,
    voxel_to_ras,
)


def _random_image(rng: np.random.Generator) -> sitk.Image:
    """A small image with random oblique direction (possibly left-handed), anisotropic spacing and origin."""
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    image = sitk.GetImageFromArray(rng.normal(size=(4, 5, 6)).astype(np.float32))
    image.SetDirection(q.ravel().tolist())
    image.SetSpacing(rng.uniform(0.3, 5.0, 3).tolist())
    image.SetOrigin(rng.uniform(-100, 100, 3).tolist())
    return image


def test_matrix_round_trip_and_lps_ras_sign() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        image = _random_image(rng)
        matrix = ijk_to_ras_matrix(image)
        # RAS = LPS with x and y negated, for every voxel ITK knows the position of.
        for index in [(0, 0, 0), (5, 4, 3), (2, 1, 3)]:
            lps = np.array(image.TransformIndexToPhysicalPoint(index))
            ras = voxel_to_ras(matrix, index)[0]
            np.testing.assert_allclose(ras, lps * [-1, -1, 1], atol=1e-9)
        copy = sitk.Image(image)
        set_ijk_to_ras(copy, matrix)
        np.testing.assert_allclose(copy.GetOrigin(), image.GetOrigin(), atol=1e-12)
        np.testing.assert_allclose(copy.GetSpacing(), image.GetSpacing(), atol=1e-12)
        np.testing.assert_allclose(copy.GetDirection(), image.GetDirection(), atol=1e-12)


def test_degenerate_matrix_is_refused() -> None:
    matrix = np.eye(4)
    matrix[:, 1] = 0
    with pytest.raises(ValueError, match="zero"):
        geometry_from_ijk_to_ras(matrix)


@pytest.mark.parametrize("name", ["t2", "t2_ms"])
def test_matrix_matches_nibabel_on_real_files(name: str, t2_path, t2_ms_path) -> None:
    path = {"t2": t2_path, "t2_ms": t2_ms_path}[name]
    ours = ijk_to_ras_matrix(sitk.ReadImage(str(path)))
    np.testing.assert_allclose(ours, nib.load(path).affine, atol=1e-4)


def test_axcodes_of_real_files(t2_path, t2_ms_path) -> None:
    # Facts from ../shared/data/README.md (nibabel axcodes).
    assert axcodes(sitk.ReadImage(str(t2_path))) == "PSR"
    assert axcodes(sitk.ReadImage(str(t2_ms_path))) == "LAS"
    assert "".join(nib.aff2axcodes(nib.load(t2_ms_path).affine)) == "LAS"


def test_sct_orientation_names_are_the_opposite_letters() -> None:
    # SCT's RPI (the lesion_ms training orientation) is nibabel's LAS; SCT's default LPI is RAS.
    assert sct_to_axcodes("RPI") == "LAS"
    assert sct_to_axcodes("LPI") == "RAS"
    assert axcodes_to_sct("PSR") == "AIL"
    for bad in ["RRS", "XYZ", "RA"]:
        with pytest.raises(ValueError):
            sct_to_axcodes(bad)


def test_reorient_all_48_codes_preserves_physical_image_and_round_trips(t2_path) -> None:
    image = sitk.ReadImage(str(t2_path))
    original = axcodes(image)
    probe = (7, 30, 21)  # a voxel inside the image
    value = image[probe]
    position = image.TransformIndexToPhysicalPoint(probe)
    codes = ["".join(p) for letters in itertools.product("RL", "AP", "SI") for p in itertools.permutations(letters)]
    assert len(codes) == 48
    for code in codes:
        turned = reorient(image, code)
        assert axcodes(turned) == code
        index = turned.TransformPhysicalPointToIndex(position)
        assert turned[index] == value
        back = reorient(turned, original)
        assert back.GetSize() == image.GetSize()
        np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-6)
        assert back.GetDirection() == pytest.approx(image.GetDirection(), abs=1e-9)
        assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image))


def test_to_right_handed_flips_k_only_when_needed(t2_path) -> None:
    image = sitk.ReadImage(str(t2_path))
    assert not is_right_handed(image)  # P, S, R is left-handed
    flipped = to_right_handed(image)
    assert is_right_handed(flipped)
    a, b = sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(flipped)
    assert np.array_equal(a[::-1], b)
    # Same physical position for the same voxel content.
    np.testing.assert_allclose(
        flipped.TransformIndexToPhysicalPoint((3, 4, image.GetSize()[2] - 1)),
        image.TransformIndexToPhysicalPoint((3, 4, 0)), atol=1e-9,
    )
    assert to_right_handed(flipped) is flipped
