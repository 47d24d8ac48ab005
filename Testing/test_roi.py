"""The one region-of-interest rule (inference/roi.py): cord mask + the model's crop margins or the user's margin;
a box as given; the mp2rage model's documented 30 x 30 x 5 mm margins applied."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import MODULE_DIR
from SpinalLesionSegLib import defaults
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.image_io import read_image
from SpinalLesionSegLib.inference.case import model_info
from SpinalLesionSegLib.inference.roi import box_from_bounds, box_from_corners, box_from_mask, case_roi, crop_margins_mm
from SpinalLesionSegLib.models.manifests import MANIFESTS
from SpinalLesionSegLib.models.resolve import resolve_model

DEMO = MODULE_DIR / "Resources" / "Models" / "demo"


def test_a_cord_mask_gets_the_user_margin_on_every_side(t2_path) -> None:
    cord = read_image(t2_path.with_name("t2_seg-manual.nii.gz"))
    tight = box_from_mask(cord, 0.0)
    roi = case_roi(mask=cord, margin_mm=defaults.ROI_MARGIN_MM)
    np.testing.assert_allclose(np.subtract(tight.ras_min, roi.ras_min), [defaults.ROI_MARGIN_MM] * 3)
    np.testing.assert_allclose(np.subtract(roi.ras_max, tight.ras_max), [defaults.ROI_MARGIN_MM] * 3)


def test_a_crop_trained_model_gets_its_own_margins_instead(t2_path) -> None:
    cord = read_image(t2_path.with_name("t2_seg-manual.nii.gz"))
    tight = box_from_mask(cord, 0.0)
    roi = case_roi(mask=cord, margin_mm=1.0, model_margins_mm=(3, 4, 5, 6, 7, 8))
    np.testing.assert_allclose(np.subtract(tight.ras_min, roi.ras_min), [3, 5, 7])
    np.testing.assert_allclose(np.subtract(roi.ras_max, tight.ras_max), [4, 6, 8])


def test_a_box_is_used_as_given_and_nothing_means_the_whole_image() -> None:
    box = box_from_corners([1, 2, 3], [-4, 5, -6])
    assert case_roi(box=box, margin_mm=5.0, model_margins_mm=(1,) * 6) == box
    assert case_roi(margin_mm=5.0) is None


def test_box_from_bounds_grows_slicer_bounds_by_the_margin() -> None:
    box = box_from_bounds([-5, 5, -10, 10, -15, 15], 2.0, "ROI")
    assert box.ras_min == (-7.0, -12.0, -17.0) and box.ras_max == (7.0, 12.0, 17.0)
    with pytest.raises(InputError, match="margin must be >= 0"):
        box_from_bounds([0, 1, 0, 1, 0, 1], -1.0)


def test_crop_margins_come_from_crop_metadata_else_the_manifest() -> None:
    pads = {f"pad_{side}": float(i) for i, side in enumerate(
        ("left", "right", "posterior", "anterior", "inferior", "superior"), 1)}
    assert crop_margins_mm(pads, (30.0, 30.0, 5.0)) == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    assert crop_margins_mm(None, (30.0, 30.0, 5.0)) == (30.0, 30.0, 30.0, 30.0, 5.0, 5.0)
    assert crop_margins_mm(None, None) is None
    with pytest.raises(InputError, match="crop_metadata.json"):
        crop_margins_mm({"pad_left": "wide"})


def test_the_mp2rage_model_gets_its_documented_30_30_5_mm_crop() -> None:
    """The manifest's fixed margins reach the case: they were declared but never applied before."""
    mp2rage = dataclasses.replace(resolve_model(DEMO), manifest=MANIFESTS["lesion_ms_mp2rage"], crop_metadata=None)
    info = model_info(mp2rage)
    assert info["crop"] and info["crop_margins_mm"] == (30.0, 30.0, 30.0, 30.0, 5.0, 5.0)
    assert model_info(resolve_model(DEMO))["crop_margins_mm"] is None
