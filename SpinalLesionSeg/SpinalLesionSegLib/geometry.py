"""Image geometry in one place: IJK-to-RAS matrices, LPS/RAS conversion, orientation codes and reorientation.

Conventions (the source of most cross-tool bugs, so they live here and nowhere else):

* ITK/SimpleITK store physical points in **LPS** (x grows to the patient's Left, y to Posterior, z to Superior).
  Slicer and NIfTI's affine use **RAS** (x Right, y Anterior, z Superior). The two differ by ``diag(-1, -1, 1)``.
* An IJK-to-RAS matrix is a 4x4 homogeneous matrix mapping a voxel index ``(i, j, k, 1)`` (i fastest, as in
  SimpleITK's ``image[i, j, k]`` and Slicer's ``vtkImageData``) to a position in RAS millimetres.
* numpy arrays from SimpleITK are indexed ``[k, j, i]`` (slowest first), like ``slicer.util.arrayFromVolume``.
* Orientation codes here follow nibabel's ``aff2axcodes`` and SimpleITK's ``DICOMOrient``: one letter per voxel
  axis naming the direction in which the index *increases* ("PSR": i grows towards Posterior, j towards Superior,
  k towards Right). The Spinal Cord Toolbox (SCT) names orientations the other way round, by where each axis
  comes *from*: SCT's "RPI" is "LAS" here and SCT's "LPI" is "RAS". :func:`sct_to_axcodes` converts.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

#: Multiply an LPS vector/matrix by this to get RAS (and back: it is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])

_OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}
_RAS_POSITIVE = ("R", "A", "S")
_WORLD_AXIS = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}


def ijk_to_ras_matrix(image: sitk.Image) -> np.ndarray:
    """Return the 4x4 IJK-to-RAS matrix (mm) of a 3D SimpleITK image, exactly as Slicer would store it.

    ``ras = M @ [i, j, k, 1]``. Built as ``diag(-1,-1,1) @ direction @ diag(spacing)`` plus the RAS origin.
    """
    _require_3d(image)
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    spacing = np.array(image.GetSpacing(), dtype=float)
    origin = np.array(image.GetOrigin(), dtype=float)
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_TO_RAS @ direction @ np.diag(spacing)
    matrix[:3, 3] = LPS_TO_RAS @ origin
    return matrix


def geometry_from_ijk_to_ras(matrix: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Split an IJK-to-RAS matrix into SimpleITK's (origin LPS mm, spacing mm, row-major direction LPS).

    The inverse of :func:`ijk_to_ras_matrix`. Raises ``ValueError`` for a matrix with a zero-length axis.
    """
    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape != (4, 4):
        raise ValueError(f"IJK-to-RAS matrix must be 4x4, got shape {matrix.shape}")
    lps = LPS_TO_RAS @ matrix[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    if np.any(spacing <= 0) or not np.all(np.isfinite(spacing)):
        raise ValueError(f"IJK-to-RAS matrix has a zero or non-finite axis length: spacing {spacing.tolist()}")
    direction = lps / spacing
    origin = LPS_TO_RAS @ matrix[:3, 3]
    return tuple(origin.tolist()), tuple(spacing.tolist()), tuple(direction.ravel().tolist())


def set_ijk_to_ras(image: sitk.Image, matrix: np.ndarray) -> None:
    """Give ``image`` the origin, spacing and direction described by a 4x4 IJK-to-RAS matrix (in place)."""
    origin, spacing, direction = geometry_from_ijk_to_ras(matrix)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)


