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
