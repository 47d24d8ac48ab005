"""Vertebral levels: names and codes, the four kinds of level source, and the rules that give a lesion voxel a level.

Users arrive with whatever labels their pipeline made, so every common source is accepted and detected
automatically (``kind="auto"``; an explicit kind overrides):

* ``cord-labels``: an SCT labelled cord (``sct_label_vertebrae`` output), voxel value = level, 1..30 = C1..Co;
* ``totalspineseg``: a TotalSpineSeg output, vertebrae 11..50 and discs 63..100 (its step-1 variant too);
* ``disc-points``: SCT disc point labels, one voxel (or a small blob) per disc, 2 = C1/C2, 3 = C2/C3, ...;
* ``markups``: a 3D Slicer point list (``.mrk.json``) whose control-point labels name discs (``C2-C3``, ``C2/C3``)
  or give SCT disc codes (``3``).

Internally a level is an integer code in SCT's numbering (C1=1 ... C7=7, T1=8 ... T12=19, L1=20 ... L5=24), except
that the five sacral segments share one code, 25 = "S" (a lesion in the sacral canal cannot be told apart by
segment from these sources, and the conus ends above it), and Co = 30. Code 0 means ``unassigned``. The rules are
stated in ``docs/conventions.md``; the numbers here are the single source for them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..defaults import LEVEL_MAX_DISTANCE_MM
from ..errors import InputError
from ..geometry import ijk_to_ras_matrix, voxel_to_ras
from ..image_io import array_to_image, image_to_array, read_image, resample_to_grid
from ..validation import check_input_file

#: Code of voxels and lesions with no level.
UNASSIGNED = 0
UNASSIGNED_NAME = "unassigned"
SACRUM = 25
COCCYX = 30
#: Largest level code; arrays of per-level sums have ``MAX_LEVEL + 1`` columns (column 0 = unassigned).
MAX_LEVEL = COCCYX

#: Level code -> name, in anatomical order (superior first).
LEVEL_NAMES: dict[int, str] = {
    **{c: f"C{c}" for c in range(1, 8)},
    **{c: f"T{c - 7}" for c in range(8, 20)},
    **{c: f"L{c - 19}" for c in range(20, 25)},
    SACRUM: "S",
    COCCYX: "Co",
}

#: Accepted ``kind`` values.
KINDS = ("cord-labels", "totalspineseg", "disc-points", "markups")
AUTO = "auto"

#: Default search radius (mm) for lesion voxels outside a labelled region: the level of the nearest labelled voxel
#: is taken within it. 10 mm reaches from any point of an adult cord cross-section (~ 8 x 12 mm) to its label.

#: A label image whose every value covers at most this many voxels holds points (discs), not regions: SCT writes
#: single voxels and some tools dilate them to a 3x3x3 cube.
POINT_MAX_VOXELS = 27

#: SCT point codes that are not disc boundaries (pontomedullary groove and junction, conus medullaris): ignored.
SCT_NON_DISC_POINTS = frozenset({49, 50, 60})

#: TotalSpineSeg labels that are structures, not vertebrae or discs (cord, canal): ignored for levels.
_TSS_VERTEBRAE = {
    **{11 + n: 1 + n for n in range(7)},   # C1..C7 = 11..17
    **{21 + n: 8 + n for n in range(12)},  # T1..T12 = 21..32
    **{41 + n: 20 + n for n in range(5)},  # L1..L5 = 41..45
    50: SACRUM,
}
#: TotalSpineSeg disc label -> SCT disc number (the code of the level just below the disc).
_TSS_DISCS = {
    **{63 + n: 3 + n for n in range(5)},   # C2C3..C6C7 = 63..67 -> 3..7
    **{71 + n: 8 + n for n in range(12)},  # C7T1..T11T12 = 71..82 -> 8..19
    **{91 + n: 20 + n for n in range(5)},  # T12L1..L4L5 = 91..95 -> 20..24
    100: 25,                               # L5S -> 25
}
#: Step-1 TotalSpineSeg labels every vertebra but C1 as 50, so its vertebrae cannot name levels: only discs can.
_TSS_STEP1_VERTEBRAE = frozenset({11, 50})


def canonical_level(code: int) -> int:
    """Map an SCT level code (1..30) to this package's code: the sacral segments 25..29 all become 25 ("S")."""
    return SACRUM if SACRUM <= code < COCCYX else code


