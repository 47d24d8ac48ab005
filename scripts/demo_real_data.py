"""Real-image training and evaluation cases for the region-based demo model (issue 15, point 3).

The shared data folder (``../shared/data``, see its README) holds two real T2w scans of the cervical cord:

* ``sct_testing_data/t2/t2.nii.gz``: sagittal, 1 mm, with a manual cord mask. **Held out**: never used for
  training; the evaluation (``bench/demo_real_eval.py``) paints lesions into its manual cord and resamples it onto
  several voxel layouts.
* ``sct_tutorial_data/t2_ms/t2.nii.gz``: axial, 0.6875 x 0.6875 x 7.5 mm, no masks. Its cord mask is made here by
  a documented intensity rule (:func:`auto_cord_t2_ms`: on each axial slice the dark cord enclosed by the bright CSF
  ring, its edge at half-way between the cord's and the CSF's intensity), checked by eye on every slice; training
  paints synthetic lesions into that cord (:func:`paint_lesions`) and draws random layouts, rotations and scales
  (:func:`random_layout`).

Lesions are painted as MS lesions look on T2w: brighter than the cord (a random fraction of the way from the cord's
to the CSF's intensity), ellipsoids elongated along the cord, with a soft edge, inside the cord only.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
T2 = Path("sct_testing_data") / "t2"
T2_MS = Path("sct_tutorial_data") / "t2_ms" / "t2.nii.gz"


def auto_cord_t2_ms(image: sitk.Image, seed_row_col: tuple[int, int] = (118, 160), half: int = 30) -> sitk.Image:
    """Cord mask of the axial t2_ms scan, slice by slice (uint8 on the image's grid).

    On each slice, inside a window around the previous slice's cord centre (the first seed chosen by eye): the
    CSF ring is the voxels above 55 % of the window's 98th percentile; the cord is the component of the ring's filled
    interior nearest the window centre, then re-thresholded half-way between its median and the ring's 75th
    percentile, holes filled, opened once."""
    array = sitk.GetArrayFromImage(image).astype(float)
    cord = np.zeros(array.shape, np.uint8)
    r0, c0 = seed_row_col
    for k in range(array.shape[0]):
        window = ndi.gaussian_filter(array[k], 0.7)[r0 - half:r0 + half, c0 - half:c0 + half]
        bright = window > 0.55 * np.percentile(window, 98)
        inner = ndi.binary_fill_holes(bright) & ~bright
        labels, n = ndi.label(inner)
        candidates = [(np.hypot(*(np.array(ndi.center_of_mass(labels == i)) - half)), i)
                      for i in range(1, n + 1) if (labels == i).sum() >= 40]
        if not candidates:
            continue
        core = labels == min(candidates)[1]
        ring = ndi.binary_dilation(core, iterations=3) & ~core
        edge = (np.median(window[core]) + np.percentile(window[ring], 75)) / 2
        grown = ndi.binary_fill_holes(ndi.binary_dilation(core, iterations=2) & (window < edge))
        grown_labels, _ = ndi.label(grown)
        grown = grown_labels == grown_labels[tuple(np.round(ndi.center_of_mass(core)).astype(int))]
        grown = ndi.binary_opening(grown, iterations=1)
        cord[k, r0 - half:r0 + half, c0 - half:c0 + half] = grown
        cy, cx = ndi.center_of_mass(grown)
        r0, c0 = round(cy) + r0 - half, round(cx) + c0 - half
    out = sitk.GetImageFromArray(cord)
    out.CopyInformation(image)
    return out


def load_real(data: Path = DATA) -> dict[str, tuple[sitk.Image, sitk.Image]]:
    """name -> (image float32, cord uint8) for the two shared scans."""
    t2 = sitk.Cast(sitk.ReadImage(str(data / T2 / "t2.nii.gz")), sitk.sitkFloat32)
    t2_cord = sitk.Cast(sitk.ReadImage(str(data / T2 / "t2_seg-manual.nii.gz")) > 0, sitk.sitkUInt8)
    t2_cord.CopyInformation(t2)
    t2_ms = sitk.Cast(sitk.ReadImage(str(data / T2_MS)), sitk.sitkFloat32)
    t2_ms_cord = auto_cord_t2_ms(t2_ms)
    # 88 x 88 mm in-plane around the cord (all slices): the neck without the shoulders, small enough to resample
    return {"t2": (t2, t2_cord), "t2_ms": (t2_ms[96:224, 54:182, :], t2_ms_cord[96:224, 54:182, :])}


def _levels(array: np.ndarray, cord: np.ndarray, spacing_kji: np.ndarray) -> tuple[float, float]:
    """Median cord intensity and the CSF's (75th percentile of a 2 mm shell around the cord)."""
    radius = np.maximum(1, np.round(2.0 / spacing_kji)).astype(int)
    structure = np.ones(tuple(2 * r + 1 for r in radius), bool)
    shell = ndi.binary_dilation(cord, structure) & ~cord
    return float(np.median(array[cord])), float(np.percentile(array[shell], 75))


def paint_lesions(image: sitk.Image, cord: sitk.Image, rng: np.random.Generator, count: int | None = None,
                  plan: list[dict] | None = None) -> tuple[sitk.Image, sitk.Image, list[dict]]:
    """Synthetic T2w MS lesions painted into the real cord: (image, lesion uint8 numbered 1..n, the lesions drawn).

    Each lesion: centre on a random cord voxel, semi-axes 1.2-3.5 mm across the cord and 1.5-8 mm along it,
    contrast 0.35-0.9 of the cord-to-CSF gap added with a soft edge, only inside the cord; its label is the
    ellipsoid's voxels inside the cord. ``plan`` gives the lesions instead of drawing them (as returned before)."""
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    mask = sitk.GetArrayFromImage(cord) > 0
    spacing_kji = np.array(image.GetSpacing()[::-1])
    cord_level, csf_level = _levels(array, mask, spacing_kji)
    voxels = np.argwhere(mask)
    if plan is None:
        plan = []
        for _ in range(rng.integers(1, 5) if count is None else count):
            kji = voxels[rng.integers(len(voxels))]
            plan.append({"centre_lps": list(image.TransformIndexToPhysicalPoint([int(v) for v in kji[::-1]])),
                         "across_mm": float(rng.uniform(1.2, 3.5)), "along_mm": float(rng.uniform(1.5, 8.0)),
                         "contrast": float(rng.uniform(0.35, 0.9))})
    # physical coordinates (LPS) of every voxel; the cord runs along S (index 2 in LPS)
    index = np.indices(array.shape).reshape(3, -1)[::-1].astype(float)  # i, j, k
    direction = np.array(image.GetDirection()).reshape(3, 3)
    points = (direction @ (index * np.array(image.GetSpacing())[:, None])
              + np.array(image.GetOrigin())[:, None]).T.reshape(*array.shape, 3)
    lesion = np.zeros(array.shape, np.uint8)
    for number, item in enumerate(plan, start=1):
        d = points - np.array(item["centre_lps"])
        q = (d[..., 0] ** 2 + d[..., 1] ** 2) / item["across_mm"] ** 2 + d[..., 2] ** 2 / item["along_mm"] ** 2
        profile = 1.0 / (1.0 + np.exp(np.minimum((q - 1.0) * 6.0, 50.0)))
        array += (item["contrast"] * (csf_level - cord_level) * profile * mask).astype(np.float32)
        lesion[(q <= 1.0) & mask & (lesion == 0)] = number
    painted = sitk.GetImageFromArray(array)
    painted.CopyInformation(image)
    label = sitk.GetImageFromArray(lesion)
    label.CopyInformation(image)
    return painted, label, plan


def layout_grid(image: sitk.Image, spacing: tuple[float, float, float], rotation_deg: tuple[float, float, float],
                axial: bool, margin: float = 1.1) -> sitk.Image:
    """An empty grid over ``image``'s field of view: ``spacing`` (mm), its axes those of ``image`` (or axial: the
    slices stacked inferior to superior) rotated by ``rotation_deg`` about L-R, P-A, I-S (as
    Testing/analysis_data.resampled_layout, with rotations about the three axes)."""
    direction = np.eye(3) if axial else np.array(image.GetDirection()).reshape(3, 3)
    ax, ay, az = (math.radians(a) for a in rotation_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    direction = rz @ ry @ rx @ direction
    extent = np.array(image.GetSize()) * np.array(image.GetSpacing())
    size = np.ceil(np.full(3, extent.max()) * margin / np.array(spacing)).astype(int)
    centre = np.array(image.TransformContinuousIndexToPhysicalPoint((np.array(image.GetSize()) - 1) / 2.0))
    origin = centre - direction @ ((size - 1) * np.array(spacing) / 2.0)
    grid = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    grid.SetSpacing(list(spacing))
    grid.SetOrigin(origin.tolist())
    grid.SetDirection(direction.ravel().tolist())
    return grid


def resample(image: sitk.Image, grid: sitk.Image, label: bool, transform: sitk.Transform | None = None) -> sitk.Image:
    """``image`` on ``grid``: nearest neighbour for labels, B-spline (clamped at 0) for images."""
    out = sitk.Resample(image, grid, transform or sitk.Transform(),
                        sitk.sitkNearestNeighbor if label else sitk.sitkBSpline, 0.0,
                        sitk.sitkUInt8 if label else sitk.sitkFloat32)
    return out if label else sitk.Clamp(out, lowerBound=0.0)


def random_layout(image: sitk.Image, cord: sitk.Image, lesion: sitk.Image,
                  rng: np.random.Generator) -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    """A random acquisition of the same anatomy: the scan itself half the time, else resampled onto a random
    layout (axial or the scan's own axes, 0.5-1 mm in-plane, 1-4 mm slices, rotated up to 15 degrees) after a
    random scaling of 0.85-1.15 per axis about the cord's centre (shape augmentation)."""
    if rng.random() < 0.35:
        return image, cord, lesion
    inplane = rng.uniform(0.5, 1.0)
    spacing = (inplane, inplane, rng.uniform(1.0, 4.0))
    grid = layout_grid(image, spacing, tuple(rng.uniform(-15, 15, 3)), axial=bool(rng.random() < 0.5), margin=0.8)
    scale = sitk.ScaleTransform(3, rng.uniform(0.85, 1.15, 3).tolist())
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(cord)
    scale.SetCenter(stats.GetCentroid(1))
    return (resample(image, grid, False, scale), resample(cord, grid, True, scale),
            resample(lesion, grid, True, scale))
