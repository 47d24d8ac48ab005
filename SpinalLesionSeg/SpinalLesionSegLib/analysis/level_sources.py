"""Level sources: read whatever vertebral labels a user's pipeline made, and detect their kind.

Every common source is accepted and detected automatically (``kind="auto"``; an explicit kind overrides):

* ``cord-labels``: an SCT labelled cord (``sct_label_vertebrae`` output), voxel value = level, 1..30 = C1..Co;
* ``totalspineseg``: a TotalSpineSeg output, vertebrae 11..50 and discs 63..100 (its step-1 variant too);
* ``disc-points``: SCT disc point labels, one voxel (or a small blob) per disc, 2 = C1/C2, 3 = C2/C3, ...;
* ``markups``: a 3D Slicer point list (``.mrk.json``) whose control-point labels name discs (``C2-C3``, ``C2/C3``)
  or give SCT disc codes (``3``).

Each becomes a :class:`.levels.LevelSource` in this package's level codes (:mod:`.levels`), positions in RAS mm.
Disc sources (``disc-points``, ``markups``, TotalSpineSeg discs) label the cord along its centreline when a cord
mask is known (:mod:`.disc_levels`), else by planes across the image axis (:func:`.levels.assign_levels`).
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import safe_json
from ..errors import InputError
from ..geometry import ijk_to_ras_matrix, lps_to_ras_points, voxel_to_ras
from ..image_io import array_to_image, image_to_array, read_image
from ..plausibility import LEVELS_MAX_LABELS, looks_like_image
from ..validation import check_input_file
from .levels import COCCYX, SACRUM, LevelSource, canonical_level

#: Accepted ``kind`` values.
KINDS = ("cord-labels", "totalspineseg", "disc-points", "markups")
AUTO = "auto"

#: A label image whose every value covers at most this many voxels holds points (discs), not regions: SCT writes
#: single voxels and some tools dilate them to a 3x3x3 cube.
POINT_MAX_VOXELS = 27

#: SCT point codes that are not disc boundaries (pontomedullary groove and junction, conus medullaris): ignored.
SCT_NON_DISC_POINTS = frozenset({49, 50, 60})

#: TotalSpineSeg vertebra label -> level code. Its other labels (cord, canal) are structures, ignored for levels.
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
    if warning := looks_like_image(values, "a levels map", LEVELS_MAX_LABELS):
        logging.getLogger(__name__).warning("%s: %s", p, warning)
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
    Every control point must name a disc: an unknown label is an error, not silently skipped. The file comes from
    the user, so it is parsed with size and nesting limits (:mod:`..safe_json`) and every field used is checked:
    anything malformed is a one-line InputError, never a traceback.
    """
    p = check_input_file(path)
    try:
        document = safe_json.load_file(p)
    except InputError as error:
        raise InputError(p, f"is not a Slicer markups file ({error.problem})") from None
    markups = document.get("markups") if isinstance(document, dict) else None
    if not isinstance(markups, list):
        raise InputError(p, "is not a Slicer markups file (no 'markups' list)")
    points = [point for markup in markups for point in _markup_points(markup, p)]
    return discs_from_labelled_points(points, p)


def _markup_points(markup: object, path: Path) -> list[tuple[str, np.ndarray | None]]:
    """(label, RAS position or None when undefined) of every control point of one markup, fields checked."""
    if not isinstance(markup, dict):
        raise InputError(path, f"is not a Slicer markups file (a 'markups' entry is {_clip(markup)}, not an object)")
    system = markup.get("coordinateSystem", "LPS")
    if not isinstance(system, str) or system.upper() not in ("LPS", "RAS"):
        raise InputError(path, f"uses coordinate system {_clip(system)}; LPS or RAS is required")
    control_points = markup.get("controlPoints", [])
    if not isinstance(control_points, list) or not all(isinstance(point, dict) for point in control_points):
        raise InputError(path, "is not a Slicer markups file ('controlPoints' must be a list of objects)")
    return [_control_point(point, system.upper(), path) for point in control_points]


def _control_point(point: dict, system: str, path: Path) -> tuple[str, np.ndarray | None]:
    """One control point's label and RAS position (None when undefined); InputError for a malformed one."""
    label = point.get("label", "")
    if not isinstance(label, (str, int)) or isinstance(label, bool):
        raise InputError(path, f"control point label {_clip(label)} is not text")
    position = point.get("position")
    if position is None or point.get("positionStatus") == "undefined":
        return str(label), None
    if not (isinstance(position, list) and len(position) == 3 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in position)):
        raise InputError(path, f"control point {str(label)!r} has position {_clip(position)}; three numbers (mm) "
                               "are required")
    return str(label), _to_ras(position, system)


def _clip(value: object) -> str:
    """A value for an error message, clipped to one short line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _to_ras(position: list[float], system: str) -> np.ndarray:
    """A control point's position (mm) in RAS, from the markups' ``coordinateSystem`` (``LPS`` or ``RAS``)."""
    return lps_to_ras_points(position) if system == "LPS" else np.asarray(position, dtype=float)


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