def level_name(code: int) -> str:
    """Name of a level code (``3`` -> ``"C3"``, ``0`` -> ``"unassigned"``)."""
    return UNASSIGNED_NAME if code == UNASSIGNED else LEVEL_NAMES[canonical_level(code)]


@dataclass(frozen=True)
class LevelSource:
    """A loaded level source: either a region image of level codes or disc positions.

    ``regions`` is an image of level codes (0 = none) on its own grid; ``discs`` maps SCT disc numbers
    (n = the disc just above level n) to RAS positions in mm. Exactly one of the two is set.
    """

    kind: str
    path: Path
    regions: sitk.Image | None = None
    discs: dict[int, np.ndarray] = field(default_factory=dict)

    def covered_levels(self) -> set[int]:
        """Level codes the source can assign: labels present, or the levels between the first and last disc."""
        if self.regions is not None:
            values = np.unique(image_to_array(self.regions))
            return {int(v) for v in values if v != UNASSIGNED}
        numbers = sorted(self.discs)
        return {canonical_level(code) for code in range(numbers[0], numbers[-1])}


# --------------------------------------------------------------------------------------------------------------
# Loading and detection


def load_level_source(path: str | os.PathLike[str], kind: str = AUTO) -> LevelSource:
    """Read a level source and detect its kind (or apply ``kind``); raise InputError if it cannot give levels."""
    p = check_input_file(path)
    if kind not in (AUTO, *KINDS):
        raise InputError(None, f"unknown levels kind {kind!r}; expected one of {', '.join((AUTO, *KINDS))}")
    is_json = p.name.lower().endswith(".json")
    if kind == "markups" or (kind == AUTO and is_json):
        return LevelSource("markups", p, discs=read_markups_discs(p))
    if is_json:
        raise InputError(p, f"is a JSON file, which can only be a markups point list, not a {kind} image")
    image = read_image(p)
    values = image_to_array(image)
    if np.issubdtype(values.dtype, np.floating) and np.any(values != np.round(values)):
        raise InputError(p, "has non-integer values; a level source must hold integer labels")
    values = values.astype(np.int64)
    labels, counts = np.unique(values[values != 0], return_counts=True)
    if labels.size == 0:
        raise InputError(p, "contains no labels (every voxel is 0); it cannot give vertebral levels")
    if kind == AUTO:
        kind = _detect_kind(labels, counts)
    if kind == "disc-points":
        return LevelSource(kind, p, discs=_sct_disc_points(image, values, labels, p))
    if kind == "totalspineseg":
        return _totalspineseg_source(image, values, labels, p)
    return _cord_labels_source(image, values, labels, p)


def _detect_kind(labels: np.ndarray, counts: np.ndarray) -> str:
    """Points if every label is tiny; TotalSpineSeg if any label exceeds SCT's 1..30; else an SCT labelled cord."""
    if counts.max() <= POINT_MAX_VOXELS:
        return "disc-points"
    if labels.max() > COCCYX:
        return "totalspineseg"
    return "cord-labels"


def _cord_labels_source(image: sitk.Image, values: np.ndarray, labels: np.ndarray, path: Path) -> LevelSource:
    bad = [int(v) for v in labels if not 1 <= v <= COCCYX]
    if bad:
        raise InputError(path, f"has labels {_short_list(bad)} outside SCT's vertebral levels 1..30 (C1..Co)")
    lut = np.zeros(COCCYX + 1, dtype=np.int16)
    lut[1:] = [canonical_level(c) for c in range(1, COCCYX + 1)]
    codes = lut[np.clip(values, 0, COCCYX)]
    return LevelSource("cord-labels", path, regions=array_to_image(codes, image))


