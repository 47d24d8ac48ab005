"""Inputs for the lesion-analysis tests, built from the real labelled cord of ``sct_testing_data/t2``.

The labelled cord (values 2..5 = C2..C5) covers axis-1 (j, inferior -> superior) slices 1..52 of a 60x55x52 grid
at 1 mm; in numpy ``[k, j, i]`` order j is axis 1. Box lesions are the cord inside a box, so they lie in real
anatomy; expected numbers are counted here directly from the labels, never taken from the code under test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from SpinalLesionSegLib.geometry import ijk_to_ras_matrix, superior_axis, voxel_to_ras

T2 = Path("sct_testing_data") / "t2"

#: Slices (j) well inside each level of the labelled cord (C2 36..52, C3 18..35, C4 3..17, C5 1..4; C4/C5 overlap).
INTERIOR_SLICES = {2: range(42, 48), 3: range(24, 30), 4: range(8, 13)}


def load(path: Path) -> tuple[sitk.Image, np.ndarray]:
    image = sitk.ReadImage(str(path))
    return image, sitk.GetArrayFromImage(image)


def save(array: np.ndarray, reference: sitk.Image, path: Path) -> Path:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path))
    return path


def box_lesion(cord: np.ndarray, slices: range, k: slice = slice(None), i: slice = slice(None)) -> np.ndarray:
    """The cord voxels inside a box: slices ``slices`` along j, optionally limited along k and i."""
    lesion = np.zeros(cord.shape, dtype=bool)
    lesion[k, slices.start:slices.stop, i] = cord[k, slices.start:slices.stop, i]
    return lesion


def disc_points(labels: np.ndarray) -> dict[int, tuple[int, int, int]]:
    """SCT disc points (number -> (k, j, i) voxel) derived from a labelled cord: disc n sits on the top slice of
    level n, at the cord's centre on that slice; the last disc sits just below the lowest level."""
    cord = labels > 0
    points = {}

    def centre(j: int, shift: int = 0) -> tuple[int, int, int]:
        k, i = np.nonzero(cord[:, j, :])
        return int(round(k.mean())), j + shift, int(round(i.mean()))

    levels = sorted(int(v) for v in np.unique(labels) if v > 0)
    for level in levels:
        points[level] = centre(int(np.nonzero(np.any(labels == level, axis=(0, 2)))[0].max()))
    lowest = int(np.nonzero(np.any(labels == levels[-1], axis=(0, 2)))[0].min())
    points[levels[-1] + 1] = centre(lowest, shift=-1)
    return points


def disc_point_image(shape: tuple[int, ...], points: dict[int, tuple[int, int, int]]) -> np.ndarray:
    image = np.zeros(shape, dtype=np.int16)
    for number, kji in points.items():
        image[kji] = number
    return image


def markups_file(points: dict[int, tuple[int, int, int]], reference: sitk.Image, labels: dict[int, str],
                 path: Path) -> Path:
    """A Slicer .mrk.json point list (LPS, as Slicer writes it) with the given label for each disc."""
    control_points = [{"id": str(n), "label": labels[n],
                       "position": list(reference.TransformIndexToPhysicalPoint((i, j, k))),
                       "positionStatus": "defined"}
                      for n, (k, j, i) in points.items()]
    document = {"@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
                           "Resources/Schema/markups-schema-v1.0.3.json#",
                "markups": [{"type": "Fiducial", "coordinateSystem": "LPS", "controlPoints": control_points}]}
    path.write_text(json.dumps(document))
    return path


def paint_ellipsoids(cord: np.ndarray, plan: dict) -> dict[str, np.ndarray]:
    """Each planned ellipsoid (name -> (centre slice j, radii (k, j, i) in voxels)) as a boolean ``[k, j, i]``
    array, centred on the cord on its slice; each is checked to lie inside the real cord."""
    grid = np.indices(cord.shape).astype(float)
    painted = {}
    for name, (j, radii) in plan.items():
        k, i = np.nonzero(cord[:, round(j), :])
        centre = (round(k.mean()), j, round(i.mean()))
        painted[name] = sum(((grid[a] - centre[a]) / radii[a]) ** 2 for a in range(3)) <= 1.0
        assert not np.any(painted[name] & ~cord), name  # inside the real cord
    return painted


