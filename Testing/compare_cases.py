"""Real-anatomy cases with planted lesion changes, shared by the compare tests (CLI and Slicer panel).

The baseline is the real sagittal T2w crop of ``sct_testing_data/t2`` with its real cord mask; lesions are
ellipsoids painted inside the cord (and brightened in the image, as MS lesions are on T2w). The follow-up holds
one planted change of each class, and it is the baseline anatomy moved by a known rigid transform (3 deg, 2 mm),
resampled with SimpleITK (the image linearly, with intensity scaling and noise, the masks by nearest neighbour),
on the same grid or on another grid (0.8 mm, RAS voxel order instead of PSR). Expected volumes are voxel counts
of the planted masks on each scan's own grid, counted here, never taken from the code under test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from analysis_data import paint_ellipsoids, rigid_motion

T2 = Path("sct_testing_data") / "t2"

#: Planted lesions: name -> (centre slice j, radii (k, j, i) in voxels), in baseline voxel space. j runs inferior
#: to superior along the cord (slices 0..54); every lesion sits on the cord's centre on its slice.
BASELINE = {"disappeared": (9, (1.5, 1.5, 1.5)), "merge_a": (14, (1.5, 1.5, 1.5)), "merge_b": (19, (1.5, 1.5, 1.5)),
            "split": (27, (1.5, 4.2, 1.5)), "enlarged": (36, (1.5, 1.5, 1.5)), "shrunk": (43, (2.5, 2.5, 2.5)),
            "stable": (50, (2.0, 2.0, 2.0))}
FOLLOWUP = {"new": (4, (1.5, 1.5, 1.5)), "merged": (16.5, (1.5, 4.2, 1.5)), "split_a": (24, (1.5, 1.5, 1.5)),
            "split_b": (30, (1.5, 1.5, 1.5)), "enlarged": (36, (2.5, 2.5, 2.5)), "shrunk": (43, (1.5, 1.5, 1.5)),
            "stable": (50, (2.0, 2.0, 2.0))}
#: Expected events: class -> (baseline lesions, follow-up lesions), by planted name.
EVENTS = {"new": ((), ("new",)), "disappeared": (("disappeared",), ()),
          "merged": (("merge_a", "merge_b"), ("merged",)), "split": (("split",), ("split_a", "split_b")),
          "enlarged": (("enlarged",), ("enlarged",)), "shrunk": (("shrunk",), ("shrunk",)),
          "stable": (("stable",), ("stable",))}
ANGLES_DEG = (3.0, 0.0, 0.0)
TRANSLATION_MM = (1.0, -1.0, math.sqrt(2.0))  # 2 mm


def save_like(array: np.ndarray, reference: sitk.Image, path: Path) -> Path:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path))
    return path


def label_masks(masks: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
    names = list(masks)
    labels = np.zeros(next(iter(masks.values())).shape, dtype=np.uint8)
    for number, name in enumerate(names, start=1):
        labels[masks[name]] = number
    return labels, names


def planted_motion(centre: tuple[float, ...]) -> sitk.Euler3DTransform:
    """The planted motion as SimpleITK's resampling transform: follow-up points -> baseline points."""
    return rigid_motion(centre, ANGLES_DEG, TRANSLATION_MM)


def other_grid(reference: sitk.Image, spacing: float) -> sitk.Image:
    """A grid covering ``reference``'s box with ``spacing`` mm voxels in RAS voxel order (the reference is PSR)."""
    corners = np.array([reference.TransformContinuousIndexToPhysicalPoint([c * (s - 1) for c, s in
                                                                          zip(corner, reference.GetSize())])
                        for corner in np.ndindex(2, 2, 2)])
    low, high = corners.min(axis=0), corners.max(axis=0)
    grid = sitk.Image([int((h - l) / spacing) + 1 for l, h in zip(low, high)], sitk.sitkFloat32)
    grid.SetSpacing([spacing] * 3)
    grid.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # i -> right, j -> anterior, k -> superior
    grid.SetOrigin((high[0], high[1], low[2]))
    return grid


