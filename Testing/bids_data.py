"""A small BIDS dataset built from the real images of ``../shared/data`` (the batch, QC and sweep tests share it).

Layout (S = stem)::

    ROOT/dataset_description.json
    ROOT/sub-01/anat/sub-01_T2w.nii.gz (+ .json)        the real sagittal T2w
    ROOT/sub-02/ses-01/anat/sub-02_ses-01_T2w.nii.gz    the same scan, its voxel order reversed along one axis
    ROOT/sub-02/ses-02/anat/sub-02_ses-02_acq-ax_T2w.nii.gz   a 96x96x19 crop of the real axial T2w (t2_ms)
    ROOT/sub-03/anat/sub-03_T2w.nii.gz                  broken: the real file truncated
    ROOT/derivatives/labels/sub-01/anat/sub-01_T2w_seg-manual.nii.gz (+ .json)          its real cord mask
    ROOT/derivatives/labels/sub-02/ses-01/anat/sub-02_ses-01_T2w_lesion-manual.nii.gz   a lesion painted in the cord
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SEG_SIDECAR = {"SpatialReference": "orig",
               "GeneratedBy": [{"Name": "Manual", "Author": "Test", "Date": "2026-01-01 10:00:00"}]}


def _write(image: sitk.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def lesion_in_cord(cord: sitk.Image, radius_vox: int = 2) -> sitk.Image:
    """A ball-shaped lesion (uint8) centred on the cord mask's middle voxel, clipped to the cord."""
    mask = sitk.GetArrayFromImage(cord) > 0
    centre = np.argwhere(mask)[int(mask.sum()) // 2]
    grid = np.indices(mask.shape)
    ball = sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius_vox ** 2
    lesion = sitk.GetImageFromArray((ball & mask).astype(np.uint8))
    lesion.CopyInformation(cord)
    return lesion


def build_bids(root: Path, data: Path) -> dict[str, Path]:
    """Build the dataset under ``root`` from the shared data folder ``data``; return its notable paths."""
    t2_dir = data / "sct_testing_data" / "t2"
    t2 = sitk.ReadImage(str(t2_dir / "t2.nii.gz"))
    cord = sitk.ReadImage(str(t2_dir / "t2_seg-manual.nii.gz"))
    axial = sitk.ReadImage(str(data / "sct_tutorial_data" / "t2_ms" / "t2.nii.gz"))
    labels = root / "derivatives" / "labels"
    paths = {
        "sub-01": _write(t2, root / "sub-01" / "anat" / "sub-01_T2w.nii.gz"),
        "sub-02_ses-01": _write(sitk.Flip(t2, [False, False, True]),
                                root / "sub-02" / "ses-01" / "anat" / "sub-02_ses-01_T2w.nii.gz"),
        "sub-02_ses-02": _write(axial[112:208, 80:176, :],
                                root / "sub-02" / "ses-02" / "anat" / "sub-02_ses-02_acq-ax_T2w.nii.gz"),
        "cord": _write(cord, labels / "sub-01" / "anat" / "sub-01_T2w_seg-manual.nii.gz"),
        "manual": _write(lesion_in_cord(sitk.Flip(cord, [False, False, True])),
                         labels / "sub-02" / "ses-01" / "anat" / "sub-02_ses-01_T2w_lesion-manual.nii.gz"),
    }
    broken = root / "sub-03" / "anat" / "sub-03_T2w.nii.gz"
    broken.parent.mkdir(parents=True)
    raw = (t2_dir / "t2.nii.gz").read_bytes()
    broken.write_bytes(raw[: len(raw) // 2])
    paths["broken"] = broken
    (root / "sub-01" / "anat" / "sub-01_T2w.json").write_text(json.dumps({"SeriesDescription": "sag T2w"}))
    for key in ("cord", "manual"):
        paths[key].with_name(paths[key].name.replace(".nii.gz", ".json")).write_text(json.dumps(SEG_SIDECAR))
    (root / "dataset_description.json").write_text(json.dumps({"Name": "test", "BIDSVersion": "1.9.0"}))
    return paths
