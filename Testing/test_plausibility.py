"""Plausibility warnings (non-fatal, one line): an image given as a mask or levels map, a cord mask from another
scan as the region of interest, a contrast hint the file name or its BIDS sidecar contradicts. Real files only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import SimpleITK as sitk
from conftest import MODULE_DIR
from SpinalLesionSegLib.image_io import image_to_array, read_image, write_image
from SpinalLesionSegLib.mrml.panel import _contrast_warnings
from SpinalLesionSegLib.plausibility import contrast_conflict, contrast_evidence, looks_like_image, roi_mask_fit

DEMO = MODULE_DIR / "Resources" / "Models" / "demo"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "SpinalLesionSegLib", *args], capture_output=True, text=True,
                          timeout=300)


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("spinal-lesion-seg: warning: ")]


def test_real_images_look_like_images_and_real_labels_do_not(t2_path: Path) -> None:
    folder = t2_path.parent
    assert "looks like an image" in looks_like_image(image_to_array(read_image(t2_path)), "a lesion mask")
    for labels in ("t2_seg-manual.nii.gz", "t2_seg-manual_labeled.nii.gz", "labels.nii.gz"):
        assert looks_like_image(image_to_array(read_image(folder / labels)), "a levels map", 100) is None, labels


def test_an_image_given_as_a_lesion_mask_or_levels_map_is_named_in_one_warning(tmp_path: Path,
                                                                               t2_path: Path) -> None:
    cord = str(t2_path.parent / "t2_seg-manual.nii.gz")
    result = _cli("stats", "--lesion", str(t2_path), "-o", str(tmp_path / "a"))
    assert result.returncode == 0 and "Traceback" not in result.stderr  # a warning, not a refusal
    assert len(_warnings(result.stderr)) == 1 and "t2.nii.gz: looks like an image, not a mask" in result.stderr
    result = _cli("stats", "--lesion", cord, "--levels", str(t2_path), "-o", str(tmp_path / "b"))
    found = _warnings(result.stderr)
    assert len(found) == 1 and "looks like an image, not a levels map" in found[0], result.stderr
    result = _cli("stats", "--lesion", cord, "--levels", str(t2_path.parent / "t2_seg-manual_labeled.nii.gz"),
                  "-o", str(tmp_path / "c"))
    assert result.returncode == 0 and not _warnings(result.stderr), result.stderr


def test_a_cord_mask_from_elsewhere_is_flagged(t2_path: Path) -> None:
    image = read_image(t2_path)
    cord = read_image(t2_path.parent / "t2_seg-manual.nii.gz")
    assert roi_mask_fit(cord, image) == []
    moved = sitk.Image(cord)
    moved.SetOrigin([o + 25.0 for o in cord.GetOrigin()])  # the same mask 43 mm away: another position
    found = roi_mask_fit(moved, image)
    assert len(found) == 2 and "another voxel grid" in found[0] and "outside the image's field of view" in found[1]


def test_contrast_evidence_from_the_file_name_and_the_bids_sidecar(tmp_path: Path) -> None:
    image = tmp_path / "sub-01_acq-sag_T2w.nii.gz"
    assert contrast_evidence(image) == {"its file name": "T2w"}
    (tmp_path / "sub-01_acq-sag_T2w.json").write_text(json.dumps({"SeriesDescription": "sag STIR 3mm"}))
    assert contrast_evidence(image) == {"its file name": "T2w",
                                        "the SeriesDescription of sub-01_acq-sag_T2w.json": "STIR"}
    assert contrast_conflict("T2w", contrast_evidence(image)).endswith("says STIR; check the contrast hint")
    (tmp_path / "sub-01_acq-sag_T2w.json").write_text("[" * 100000)  # unreadable: says nothing, raises nothing
    assert contrast_evidence(image) == {"its file name": "T2w"}
    assert contrast_conflict(None, {"its file name": "T2w"}) is None


def test_predict_warns_about_a_contradicted_contrast_and_a_misplaced_cord_mask(tmp_path: Path,
                                                                              t2_path: Path) -> None:
    """One real prediction: ``--contrast STIR`` on a file named ..._T2w, and the scan's own cord mask moved 25 mm:
    both are warned about on stderr and in the sidecar, and the prediction still runs."""
    image = tmp_path / "sub-01_T2w.nii.gz"
    image.write_bytes(t2_path.read_bytes())
    moved = read_image(t2_path.parent / "t2_seg-manual.nii.gz")
    moved.SetOrigin([o + 25.0 for o in moved.GetOrigin()])
    mask = write_image(moved, tmp_path / "cord_from_elsewhere.nii.gz")
    result = _cli("predict", str(image), "-o", str(tmp_path / "out"), "--model", str(DEMO), "--device", "cpu",
                  "--folds", "0", "--contrast", "STIR", "--roi-mask", str(mask))
    assert result.returncode == 0, result.stderr[-2000:]
    found = "\n".join(_warnings(result.stderr))
    assert "sub-01_T2w.nii.gz: the contrast used is STIR but its file name says T2w" in found
    assert "cord_from_elsewhere.nii.gz is on another voxel grid" in found
    assert "cord_from_elsewhere.nii.gz has" in found and "outside the image's field of view" in found
    sidecar = json.loads((tmp_path / "out" / "sub-01_T2w_lesion_seg.json").read_text())
    assert sum("contrast used is STIR" in w or "cord_from_elsewhere" in w for w in sidecar["warnings"]) == 3


def test_the_panel_shows_a_contrast_the_series_description_contradicts() -> None:
    assert _contrast_warnings("auto", "3 sag T2", "") == []
    assert _contrast_warnings("T2w", "Volume", "SAG STIR") == [
        "the contrast used is T2w but the DICOM series description says STIR; check the contrast hint"]
    assert "volume name says T2*w" in _contrast_warnings("PSIR", "sub-01_T2starw", "")[0]


def test_masks_on_another_grid_are_refused_unless_resample_is_asked_for(tmp_path: Path, t2_path: Path) -> None:
    """evaluate and sweep with a real cord mask and the same mask at 0.5 mm: refused in one line naming the file
    and --resample; with --resample, resampled (nearest neighbour) and scored."""
    cord_path = t2_path.parent / "t2_seg-manual.nii.gz"
    cord = read_image(cord_path)
    fine = sitk.Resample(cord, [2 * s for s in cord.GetSize()], sitk.Transform(), sitk.sitkNearestNeighbor,
                         cord.TransformContinuousIndexToPhysicalPoint((-0.25, -0.25, -0.25)),
                         [s / 2 for s in cord.GetSpacing()], cord.GetDirection())
    fine_path = write_image(fine, tmp_path / "cord_fine.nii.gz")
    soft_path = write_image(sitk.Cast(cord, sitk.sitkFloat32), tmp_path / "cord_soft.nii.gz")
    for args in (("evaluate", "--ref", str(cord_path), "--pred", str(fine_path)),
                 ("sweep", "--soft", str(soft_path), "--ref", str(fine_path), "-o", str(tmp_path / "sweep"))):
        refused = _cli(*args)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "cord_fine.nii.gz: is on another voxel grid" in refused.stderr and "--resample" in refused.stderr
        resampled = _cli(*args, "--resample")
        assert resampled.returncode == 0, resampled.stderr
        assert "resampled onto it (nearest neighbour)" in resampled.stderr
    assert " 1.000 " in _cli("evaluate", "--ref", str(cord_path), "--pred", str(fine_path), "--resample").stdout