def _totalspineseg_source(image: sitk.Image, values: np.ndarray, labels: np.ndarray, path: Path) -> LevelSource:
    present = {int(v) for v in labels}
    vertebrae = present & set(_TSS_VERTEBRAE)
    discs = present & set(_TSS_DISCS)
    if vertebrae - _TSS_STEP1_VERTEBRAE:
        lut = np.zeros(int(values.max()) + 1, dtype=np.int16)
        for label in vertebrae:
            lut[label] = _TSS_VERTEBRAE[label]
        codes = lut[np.clip(values, 0, None)]
        return LevelSource("totalspineseg", path, regions=array_to_image(codes, image))
    if len(discs) >= 2:
        matrix = ijk_to_ras_matrix(image)
        return LevelSource("totalspineseg", path, discs={
            _TSS_DISCS[label]: _centroid_ras(values == label, matrix) for label in sorted(discs)
        })
    raise InputError(path, "is not a usable TotalSpineSeg output: it has neither individually labelled vertebrae "
                           "(11..45) nor at least two disc labels (63..100)")


def _sct_disc_points(image: sitk.Image, values: np.ndarray, labels: np.ndarray, path: Path) -> dict[int, np.ndarray]:
    bad = [int(v) for v in labels if not (1 <= v <= COCCYX or v in SCT_NON_DISC_POINTS)]
    if bad:
        raise InputError(path, f"has point labels {_short_list(bad)} that are not SCT disc codes (1..30)")
    matrix = ijk_to_ras_matrix(image)
    return _require_two({int(v): _centroid_ras(values == v, matrix)
                         for v in labels if int(v) not in SCT_NON_DISC_POINTS}, path)


