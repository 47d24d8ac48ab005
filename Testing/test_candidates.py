"""Candidate lesions (analysis/candidates.py): blobs of the soft map above a lower threshold that the mask misses."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from SpinalLesionSegLib.analysis.candidates import find_candidates
from SpinalLesionSegLib.geometry import ijk_to_ras_matrix, voxel_to_ras


def _grid(shape_kji: tuple[int, int, int]) -> sitk.Image:
    image = sitk.Image(shape_kji[::-1], sitk.sitkUInt8)
    image.SetSpacing((0.5, 0.5, 2.0))
    image.SetOrigin((10.0, -4.0, 7.0))
    return image


def test_blobs_touching_the_mask_are_rims_and_the_others_are_candidates() -> None:
    soft = np.zeros((6, 20, 20))
    soft[1:3, 2:5, 2:5] = 0.9  # a lesion in the mask, with a fuzzy rim
    soft[1:3, 5, 2:5] = 0.3
    soft[4, 10:13, 10:14] = 0.4  # a doubtful lesion the mask leaves out
    soft[4, 11, 11] = 0.45
    soft[0, 17, 17] = 0.25  # a one-voxel blob, also a candidate
    soft[5, 0, 19] = 0.1  # below the candidate threshold
    mask = soft >= 0.5
    reference = _grid(soft.shape)
    found = find_candidates(soft, mask, reference, threshold=0.2)
    assert [c.id for c in found.items] == [1, 2] and set(np.unique(found.labels)) == {0, 1, 2}
    single, doubtful = sorted(found.items, key=lambda c: c.voxel_count)
    assert single.voxel_count == 1 and single.peak_probability == 0.25
    assert doubtful.voxel_count == 12 and doubtful.volume_mm3 == 12 * 0.5 * 0.5 * 2.0
    assert doubtful.peak_probability == 0.45 and abs(doubtful.mean_probability - (11 * 0.4 + 0.45) / 12) < 1e-12
    expected = voxel_to_ras(ijk_to_ras_matrix(reference), np.array([11.5, 11.0, 4.0]))[0]
    np.testing.assert_allclose(doubtful.centroid_ras, expected)
    assert not np.any(found.mask(doubtful.id) & mask)


def test_no_soft_signal_no_candidates() -> None:
    soft = np.zeros((3, 4, 5))
    found = find_candidates(soft, soft > 0, _grid(soft.shape))
    assert found.items == [] and not found.labels.any()