def axis_aligned_ijk_to_ras(origin_ras: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """The IJK-to-RAS matrix of a grid whose voxel axes i, j, k point to R, A, S (axcodes ``"RAS"``).

    ``origin_ras`` is the centre of voxel (0, 0, 0) in RAS mm and ``spacing`` the voxel size (mm) along i, j, k.
    """
    matrix = np.eye(4)
    matrix[:3, :3] = np.diag(np.asarray(spacing, dtype=float))
    matrix[:3, 3] = origin_ras
    return matrix


def voxel_to_ras(matrix: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """Map voxel indices ``(N, 3)`` in (i, j, k) order to RAS positions ``(N, 3)`` in mm."""
    ijk = np.atleast_2d(np.asarray(ijk, dtype=float))
    return ijk @ np.asarray(matrix)[:3, :3].T + np.asarray(matrix)[:3, 3]


def ras_to_voxel(matrix: np.ndarray, ras: np.ndarray) -> np.ndarray:
    """Map RAS positions ``(N, 3)`` in mm to continuous voxel indices ``(N, 3)`` in (i, j, k) order.

    The inverse of :func:`voxel_to_ras`; voxel centres have integer indices, so rounding gives the nearest voxel.
    Solved rather than multiplied by an inverted matrix, which keeps axis-aligned grids exact (a plain division).
    """
    ras = np.atleast_2d(np.asarray(ras, dtype=float))
    matrix = np.asarray(matrix, dtype=float)
    return np.linalg.solve(matrix[:3, :3], (ras - matrix[:3, 3]).T).T


def lps_to_ras_points(points: np.ndarray) -> np.ndarray:
    """Positions ``(N, 3)`` or ``(3,)`` in LPS mm (ITK, Slicer's ``.mrk.json`` files) as RAS mm, and back.

    The conversion negates x and y, so it is its own inverse.
    """
    return np.asarray(points, dtype=float) * np.diag(LPS_TO_RAS)


def voxel_volume_mm3(image: sitk.Image) -> float:
    """Volume of one voxel (mm3): the product of the spacings."""
    return float(np.prod(image.GetSpacing()))


def voxel_box_ras(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) RAS corners (mm) of the axis-aligned box enclosing every voxel of ``image`` edge to edge.

    Voxel ``n`` spans indices ``n - 0.5 .. n + 0.5``, so the box covers the whole scanned volume, also for oblique
    grids (it is then larger than the grid itself).
    """
    size = np.array(image.GetSize(), dtype=float)
    corners = np.array(list(np.ndindex(2, 2, 2)), dtype=float) * size - 0.5
    points = voxel_to_ras(ijk_to_ras_matrix(image), corners)
    return points.min(axis=0), points.max(axis=0)


def superior_axis(image: sitk.Image) -> tuple[int, np.ndarray]:
    """The voxel axis closest to inferior-superior, as (numpy axis of the ``[k, j, i]`` array, unit RAS vector
    pointing superior along it). Slices across it are the axial slices, whatever the storage orientation."""
    ras_axes = ijk_to_ras_matrix(image)[:3, :3]
    columns = ras_axes / np.linalg.norm(ras_axes, axis=0)
    voxel_axis = int(np.argmax(np.abs(columns[2])))
    direction = columns[:, voxel_axis] * np.sign(columns[2, voxel_axis])
    return 2 - voxel_axis, direction


def axcodes(image: sitk.Image) -> str:
    """Orientation code of the voxel axes, nibabel/``DICOMOrient`` style (e.g. ``"LAS"``, ``"PSR"``).

    Each voxel axis gets the anatomical direction closest to it (towards which its index increases); for oblique
    images the assignment is made greedily from the most aligned axis, so the three letters are always distinct.
    """
    ras_axes = LPS_TO_RAS @ np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    weights = np.abs(ras_axes)  # rows: world axis R/A/S, columns: voxel axis i/j/k
    letters = [""] * 3
    free_world, free_voxel = {0, 1, 2}, {0, 1, 2}
    for _ in range(3):
        world, voxel = max(
            ((w, v) for w in free_world for v in free_voxel), key=lambda wv: weights[wv[0], wv[1]]
        )
        letter = _RAS_POSITIVE[world]
        letters[voxel] = letter if ras_axes[world, voxel] > 0 else _OPPOSITE[letter]
        free_world.discard(world)
        free_voxel.discard(voxel)
    return "".join(letters)


def sct_to_axcodes(sct_orientation: str) -> str:
    """Convert an SCT orientation string ("from" letters, e.g. ``"RPI"``) to axcodes ("to" letters, ``"LAS"``)."""
    code = _validate_code(sct_orientation)
    return "".join(_OPPOSITE[c] for c in code)


def axcodes_to_sct(code: str) -> str:
    """Convert axcodes (``"LAS"``) to SCT's orientation string (``"RPI"``); see :func:`sct_to_axcodes`, which is
    the same letter swap."""
    return sct_to_axcodes(code)


def reorient(image: sitk.Image, target_axcodes: str) -> sitk.Image:
    """Return ``image`` resampled-free (voxels permuted and flipped only) into ``target_axcodes`` orientation.

    The physical image is unchanged: every voxel keeps its value and its position in mm; only the order in which
    voxels are stored changes. Reorienting back with the original :func:`axcodes` restores the original grid
    (origin, spacing, direction) exactly.
    """
    code = _validate_code(target_axcodes)
    return sitk.DICOMOrient(image, code)


def is_right_handed(image: sitk.Image) -> bool:
    """True when the voxel axes (i, j, k) form a right-handed system in physical space (det(direction) > 0)."""
    return bool(np.linalg.det(np.array(image.GetDirection(), dtype=float).reshape(3, 3)) > 0)


def to_right_handed(image: sitk.Image) -> sitk.Image:
    """Return the image on a right-handed voxel grid, flipping the k axis if needed, exactly as Slicer's reader does.

    Slicer's volume reader stores left-handed files (e.g. NIfTI "LAS", "PSR") with k reversed. Building MRML nodes
    through this function gives the same voxel grid, so arrays of nodes made by us and by Slicer line up. The
    physical image is unchanged (origin and direction are updated with the voxels).
    """
    if is_right_handed(image):
        return image
    return sitk.Flip(image, [False, False, True])


def _validate_code(code: str) -> str:
    code = code.upper()
    if len(code) != 3 or any(c not in _OPPOSITE for c in code):
        raise ValueError(f"orientation code must be three letters from R/L, A/P, S/I, got {code!r}")
    if len({_WORLD_AXIS[c] for c in code}) != 3:
        raise ValueError(f"orientation code must name each of R/L, A/P, S/I once, got {code!r}")
    return code


def _require_3d(image: sitk.Image) -> None:
    if image.GetDimension() != 3:
        raise ValueError(f"a 3D image is required, got {image.GetDimension()}D")
