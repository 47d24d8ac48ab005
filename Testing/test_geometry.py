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
    axis_aligned_ijk_to_ras,
    geometry_from_ijk_to_ras,
    ijk_to_ras_matrix,
    is_right_handed,
    lps_to_ras_points,
    ras_to_voxel,
    reorient,
    sct_to_axcodes,
    set_ijk_to_ras,
    superior_axis,
    to_right_handed,
    voxel_box_ras,
    voxel_to_ras,
    voxel_volume_mm3,
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


@pytest.mark.parametrize("name", ["t2", "t2_ms"])
def test_lps_points_match_itk_and_nibabel_on_real_files(name: str, t2_path, t2_ms_path) -> None:
    """ITK's physical points (LPS) become nibabel's RAS positions, and converting twice is the identity."""
    path = {"t2": t2_path, "t2_ms": t2_ms_path}[name]
    image = sitk.ReadImage(str(path))
    ijk = np.array([(0, 0, 0), (5, 4, 3), tuple(n - 1 for n in image.GetSize())])
    lps = np.array([image.TransformIndexToPhysicalPoint(tuple(int(v) for v in index)) for index in ijk])
    ras = lps_to_ras_points(lps)
    np.testing.assert_allclose(ras, voxel_to_ras(nib.load(path).affine, ijk), atol=1e-4)
    np.testing.assert_allclose(lps_to_ras_points(ras), lps, atol=1e-12)
    np.testing.assert_allclose(lps_to_ras_points(lps[1]), ras[1], atol=1e-12)  # a single (3,) point too


@pytest.mark.parametrize("name", ["t2", "t2_ms"])
def test_ras_to_voxel_inverts_voxel_to_ras_on_real_files(name: str, t2_path, t2_ms_path) -> None:
    path = {"t2": t2_path, "t2_ms": t2_ms_path}[name]
    image = sitk.ReadImage(str(path))
    matrix = ijk_to_ras_matrix(image)
    ijk = np.array([(0.0, 0.0, 0.0), (5.0, 4.0, 3.0), (2.5, 1.25, 7.75)])
    np.testing.assert_allclose(ras_to_voxel(matrix, voxel_to_ras(matrix, ijk)), ijk, atol=1e-9)
    # Against ITK: the voxel ITK finds for a physical point (its LPS) is the rounded index of that point in RAS.
    probe = voxel_to_ras(matrix, [(7.2, 3.9, 2.1)])
    itk_index = image.TransformPhysicalPointToIndex(lps_to_ras_points(probe)[0].tolist())
    assert tuple(np.round(ras_to_voxel(matrix, probe)[0]).astype(int)) == itk_index


def test_axis_aligned_matrix_gives_an_ras_grid() -> None:
    image = sitk.Image([4, 5, 6], sitk.sitkUInt8)
    set_ijk_to_ras(image, axis_aligned_ijk_to_ras(np.array([10.0, -20.0, 30.0]), np.array([0.5, 1.0, 2.5])))
    assert axcodes(image) == "RAS"
    assert image.GetSpacing() == (0.5, 1.0, 2.5)
    np.testing.assert_allclose(voxel_to_ras(ijk_to_ras_matrix(image), [(2, 3, 4)])[0], [11.0, -17.0, 40.0])
    np.testing.assert_allclose(ras_to_voxel(ijk_to_ras_matrix(image), [11.0, -17.0, 40.0])[0], [2, 3, 4])


def test_superior_axis_of_real_files(t2_path, t2_ms_path) -> None:
    # t2 is PSR: j grows superior, which is numpy axis 1 of [k, j, i]; t2_ms is LAS: k grows superior, axis 0.
    axis, up = superior_axis(sitk.ReadImage(str(t2_path)))
    assert axis == 1
    np.testing.assert_allclose(up, [0.0, 0.0, 1.0], atol=1e-6)
    axis, up = superior_axis(sitk.ReadImage(str(t2_ms_path)))
    assert axis == 0
    assert up[2] > 0.99 and np.linalg.norm(up) == pytest.approx(1.0)  # slightly oblique
    flipped = sitk.Flip(sitk.ReadImage(str(t2_ms_path)), [False, False, True])  # k now grows inferior
    axis, flipped_up = superior_axis(flipped)
    assert axis == 0
    np.testing.assert_allclose(flipped_up, up, atol=1e-9)


@pytest.mark.parametrize("name", ["t2", "t2_ms"])
def test_voxel_box_and_volume_of_real_files(name: str, t2_path, t2_ms_path) -> None:
    path = {"t2": t2_path, "t2_ms": t2_ms_path}[name]
    image, affine = sitk.ReadImage(str(path)), nib.load(path).affine
    corners = np.array(list(itertools.product(*[(-0.5, n - 0.5) for n in image.GetSize()])))
    ras = voxel_to_ras(affine, corners)
    low, high = voxel_box_ras(image)
    np.testing.assert_allclose(low, ras.min(axis=0), atol=1e-4)
    np.testing.assert_allclose(high, ras.max(axis=0), atol=1e-4)
    assert voxel_volume_mm3(image) == pytest.approx(abs(np.linalg.det(affine[:3, :3])), rel=1e-5)