def build_case(folder: Path, data: Path, grid: str) -> dict:
    """Write a baseline and a follow-up (``grid``: "same" grid moved, "other" grid moved, "still": same grid not
    moved) with their lesion masks and cords; return the paths and the expected volumes (mm3, own grids)."""
    folder.mkdir()
    image = sitk.ReadImage(str(data / T2 / "t2.nii.gz"))
    cord_image = sitk.ReadImage(str(data / T2 / "t2_seg-manual.nii.gz"))
    cord = sitk.GetArrayFromImage(cord_image) > 0
    before, after = paint_ellipsoids(cord, BASELINE), paint_ellipsoids(cord, FOLLOWUP)
    values = sitk.GetArrayFromImage(image).astype(np.float32)
    bright = 1.6 * float(np.median(values[cord]))
    base_values = np.where(np.any(list(before.values()), axis=0), bright, values)
    follow_values = np.where(np.any(list(after.values()), axis=0), bright, values)
    centre = image.TransformContinuousIndexToPhysicalPoint(np.argwhere(cord).mean(axis=0)[::-1].tolist())
    motion = sitk.Euler3DTransform() if grid == "still" else planted_motion(centre)
    target = other_grid(image, 0.8) if grid == "other" else image
    labels, names = label_masks(after)

    def move(array: np.ndarray, interpolator: int, pixel: int) -> np.ndarray:
        return sitk.GetArrayFromImage(sitk.Resample(image_like(array, image), target, motion, interpolator, 0, pixel))

    follow_labels = move(labels, sitk.sitkNearestNeighbor, sitk.sitkUInt8)
    rng = np.random.default_rng(0)
    follow_image = move(follow_values, sitk.sitkLinear, sitk.sitkFloat32) * 1.1
    follow_image += rng.normal(0.0, 0.03 * float(follow_image.mean()), follow_image.shape).astype(np.float32)
    voxel = float(np.prod(target.GetSpacing()))
    paths = {
        "baseline": save_like(base_values.astype(np.float32), image, folder / "base_T2w.nii.gz"),
        "baseline_lesion": save_like(np.any(list(before.values()), axis=0).astype(np.uint8), image,
                                 folder / "base_lesion.nii.gz"),
        "baseline_cord": data / T2 / "t2_seg-manual.nii.gz",
        "followup": save_like(follow_image.astype(np.float32), target, folder / "follow_T2w.nii.gz"),
        "followup_lesion": save_like((follow_labels > 0).astype(np.uint8), target, folder / "follow_lesion.nii.gz"),
        "followup_cord": save_like(move(cord.astype(np.uint8), sitk.sitkNearestNeighbor, sitk.sitkUInt8), target,
                               folder / "follow_cord.nii.gz"),
    }
    volumes = {("baseline", n): float(np.count_nonzero(m)) * float(np.prod(image.GetSpacing()))
               for n, m in before.items()}
    volumes |= {("followup", n): np.count_nonzero(follow_labels == number) * voxel
                for number, n in enumerate(names, start=1)}
    ids = lesion_ids(before, "baseline") | lesion_ids({n: follow_labels == number for number, n in enumerate(names, start=1)},
                                          "followup")
    return {"paths": paths, "volumes": volumes, "ids": ids, "motion": motion, "image": image, "cord": cord,
            "baseline": before, "followup": after}


def lesion_ids(masks: dict[str, np.ndarray], scan: str) -> dict[tuple[str, str], int]:
    """Each planted lesion's number as ``stats`` numbers lesions: 18-connected components in order of their first
    voxel in ``[k, j, i]`` order (scipy's labelling, not the code under test)."""
    from scipy import ndimage

    labels, _ = ndimage.label(np.any(list(masks.values()), axis=0), ndimage.generate_binary_structure(3, 2))
    return {(scan, name): int(np.unique(labels[mask])[0]) for name, mask in masks.items()}


def image_like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image
