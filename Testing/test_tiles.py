"""``--roi-tiles`` (issue 17, point 4's interactive path): which sliding-window tiles run inside a region of
interest. The tile rules on their own (nnunetv2's step rule, real), then the real demo model on a phantom: centred
tiles are fewer, find the same lesions inside the ROI, leave 0 outside it, and say so in the sidecar."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.image_io import write_image
from SpinalLesionSegLib.inference.case import result_settings
from SpinalLesionSegLib.inference.protocol import Job, ProtocolError
from SpinalLesionSegLib.inference.roi import box_from_mask, roi_mask
from SpinalLesionSegLib.inference.tiles import centred_tiles, check_roi_tiles, choose_tiles, overlaps
from SpinalLesionSegLib.mrml.folds import job_roi_tiles
from SpinalLesionSegLib.phantom import make_phantom


def _grid(shape: tuple[int, ...], patch: tuple[int, ...], step: float = 0.5) -> list[tuple[slice, ...]]:
    """nnunetv2's own whole-image tiles for an array of ``shape``."""
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    steps = compute_steps_for_sliding_window(shape, patch, step)
    return [(slice(None), *(slice(s, s + p) for s, p in zip(corner, patch)))
            for corner in np.array(np.meshgrid(*steps, indexing="ij")).reshape(len(shape), -1).T]


def test_a_window_that_fits_a_patch_gets_one_tile_centred_on_it() -> None:
    window = (slice(100, 130), slice(80, 110), slice(10, 140))  # 30 x 30 x 130 voxels
    (tile,) = centred_tiles(window, (192, 192, 192), (220, 192, 192), 0.5)
    assert tile[1:] == (slice(19, 211), slice(0, 192), slice(0, 192))  # centred at 115, inside 220
    assert all(t.start <= w.start and w.stop <= t.stop for t, w in zip(tile[1:], window))


def test_a_window_at_the_image_border_is_shifted_inside_and_a_long_one_is_tiled() -> None:
    (tile,) = centred_tiles((slice(0, 10), slice(50, 60)), (48, 48), (200, 200), 0.5)
    assert tile[1:] == (slice(0, 48), slice(31, 79))
    tiles = centred_tiles((slice(90, 110), slice(0, 130)), (48, 48), (200, 200), 0.5)
    assert {(t[1].start, t[1].stop) for t in tiles} == {(76, 124)}  # one column, centred on 100
    rows = sorted(t[2].start for t in tiles)
    assert rows[0] == 0 and rows[-1] + 48 == 130 and len(rows) == 5  # nnU-Net's step rule over 130 voxels


def test_the_exact_rule_keeps_the_whole_image_tiles_that_touch_the_window() -> None:
    shape, patch = (220, 192, 192), (192, 192, 192)
    whole = _grid(shape, patch)
    window = (slice(100, 130), slice(80, 110), slice(10, 140))
    tiles, choice = choose_tiles("exact", whole, window, patch, shape, 0.5)
    assert tiles == [t for t in whole if overlaps(t, window)] and len(tiles) == 2  # lesion_ms on a typical image
    centred, choice = choose_tiles("centred", whole, window, patch, shape, 0.5)
    assert len(centred) == 1 and choice.record() == {"requested": "centred", "used": "centred",
                                                     "reason": "requested", "tiles": 1, "whole_image_tiles": 2}
    everything, choice = choose_tiles("centred", whole, None, patch, shape, 0.5)
    assert everything == whole and choice.used == "whole input"
    slices = [(slice(None), k, slice(y, y + 192), slice(0, 192)) for k in range(220) for y in (0,)]  # 2D: nnunetv2
    flat, choice = choose_tiles("centred", slices, window, patch[1:], shape, 0.5)
    assert choice.used == "exact" and "2D" in choice.reason and len(flat) == 30  # slices 100-129 touch the window


def test_unknown_tilings_are_refused_in_one_line() -> None:
    with pytest.raises(InputError, match="^unknown ROI tiling 'some'; choose one of exact, centred$"):
        check_roi_tiles("some")
    with pytest.raises(ProtocolError, match="'roi_tiles' must be one of exact, centred"):
        Job(inputs=["a.nii.gz"], output_dir="out", roi_tiles="some")
    assert job_roi_tiles(True) == "centred" and job_roi_tiles(False) == "exact"
    centred = Job(inputs=["a.nii.gz"], output_dir="out", roi_tiles="centred")
    assert "roi_tiles" not in result_settings(centred)  # no ROI: the tiling changes nothing, a re-run is not due
    assert result_settings(replace(centred, roi_auto=True))["roi_tiles"] == "centred"


def test_centred_tiles_run_fewer_tiles_and_find_the_same_lesions(tmp_path: Path) -> None:
    phantom = make_phantom(11, contrast="T2w")
    image = write_image(phantom.image, tmp_path / "p_T2w.nii.gz")
    cord = write_image(phantom.cord, tmp_path / "cord.nii.gz")
    records = {}
    for tiles in ("exact", "centred"):
        done = subprocess.run([sys.executable, "-m", "SpinalLesionSegLib", "predict", str(image), "-o",
                               str(tmp_path / tiles), "--model", "demo", "--device", "cpu", "--roi-mask", str(cord),
                               "--roi-tiles", tiles], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        records[tiles] = json.loads((tmp_path / tiles / "p_T2w_lesion_seg.json").read_text())
    exact, centred = records["exact"]["tiles"], records["centred"]["tiles"]
    assert exact["used"] == "exact" and centred["used"] == "centred"
    assert centred["tiles"] < exact["tiles"] <= exact["whole_image_tiles"]
    assert "roi_tiles" not in records["exact"]["settings"] and records["centred"]["settings"]["roi_tiles"] == "centred"
    inside = roi_mask(phantom.image, box_from_mask(phantom.cord, 10.0))
    soft = {t: sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / t / "p_T2w_lesion_soft.nii.gz")))
            for t in records}
    assert not soft["centred"][~inside].any()
    a, b = soft["exact"] >= 0.5, soft["centred"] >= 0.5
    assert a.sum() > 50 and 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.9
    assert np.abs(soft["exact"] - soft["centred"]).max() < 0.5  # tiles placed elsewhere, not another answer