def _centroid_ras(selection: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    kji = np.argwhere(selection)
    return voxel_to_ras(matrix, kji[:, ::-1].mean(axis=0))[0]


_VERTEBRA = r"(C[1-7]|T(?:1[0-2]|[1-9])|L[1-5]|S1?)"
_DISC_LABEL = re.compile(rf"^{_VERTEBRA}\s*[-/_ ]?\s*{_VERTEBRA}$")


def parse_disc_label(label: str) -> int | None:
    """SCT disc number named by a markups label, or None if the label names no disc.

    ``"C2-C3"``, ``"C2/C3"``, ``"c2c3"`` -> 3 (the code of the vertebra below); ``"L5-S1"`` -> 25; a bare
    integer is taken as an SCT disc code (``"3"`` -> 3). The two vertebrae must be adjacent.
    """
    text = label.strip().upper()
    if text.isdigit():
        return int(text)
    match = _DISC_LABEL.match(text)
    if match is None:
        return None
    upper, lower = (_vertebra_code(name) for name in match.groups())
    return lower if lower == upper + 1 else None


def _vertebra_code(name: str) -> int:
    if name.startswith("S"):
        return SACRUM
    offset = {"C": 0, "T": 7, "L": 19}[name[0]]
    return offset + int(name[1:])


def read_markups_discs(path: str | os.PathLike[str]) -> dict[int, np.ndarray]:
    """Disc positions (SCT number -> RAS mm) from a Slicer ``.mrk.json`` point list.

    Positions are converted from the file's ``coordinateSystem`` (``LPS``, Slicer's default for files, or ``RAS``).
    Every control point must name a disc: an unknown label is an error, not silently skipped.
    """
    p = check_input_file(path)
    try:
        document = json.loads(p.read_text(encoding="utf-8"))
        markups = document["markups"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise InputError(p, f"is not a Slicer markups file ({type(error).__name__}: {error})") from None
    points: list[tuple[str, np.ndarray | None]] = []
    for markup in markups:
        system = str(markup.get("coordinateSystem", "LPS")).upper()
        if system not in ("LPS", "RAS"):
            raise InputError(p, f"uses coordinate system {system!r}; LPS or RAS is required")
        flip = np.array([-1.0, -1.0, 1.0]) if system == "LPS" else np.ones(3)
        for point in markup.get("controlPoints", []):
            position = point.get("position")
            defined = position is not None and len(position) == 3 and point.get("positionStatus") != "undefined"
            points.append((str(point.get("label", "")), np.asarray(position, dtype=float) * flip if defined else None))
    return discs_from_labelled_points(points, p)


def discs_from_labelled_points(points: list[tuple[str, np.ndarray | None]], source: Path) -> dict[int, np.ndarray]:
    """Disc positions (SCT number -> RAS mm) from (control-point label, RAS position or None if undefined) pairs.

    Shared by ``.mrk.json`` files and Slicer's markups nodes. Every point must name a disc and have a position;
    a disc may appear once; at least two are needed. ``source`` names the file or node in errors.
    """
    discs: dict[int, np.ndarray] = {}
    for label, position in points:
        number = parse_disc_label(label)
        if number is None or not 1 <= number <= COCCYX:
            raise InputError(source, f"control point {label!r} does not name a disc (expected e.g. 'C2-C3', "
                                     "'C2/C3' or an SCT disc code 1..30)")
        if position is None:
            raise InputError(source, f"control point {label!r} has no position")
        if number in discs:
            raise InputError(source, f"disc {label!r} (SCT code {number}) appears twice")
        discs[number] = position
    return _require_two(discs, source)


def _require_two(discs: dict[int, np.ndarray], path: Path) -> dict[int, np.ndarray]:
    if len(discs) < 2:
        raise InputError(path, f"has {len(discs)} disc point(s); at least two are needed to bound a level")
    return dict(sorted(discs.items()))


def _short_list(values: list[int]) -> str:
    return ", ".join(str(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")


# --------------------------------------------------------------------------------------------------------------
# Assignment


def assign_levels(source: LevelSource, reference: sitk.Image, flat_index: np.ndarray, *,
                  cord: np.ndarray | None = None,
                  max_distance_mm: float = LEVEL_MAX_DISTANCE_MM) -> np.ndarray:
    """Level code (int16, 0 = unassigned) of each voxel ``flat_index`` (into the ``[k, j, i]`` array of
    ``reference``, the lesion mask's grid).

    Region sources: a voxel inside the labelled region takes its label; otherwise the label of the nearest
    labelled voxel within ``max_distance_mm`` (Euclidean, in mm); else unassigned.
    Disc sources: level n lies between disc n and disc n+1, measured along the cord centreline when ``cord``
    (a boolean ``[k, j, i]`` array on the reference grid) is given, else along the image axis closest to
    inferior-superior.
    """
    flat_index = np.asarray(flat_index, dtype=np.int64)
    if flat_index.size == 0:
        return np.zeros(0, dtype=np.int16)
    if source.regions is not None:
        aligned = resample_to_grid(source.regions, reference, source.path, "the lesion mask")
        # A read-only view, not a copy: only lesion voxels are read, and a copy of a large grid costs ~100 ms.
        regions = sitk.GetArrayViewFromImage(aligned)
        return _assign_from_regions(regions, reference.GetSpacing()[::-1], flat_index, max_distance_mm)
    return _assign_from_discs(source.discs, reference, flat_index, cord, source.path)


def _assign_from_regions(regions: np.ndarray, spacing_kji: tuple[float, ...], flat_index: np.ndarray,
                         max_distance_mm: float) -> np.ndarray:
    codes = regions.ravel()[flat_index].astype(np.int16)
    missing = np.flatnonzero(codes == UNASSIGNED)
    if missing.size == 0 or max_distance_mm <= 0:
        return codes
    from scipy import ndimage

    # Only voxels within max_distance_mm of a lesion voxel can be its nearest label: crop to that box (exact).
    kji = np.stack(np.unravel_index(flat_index[missing], regions.shape), axis=1)
    margin = np.ceil(max_distance_mm / np.asarray(spacing_kji)).astype(int)
    low = np.maximum(kji.min(axis=0) - margin, 0)
    high = np.minimum(kji.max(axis=0) + margin + 1, regions.shape)
    crop = regions[tuple(slice(a, b) for a, b in zip(low, high))]
    if not np.any(crop):
        return codes
    distance, nearest = ndimage.distance_transform_edt(crop == UNASSIGNED, sampling=spacing_kji,
                                                      return_indices=True)
    local = tuple((kji - low).T)
    near = distance[local] <= max_distance_mm
    nearest_label = crop[tuple(axis[local] for axis in nearest)]
    codes[missing[near]] = nearest_label[near]
    return codes


def superior_axis(image: sitk.Image) -> tuple[int, np.ndarray]:
    """The voxel axis closest to inferior-superior, as (numpy axis of the ``[k, j, i]`` array, unit RAS vector
    pointing superior along it)."""
    ras_axes = ijk_to_ras_matrix(image)[:3, :3]
    columns = ras_axes / np.linalg.norm(ras_axes, axis=0)
    voxel_axis = int(np.argmax(np.abs(columns[2])))
    direction = columns[:, voxel_axis] * np.sign(columns[2, voxel_axis])
    return 2 - voxel_axis, direction


def _assign_from_discs(discs: dict[int, np.ndarray], reference: sitk.Image, flat_index: np.ndarray,
                       cord: np.ndarray | None, path: Path) -> np.ndarray:
    matrix = ijk_to_ras_matrix(reference)
    shape = tuple(reversed(reference.GetSize()))
    kji = np.stack(np.unravel_index(flat_index, shape), axis=1)
    voxels_ras = voxel_to_ras(matrix, kji[:, ::-1])
    numbers = np.array(list(discs), dtype=np.int64)
    discs_ras = np.array([discs[n] for n in numbers])
    if cord is not None and np.any(cord):
        position = _centreline_position(cord, reference)
        voxel_s, disc_s = position(voxels_ras), position(discs_ras)
    else:
        _, up = superior_axis(reference)
        voxel_s, disc_s = voxels_ras @ up, discs_ras @ up
    if np.any(np.diff(disc_s) >= 0):
        order = ", ".join(f"{n}@{s:.1f}mm" for n, s in zip(numbers, disc_s))
        raise InputError(path, f"disc points are not in superior-to-inferior order along the cord ({order}); "
                               "disc n must lie above disc n+1")
    return levels_between_discs(numbers, disc_s, voxel_s)


def levels_between_discs(numbers: np.ndarray, disc_s: np.ndarray, voxel_s: np.ndarray) -> np.ndarray:
    """Level code of positions ``voxel_s`` (mm, growing superior) between discs ``numbers`` at ``disc_s``.

    ``numbers`` ascend and ``disc_s`` strictly descend. Level n is ``disc_s[n+1] < s <= disc_s[n]``: a position
    level with a disc belongs to the level below it. Between non-consecutive discs n and m the gap is split evenly
    into levels n..m-1. Positions above the first disc or at/below the last are unassigned.
    """
    ascending = disc_s[::-1]
    j = np.searchsorted(ascending, voxel_s, side="left")
    inside = (j >= 1) & (j < len(ascending))
    upper = len(ascending) - 1 - np.clip(j, 1, len(ascending) - 1)
    n_up, n_low = numbers[upper], numbers[upper + 1]
    s_up, s_low = disc_s[upper], disc_s[upper + 1]
    fraction = (s_up - voxel_s) / (s_up - s_low)
    level = np.minimum(n_up + np.floor(fraction * (n_low - n_up)).astype(np.int64), n_low - 1)
    lut = np.array([canonical_level(c) for c in range(COCCYX + 1)], dtype=np.int16)
    return np.where(inside, lut[np.clip(level, 0, COCCYX)], UNASSIGNED).astype(np.int16)


def _centreline_position(cord: np.ndarray, reference: sitk.Image):
    """A function mapping RAS points (N, 3) to their arc length (mm) along the cord centreline, growing superior.

    The centreline is the cord's centroid on each slice across the inferior-superior image axis; a point takes the
    arc length of the nearest centreline point.
    """
    from scipy.spatial import cKDTree

    axis, up = superior_axis(reference)
    matrix = ijk_to_ras_matrix(reference)
    kji = np.argwhere(cord)
    slices = kji[:, axis]
    _, inverse, counts = np.unique(slices, return_inverse=True, return_counts=True)
    centres = np.stack([np.bincount(inverse, weights=kji[:, d]) / counts for d in range(3)], axis=1)
    points = voxel_to_ras(matrix, centres[:, ::-1])
    points = points[np.argsort(points @ up)]
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    tree = cKDTree(points)

    def position(ras: np.ndarray) -> np.ndarray:
        return arc[tree.query(ras)[1]]

    return position