def rigid_motion(centre: tuple[float, ...], angles_deg: tuple[float, float, float],
                 translation_mm: tuple[float, float, float]) -> sitk.Euler3DTransform:
    """A planted patient motion as SimpleITK's resampling transform (follow-up points -> baseline points)."""
    motion = sitk.Euler3DTransform()
    motion.SetCenter(centre)
    motion.SetRotation(*(math.radians(a) for a in angles_deg))
    motion.SetTranslation(translation_mm)
    return motion


def level_boundary_discs(labels: np.ndarray, cord: np.ndarray, reference: sitk.Image) -> dict[int, np.ndarray]:
    """SCT disc points (number -> RAS mm) where a real labelled cord changes level, at the cord's centre.

    Disc n (n-1 above, n below) is the mean of the midpoints of the voxel faces between level n-1 and level n
    voxels, along any axis, so an oblique boundary gives its centre. The topmost level's disc sits on the faces
    between it and the cord SCT left unlabelled above it (``sct_label_vertebrae`` labels nothing above its top
    disc). No disc is made below the lowest level: SCT labels all the cord below its last disc, so an unlabelled
    bottom is the edge of its warped field of view, not a disc."""
    up_axis, up = superior_axis(reference)
    step = ijk_to_ras_matrix(reference)[:3, 2 - up_axis] @ up > 0  # True: slice numbers grow superior
    levels = sorted(int(v) for v in np.unique(labels) if v > 0)
    faces: dict[int, list[np.ndarray]] = {n: [] for n in levels}
    for axis in range(3):
        low = [slice(None)] * 3
        high = [slice(None)] * 3
        low[axis], high[axis] = slice(0, -1), slice(1, None)
        a, b = labels[tuple(low)], labels[tuple(high)]  # a voxel and its neighbour one step along the axis
        half = np.eye(3)[axis] * 0.5
        for n in levels:
            pairs = ((a == n) & (b == n - 1)) | ((a == n - 1) & (b == n))
            if n == levels[0] and axis == up_axis:  # the top level under unlabelled cord
                above = cord[tuple(high)] & (b == 0) if step else cord[tuple(low)] & (a == 0)
                pairs = pairs | (above & ((a == n) if step else (b == n)))
            faces[n].append(np.argwhere(pairs) + half)
    matrix = ijk_to_ras_matrix(reference)
    return {n: voxel_to_ras(matrix, np.concatenate(found)[:, ::-1].mean(axis=0))[0]
            for n, found in faces.items() if sum(len(f) for f in found)}


def resampled_layout(image: sitk.Image, spacing: tuple[float, float, float], tilt_deg: float = 0.0,
                     axial: bool = False) -> sitk.Image:
    """``image`` (labels or a mask) on another voxel layout, nearest neighbour: ``spacing`` (mm), the grid tilted
    by ``tilt_deg`` about the left-right axis (so the cord runs oblique to the slices), and with ``axial`` the
    slices stacked inferior to superior (an axial acquisition) instead of the source's own axes."""
    direction = np.eye(3) if axial else np.array(image.GetDirection()).reshape(3, 3)
    angle = math.radians(tilt_deg)
    rotation = np.array([[1, 0, 0], [0, math.cos(angle), -math.sin(angle)], [0, math.sin(angle), math.cos(angle)]])
    direction = rotation @ direction  # LPS: rotation about x, the left-right axis
    source_extent = np.array(image.GetSize()) * np.array(image.GetSpacing())
    size = np.ceil(np.full(3, source_extent.max()) * 1.1 / np.array(spacing)).astype(int)
    centre = np.array(image.TransformContinuousIndexToPhysicalPoint((np.array(image.GetSize()) - 1) / 2.0))
    origin = centre - direction @ ((size - 1) * np.array(spacing) / 2.0)
    return sitk.Resample(image, [int(s) for s in size], sitk.Transform(), sitk.sitkNearestNeighbor,
                         origin.tolist(), list(spacing), direction.ravel().tolist(), 0.0, image.GetPixelID())
