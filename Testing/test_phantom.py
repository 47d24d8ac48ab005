"""Synthetic phantoms: determinism, exact shared geometry, anatomy and ground truth in physical space.

The demo model is trained and benchmarked on these phantoms, so a wrong ground truth would silently corrupt both:
the tests check the ground truth against the image in millimetres, whatever the voxel grid and orientation.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from SpinalLesionSegLib import cli
from SpinalLesionSegLib.analysis.levels import level_name
from SpinalLesionSegLib.geometry import axcodes, ijk_to_ras_matrix, reorient, voxel_to_ras
from SpinalLesionSegLib.image_io import image_to_array, read_image, same_grid
from SpinalLesionSegLib.phantom import CONTRASTS, T2_LIKE, Phantom, make_phantom, write_phantom

TRUTH = ("lesion", "cord", "levels", "discs", "canal")
SEEDS = range(6)


@lru_cache(maxsize=None)
def phantom(seed: int, contrast: str = "T2w", spacing: tuple[float, float, float] | None = None,
            orientation: str | None = None, lesion_count: int | None = None) -> Phantom:
    """Phantoms are deterministic, so tests share them (the tests never modify one)."""
    return make_phantom(seed, contrast, spacing=spacing, orientation=orientation, lesion_count=lesion_count)


def ras_of(image: sitk.Image, mask: np.ndarray) -> np.ndarray:
    """RAS positions (mm) of the voxels where the ``[k, j, i]`` array ``mask`` is true, shape (N, 3)."""
    k, j, i = np.nonzero(mask)
    return voxel_to_ras(ijk_to_ras_matrix(image), np.column_stack([i, j, k]))


def components(mask: sitk.Image) -> np.ndarray:
    """Connected components (26-connectivity) of a 0/1 mask, ``[k, j, i]``."""
    return image_to_array(sitk.ConnectedComponent(mask, True))


def test_same_seed_same_phantom_other_seed_other_phantom() -> None:
    a, b, c = make_phantom(11), make_phantom(11), make_phantom(12)
    for name in ("image", *TRUTH):
        assert same_grid(getattr(a, name), getattr(b, name))
        assert np.array_equal(image_to_array(getattr(a, name)), image_to_array(getattr(b, name))), name
    assert a.lesions == b.lesions and a.disc_points_ras == b.disc_points_ras
    assert not same_grid(a.image, c.image) or not np.array_equal(image_to_array(a.image), image_to_array(c.image))


@pytest.mark.parametrize("seed", SEEDS)
def test_ground_truth_shares_the_image_grid_exactly(seed: int) -> None:
    p = phantom(seed)
    assert p.image.GetPixelID() == sitk.sitkFloat32
    for name in TRUTH:
        truth = getattr(p, name)
        assert truth.GetPixelID() == sitk.sitkUInt8, name
        assert truth.GetSize() == p.image.GetSize(), name
        assert truth.GetOrigin() == p.image.GetOrigin(), name
        assert truth.GetSpacing() == p.image.GetSpacing(), name
        assert truth.GetDirection() == p.image.GetDirection(), name


@pytest.mark.parametrize("seed", SEEDS)
def test_lesions_are_separate_and_inside_the_cord_and_the_cord_inside_the_canal(seed: int) -> None:
    p = phantom(seed)
    lesion, cord, canal = (image_to_array(getattr(p, name)) for name in ("lesion", "cord", "canal"))
    assert set(np.unique(lesion)) <= {0, 1} and set(np.unique(cord)) <= {0, 1}
    assert cord.sum() > 0 and not np.any(lesion & ~cord), "lesion voxels outside the cord"
    assert not np.any(cord & ~canal), "cord voxels outside the canal"
    assert components(p.lesion).max() == len(p.lesions), "each lesion must be one connected component"


def test_lesion_counts_sizes_and_levels_are_varied_and_plausible() -> None:
    counts = [len(phantom(seed).lesions) for seed in range(20)]
    assert min(counts) <= 2 and max(counts) >= 5 and max(counts) <= 6
    lesions = [lesion for seed in range(20) for lesion in phantom(seed).lesions]
    volumes = np.array([lesion.volume_mm3 for lesion in lesions])
    assert volumes.min() < 10.0 and volumes.max() > 80.0 and volumes.max() < 160.0 and volumes.min() > 0.5
    assert len({lesion.level for lesion in lesions}) >= 3
    assert len(phantom(3, lesion_count=4).lesions) == 4
    none = phantom(3, lesion_count=0)
    assert none.lesions == [] and image_to_array(none.lesion).sum() == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_lesion_list_matches_the_mask_in_physical_space(seed: int) -> None:
    p = phantom(seed, spacing=(0.8, 0.8, 0.8))
    labels, levels = components(p.lesion), image_to_array(p.levels)
    voxel_mm3 = float(np.prod(p.image.GetSpacing()))
    for component in range(1, labels.max() + 1):
        voxels = labels == component
        centre = ras_of(p.image, voxels).mean(axis=0)
        lesion = min(p.lesions, key=lambda item: np.linalg.norm(np.subtract(item.centre_ras, centre)))
        assert np.linalg.norm(np.subtract(lesion.centre_ras, centre)) < 1.0
        assert voxels.sum() * voxel_mm3 == pytest.approx(lesion.volume_mm3, rel=0.5, abs=3.0)
        assert lesion.level in set(np.unique(levels[voxels]))


@pytest.mark.parametrize("contrast", CONTRASTS)
def test_lesions_are_hyperintense_on_t2_like_and_hypointense_on_t1_like_contrasts(contrast: str) -> None:
    p = phantom(4, contrast, spacing=(0.8, 0.8, 0.8), lesion_count=4)
    image, lesion, cord = (image_to_array(getattr(p, name)) for name in ("image", "lesion", "cord"))
    lesion_mean, cord_mean = image[lesion > 0].mean(), image[(cord > 0) & (lesion == 0)].mean()
    if contrast in T2_LIKE:
        assert lesion_mean > 1.15 * cord_mean
    else:
        assert lesion_mean < 0.9 * cord_mean


def test_csf_is_bright_on_t2w_and_dark_on_t1w() -> None:
    def csf_to_cord(contrast: str) -> float:
        p = phantom(4, contrast, spacing=(0.8, 0.8, 0.8), lesion_count=4)
        image, canal, cord = (image_to_array(getattr(p, name)) for name in ("image", "canal", "cord"))
        inner_canal = image_to_array(sitk.BinaryErode(p.canal, [2, 2, 2])) > 0
        csf = inner_canal & (image_to_array(sitk.BinaryDilate(p.cord, [2, 2, 2])) == 0)
        return float(image[csf].mean() / image[cord > 0].mean())

    assert csf_to_cord("T2w") > 1.5
    assert csf_to_cord("T1w") < 0.6


@pytest.mark.parametrize("seed", SEEDS)
def test_levels_run_from_superior_to_inferior_and_discs_lie_between_them(seed: int) -> None:
    p = phantom(seed)
    levels, discs = image_to_array(p.levels), image_to_array(p.discs)
    cord = image_to_array(p.cord)
    assert np.array_equal(levels > 0, cord > 0), "every cord voxel has a level"
    values = sorted(int(v) for v in np.unique(levels) if v)
    assert values == list(range(values[0], values[-1] + 1)) and values[0] == 1 and len(values) >= 4
    z_of = {v: ras_of(p.image, levels == v)[:, 2] for v in values}
    for upper, lower in zip(values, values[1:]):
        assert z_of[upper].mean() > z_of[lower].mean(), f"{level_name(upper)} is not above {level_name(lower)}"
    codes = sorted(int(v) for v in np.unique(discs) if v)
    assert codes == values[1:], "one disc between each pair of consecutive levels (SCT: disc n tops level n)"
    tolerance = max(p.image.GetSpacing())
    cord_ras = ras_of(p.image, cord > 0)
    for code in codes:
        assert (discs == code).sum() == 1, "a disc label is a single voxel"
        point = ras_of(p.image, discs == code)[0]
        assert np.allclose(point, p.disc_points_ras[code], atol=tolerance)
        assert z_of[code - 1].min() > point[2] - tolerance and z_of[code].max() < point[2] + tolerance
        near = cord_ras[np.abs(cord_ras[:, 2] - point[2]) < 2.0]
        assert point[1] > near[:, 1].max(), "disc points lie at the posterior tip of the disc, anterior to the cord"


def test_lesion_volumes_are_physical_whatever_the_spacing() -> None:
    grids = [(1.0, 1.0, 1.0), (0.6, 0.6, 0.6), (2.5, 0.8, 0.8), (0.8, 0.8, 2.5), (0.5, 3.0, 0.5)]
    phantoms = [phantom(9, spacing=grid, orientation="LPS", lesion_count=3) for grid in grids]
    reference = phantoms[0].lesions
    assert len(reference) == 3 and sum(lesion.volume_mm3 for lesion in reference) > 30.0
    for p in phantoms:
        assert p.lesions == reference, "the lesions are defined by the seed, not by the grid"
        voxel_mm3 = float(np.prod(p.image.GetSpacing()))
        mask_mm3 = image_to_array(p.lesion).sum() * voxel_mm3
        assert mask_mm3 == pytest.approx(sum(lesion.volume_mm3 for lesion in reference), rel=0.3)
        cord_mm3 = image_to_array(p.cord).sum() * voxel_mm3
        assert cord_mm3 == pytest.approx(image_to_array(phantoms[0].cord).sum() * 1.0, rel=0.05)  # 1 mm3 voxels


def test_random_orientation_varies_and_shows_the_same_physical_object() -> None:
    assert len({axcodes(phantom(seed).image) for seed in range(12)}) >= 5
    assert len({tuple(np.round(phantom(seed).image.GetOrigin())) for seed in range(6)}) == 6
    seed = next(s for s in range(12) if axcodes(phantom(s).image) not in ("RAS", "LPS"))
    stored = phantom(seed)
    upright = phantom(seed, orientation="RAS")
    assert axcodes(upright.image) == "RAS"
    for name in ("image", *TRUTH):
        interpolator = sitk.sitkNearestNeighbor
        back = sitk.Resample(getattr(stored, name), getattr(upright, name), sitk.Transform(), interpolator)
        assert np.array_equal(image_to_array(back), image_to_array(getattr(upright, name))), name
        assert same_grid(reorient(getattr(stored, name), "RAS"), getattr(upright, name)), name
    assert stored.lesions == upright.lesions


def test_write_phantom_writes_readable_files_on_one_grid(tmp_path: Path) -> None:
    p = phantom(2, "STIR")
    paths = write_phantom(p, tmp_path / "out", stem="case")
    assert paths["image"].name == "case_STIR.nii.gz"
    for kind in ("lesion", "cord", "levels", "discs"):
        assert paths[kind].name == f"case_{kind}.nii.gz"
        written = read_image(paths[kind])
        assert same_grid(written, read_image(paths["image"]))
        assert np.array_equal(image_to_array(written), image_to_array(getattr(p, kind)))
    description = json.loads(paths["json"].read_text())
    assert description["seed"] == 2 and description["contrast"] == "STIR"
    assert [lesion["volume_mm3"] for lesion in description["lesions"]] == [lesion.volume_mm3 for lesion in p.lesions]
    assert not [f for f in (tmp_path / "out").iterdir() if "partial" in f.name]


def test_cli_phantom_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["phantom", "-o", str(tmp_path), "--seed", "3", "--contrast", "T1w", "--count", "2"]) == 0
    assert "2 lesion(s)" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "phantom_lesions.json").read_text())["lesions"]) == 2
    assert (tmp_path / "phantom_T1w.nii.gz").is_file()
    assert cli.main(["phantom", "-o", str(tmp_path), "--count", "-1"]) == cli.EXIT_BAD_INPUT
    assert "lesion_count" in capsys.readouterr().err


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="contrast"):
        make_phantom(0, "FLAIR")
    with pytest.raises(ValueError, match="start_level"):
        make_phantom(0, start_level=1)
    with pytest.raises(ValueError, match="spacing"):
        make_phantom(0, spacing=(1.0, 0.0, 1.0))
