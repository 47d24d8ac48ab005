"""Lesion statistics from files: read and align the inputs, analyse, and write the report.

Writes, into an output folder (each file atomically):

* ``lesions.csv``: one row per lesion (volume, soft volume, centroid, extent, levels, and the measures of
  :mod:`.lesion_measures`: length along the cord, largest axial area and width, levels spanned, damage ratio; with
  a cord, its distance to the cord and whether it is outside the dilated cord, :mod:`.outside_cord`);
* ``levels.csv``: per level in anatomical order, then ``unassigned`` (with a cord: cord volume, lesion load);
* ``summary.json``: totals, per-level numbers, settings, inputs with their sha256 and the software version;
* ``<stem>_lesion_label.nii.gz``: the lesions numbered 1..N on the lesion mask's grid.

The lesion mask defines the grid: the soft map, the cord and the level labels are resampled onto it (nearest
neighbour, with a warning) when they differ, so lesion volumes are always those of the mask the user drew.
"""

from __future__ import annotations

import csv
import io as textio
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import __version__
from ..defaults import CONNECTIVITY, LEVEL_MAX_DISTANCE_MM, OUTSIDE_CORD_MARGIN_MM
from ..errors import InputError
from ..image_io import (
    image_to_array,
    read_image,
    resample_to_grid,
    same_grid,
    sha256_file,
    split_image_suffix,
)
from ..outputs import WRITTEN_SHA256
from ..plausibility import looks_like_image
from ..result_set import ResultSet
from .lesions import LesionAnalysis, analyze_lesions
from .level_sources import AUTO, load_level_source
from .levels import MAX_LEVEL, UNASSIGNED, LevelSource, level_name
from .outside_cord import RULE, with_outside_cord

PathLike = str | os.PathLike[str]

#: Tolerance on soft-map values outside 0..1 (float32 rounding of an ensemble mean).
SOFT_TOLERANCE = 1e-6

LESION_COLUMNS = ("lesion_id", "voxel_count", "volume_mm3", "soft_volume_mm3", "centroid_r_mm", "centroid_a_mm",
                  "centroid_s_mm", "si_extent_mm", "primary_level", "levels", "level_volumes_mm3",
                  "outside_cord_volume_mm3", "cord_distance_mm", "outside_cord", "length_mm", "max_axial_area_mm2",
                  "max_ap_width_mm", "levels_spanned", "longitudinally_extensive", "max_axial_damage_ratio")
LEVEL_COLUMNS = ("level", "lesion_count", "lesions_touching", "volume_mm3", "soft_volume_mm3", "voxel_count",
                 "cord_volume_mm3", "lesion_load_pct")


@dataclass(frozen=True)
class StatsOutputs:
    """Paths written by :func:`run_stats` and the summary written to ``summary.json``; ``extra_files``: other
    files written beside them (the Slicer export's segmentation files)."""

    lesions_csv: Path
    levels_csv: Path
    summary_json: Path
    label_image: Path
    summary: dict
    extra_files: tuple[Path, ...] = ()

    @property
    def files(self) -> list[Path]:
        """Every file written, in a stable order."""
        return [self.lesions_csv, self.levels_csv, self.summary_json, self.label_image, *self.extra_files]


def read_mask(path: str | os.PathLike[str]) -> sitk.Image:
    """Read a binary mask: any non-zero integer voxel is foreground. Float storage is fine (Slicer and SCT write
    float64 masks) but non-integer values mean a probability map was given by mistake: InputError. A mask with the
    statistics of an image (:func:`..plausibility.looks_like_image`) is read with a logged warning."""
    image = read_image(path)
    values = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(values.dtype, np.floating) and np.any(values != np.round(values)):
        raise InputError(path, "has non-integer values: it looks like a probability map, not a mask "
                               "(binarise it first, or pass it as the soft map)")
    if warning := looks_like_image(values, "a mask"):
        logging.getLogger(__name__).warning("%s: %s", path, warning)
    return image


def read_soft(path: str | os.PathLike[str], reference: sitk.Image, reference_name: str, *,
              resample: bool) -> np.ndarray:
    """Read a probability map (values 0..1) onto ``reference``'s grid, as float64 ``[k, j, i]``; another grid
    only with ``resample`` (:func:`..image_io.resample_to_grid`)."""
    return soft_values(resample_to_grid(read_image(path), reference, path, reference_name, allow=resample), path)


def soft_values(image: sitk.Image, source: str | os.PathLike[str]) -> np.ndarray:
    """The voxels of a probability map as float64 ``[k, j, i]``; InputError unless they lie in 0..1."""
    values = image_to_array(image).astype(np.float64)
    if values.min() < -SOFT_TOLERANCE or values.max() > 1 + SOFT_TOLERANCE:
        raise InputError(source, f"has values {values.min():g}..{values.max():g}; a soft map must hold "
                                 "probabilities between 0 and 1")
    return np.clip(values, 0.0, 1.0)


def read_mask_on(path: str | os.PathLike[str], reference: sitk.Image, reference_name: str, *,
                 resample: bool) -> np.ndarray:
    """Read a binary mask onto ``reference``'s grid, as a boolean ``[k, j, i]`` array; another grid only with
    ``resample`` (:func:`..image_io.resample_to_grid`)."""
    return image_to_array(resample_to_grid(read_mask(path), reference, path, reference_name, allow=resample)) != 0


def run_stats(lesion_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
              soft_path: str | os.PathLike[str] | None = None, levels_path: str | os.PathLike[str] | None = None,
              levels_kind: str = AUTO, cord_path: str | os.PathLike[str] | None = None,
              restrict_to_cord: bool = False, cord_dilation_mm: float = 0.0,
              connectivity: int = CONNECTIVITY, min_size_mm3: float = 0.0,
              max_distance_mm: float = LEVEL_MAX_DISTANCE_MM, resample: bool = False,
              outside_cord_margin_mm: float = OUTSIDE_CORD_MARGIN_MM) -> StatsOutputs:
    """Analyse a lesion mask and write lesions.csv, levels.csv, summary.json and the lesion label image. The soft
    map, cord mask and a levels image must share the lesion mask's grid, unless ``resample`` (``--resample``).
    With a cord, lesions that do not touch it dilated by ``outside_cord_margin_mm`` (mm) are flagged."""
    if restrict_to_cord and cord_path is None:
        raise InputError(None, "restricting lesions to the cord needs a cord mask (--cord)")
    reference, mask, soft, cord, source = read_stats_inputs(lesion_path, soft_path, cord_path, levels_path,
                                                            levels_kind, resample)
    analysis = analyze_lesions(mask, reference, soft=soft, levels=source, max_distance_mm=max_distance_mm,
                               cord=cord, restrict_to_cord=restrict_to_cord, cord_dilation_mm=cord_dilation_mm,
                               connectivity=connectivity, min_size_mm3=min_size_mm3)
    analysis = with_outside_cord(analysis, cord, reference.GetSpacing()[::-1], outside_cord_margin_mm)

    stem, _ = split_image_suffix(lesion_path)
    inputs = {"lesion": lesion_path, "soft": soft_path, "cord": cord_path, "levels": levels_path}
    return write_report(analysis, reference, out_dir, stem, source=source, with_cord=cord is not None,
                        inputs={role: {"path": str(path), "sha256": sha256_file(path)}
                                for role, path in inputs.items() if path},
                        restrict_to_cord=restrict_to_cord, cord_dilation_mm=cord_dilation_mm,
                        min_size_mm3=min_size_mm3, max_distance_mm=max_distance_mm)


def read_stats_inputs(lesion_path: PathLike, soft_path: PathLike | None, cord_path: PathLike | None,
                      levels_path: PathLike | None, levels_kind: str, resample: bool
                      ) -> tuple[sitk.Image, np.ndarray, np.ndarray | None, np.ndarray | None, LevelSource | None]:
    """The lesion mask's grid and ``[k, j, i]`` arrays (mask, soft map, cord) and the level source, checked as
    ``stats`` checks them: the soft map, cord and a levels image on the mask's grid unless ``resample``."""
    reference = read_mask(lesion_path)
    name = "the lesion mask"
    soft = read_soft(soft_path, reference, name, resample=resample) if soft_path else None
    cord = read_mask_on(cord_path, reference, name, resample=resample) if cord_path else None
    source = load_level_source(levels_path, levels_kind) if levels_path else None
    if source is not None and source.regions is not None and not same_grid(source.regions, reference):
        resample_to_grid(source.regions, reference, source.path, name, allow=resample)  # refused unless allowed
    return reference, image_to_array(reference) != 0, soft, cord, source


def write_report(analysis: LesionAnalysis, reference: sitk.Image, out_dir: str | os.PathLike[str], stem: str, *,
                 source: LevelSource | None, with_cord: bool, inputs: dict, restrict_to_cord: bool = False,
                 cord_dilation_mm: float = 0.0, min_size_mm3: float = 0.0,
                 max_distance_mm: float = LEVEL_MAX_DISTANCE_MM) -> StatsOutputs:
    """Write lesions.csv, levels.csv, summary.json and ``<stem>_lesion_label.nii.gz`` for an analysis.

    Shared by the command line (inputs are files) and the Slicer module (inputs are nodes), so both write the
    same report. ``inputs`` is the summary's ``inputs`` entry: what the analysis was computed from.
    """
    out = Path(out_dir)
    paths = {"lesions_csv": out / "lesions.csv", "levels_csv": out / "levels.csv",
             "label_image": out / f"{stem}_lesion_label.nii.gz"}
    level_rows = level_table(analysis, source)
    with ResultSet(out / "summary.json", paths, overwrite=True) as result_set:  # published together, summary.json last
        pixel = sitk.sitkUInt16 if len(analysis.lesions) < 2**16 else sitk.sitkUInt32
        result_set.stage_image("label_image", sitk.Cast(_label_image(analysis, reference), pixel))
        result_set.stage_text("lesions_csv", csv_text(LESION_COLUMNS, lesion_rows(analysis, with_cord)))
        result_set.stage_text("levels_csv", csv_text(LEVEL_COLUMNS, level_rows))
        summary = _summary(analysis, level_rows, source, inputs, restrict_to_cord, cord_dilation_mm, min_size_mm3,
                           max_distance_mm)
        summary[WRITTEN_SHA256] = result_set.sha256()
        published = result_set.publish(json.dumps(summary, indent=2) + "\n")
    return StatsOutputs(lesions_csv=published["lesions_csv"], levels_csv=published["levels_csv"],
                        summary_json=published["sidecar"], label_image=published["label_image"], summary=summary)


def _summary(analysis: LesionAnalysis, level_rows: list[dict], source: LevelSource | None, inputs: dict,
             restrict_to_cord: bool, cord_dilation_mm: float, min_size_mm3: float, max_distance_mm: float) -> dict:
    """summary.json: totals (mm3), per-level rows, the rules applied and what the analysis was computed from.

    With a cord: the cord volume and the whole-cord lesion load (%, lesion voxels inside the cord / cord voxels).
    """
    cord_voxels = None if analysis.cord_level_voxels is None else int(analysis.cord_level_voxels.sum())
    return {
        "lesion_count": len(analysis.lesions),
        "total_volume_mm3": analysis.total_voxels * analysis.voxel_volume_mm3,
        "total_soft_volume_mm3": (sum(lesion.soft_volume_mm3 for lesion in analysis.lesions)
                                  if analysis.has_soft else None),
        "unassigned_volume_mm3": next(row["volume_mm3"] for row in level_rows if row["level"] == "unassigned"),
        "cord_volume_mm3": None if cord_voxels is None else cord_voxels * analysis.voxel_volume_mm3,
        "lesion_load_pct": _load_pct(analysis.cord_lesion_level_voxels, analysis.cord_level_voxels, slice(None)),
        "length_along": "cord centreline" if cord_voxels else "superior-inferior image axis",
        "per_level": {row["level"]: {key: row[key] for key in LEVEL_COLUMNS[1:]} for row in level_rows},
        "connectivity": analysis.connectivity,
        "min_size_mm3": min_size_mm3,
        "removed_small_lesions": {"count": analysis.removed_small_count,
                                  "volume_mm3": analysis.removed_small_voxels * analysis.voxel_volume_mm3},
        "cord_restriction": {"enabled": restrict_to_cord, "dilation_mm": cord_dilation_mm,
                             "removed_volume_mm3": analysis.removed_outside_cord_voxels
                             * analysis.voxel_volume_mm3},
        "outside_cord": _outside_summary(analysis),
        "voxel_volume_mm3": analysis.voxel_volume_mm3,
        "levels_source": None if source is None else {"kind": source.kind, "path": str(source.path),
                                                       "max_distance_mm": max_distance_mm},
        "inputs": inputs,
        "software": {"name": "spinal-lesion-seg", "version": __version__},
    }


def _outside_summary(analysis: LesionAnalysis) -> dict | None:
    """summary.json's ``outside_cord``: how many lesions do not touch the dilated cord, their volume (mm3), ids and
    distances, the margin (mm) and the rule; None when no cord was known (nothing judged)."""
    found = analysis.outside_cord
    if found is None:
        return None
    return {"count": len(found.lesions), "volume_mm3": found.volume_mm3, "margin_mm": found.margin_mm,
            "lesions": found.records(), "rule": RULE}


def _label_image(analysis: LesionAnalysis, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(analysis.labels)
    image.CopyInformation(reference)
    return image


def lesion_rows(analysis: LesionAnalysis, with_cord: bool) -> list[dict]:
    """One row per lesion for lesions.csv (names of levels in anatomical order, unassigned last)."""
    volume = analysis.voxel_volume_mm3
    rows = []
    for lesion in analysis.lesions:
        touched = lesion.levels_touched
        rows.append({
            "lesion_id": lesion.id,
            "voxel_count": lesion.voxel_count,
            "volume_mm3": lesion.volume_mm3,
            "soft_volume_mm3": lesion.soft_volume_mm3,
            "centroid_r_mm": lesion.centroid_ras[0],
            "centroid_a_mm": lesion.centroid_ras[1],
            "centroid_s_mm": lesion.centroid_ras[2],
            "si_extent_mm": lesion.si_extent_mm,
            "primary_level": level_name(lesion.primary_level),
            "levels": ";".join(level_name(c) for c in touched),
            "level_volumes_mm3": ";".join(f"{level_name(c)}={lesion.level_voxels[c] * volume}" for c in touched),
            "outside_cord_volume_mm3": (lesion.outside_cord_voxels * volume
                                        if with_cord and lesion.outside_cord_voxels is not None else None),
            **_outside_columns(analysis, lesion.id),
            "length_mm": lesion.length_mm,
            "max_axial_area_mm2": lesion.max_axial_area_mm2,
            "max_ap_width_mm": lesion.max_ap_width_mm,
            "levels_spanned": lesion.levels_spanned if analysis.has_levels else None,
            "longitudinally_extensive": int(lesion.longitudinally_extensive) if analysis.has_levels else None,
            "max_axial_damage_ratio": lesion.max_damage_ratio,
        })
    return rows


def _outside_columns(analysis: LesionAnalysis, lesion_id: int) -> dict:
    """lesions.csv's ``cord_distance_mm`` (mm to the nearest cord voxel) and ``outside_cord`` (1: does not touch the
    cord dilated by the margin, :mod:`.outside_cord`); empty when no cord was known."""
    found = analysis.outside_cord
    if found is None:
        return {"cord_distance_mm": None, "outside_cord": None}
    return {"cord_distance_mm": float(found.distances_mm[lesion_id]), "outside_cord": int(found.is_outside(lesion_id))}


def level_table(analysis: LesionAnalysis, source: LevelSource | None) -> list[dict]:
    """Rows of levels.csv: every level the source covers, the cord reaches or a lesion touches, anatomical order,
    then unassigned.

    ``lesion_count`` counts lesions by primary level (so the column sums to the lesion count);
    ``lesions_touching`` counts every lesion with a voxel at that level (a lesion spanning two levels counts
    in both). With a cord, ``cord_volume_mm3`` is the cord's volume at that level and ``lesion_load_pct`` the
    lesion voxels inside the cord at that level / the cord's voxels there x 100 (empty where the level holds no
    cord); both are empty without a cord.
    """
    voxels = analysis.level_voxels()
    soft = np.zeros(MAX_LEVEL + 1)
    primary = np.zeros(MAX_LEVEL + 1, dtype=np.int64)
    touching = np.zeros(MAX_LEVEL + 1, dtype=np.int64)
    for lesion in analysis.lesions:
        primary[lesion.primary_level] += 1
        touching[lesion.level_voxels > 0] += 1
        if lesion.level_soft_mm3 is not None:
            soft += lesion.level_soft_mm3
    codes = set(np.flatnonzero(voxels)) | (source.covered_levels() if source is not None else set())
    if analysis.cord_level_voxels is not None:  # levels the cord reaches (disc points extrapolate one level)
        codes |= set(np.flatnonzero(analysis.cord_level_voxels))
    ordered = sorted(int(c) for c in codes if c != UNASSIGNED) + [UNASSIGNED]
    return [{
        "level": level_name(code),
        "lesion_count": int(primary[code]),
        "lesions_touching": int(touching[code]),
        "volume_mm3": int(voxels[code]) * analysis.voxel_volume_mm3,
        "soft_volume_mm3": float(soft[code]) if analysis.has_soft else None,
        "voxel_count": int(voxels[code]),
        "cord_volume_mm3": (None if analysis.cord_level_voxels is None
                            else int(analysis.cord_level_voxels[code]) * analysis.voxel_volume_mm3),
        "lesion_load_pct": _load_pct(analysis.cord_lesion_level_voxels, analysis.cord_level_voxels, code),
    } for code in ordered]


def _load_pct(lesion_voxels: np.ndarray | None, cord_voxels: np.ndarray | None, codes: int | slice) -> float | None:
    """Lesion load (%) over level code(s) ``codes``: lesion voxels inside the cord / cord voxels x 100; None
    without a cord or where the cord has no voxel."""
    if lesion_voxels is None or cord_voxels is None:
        return None
    cord = int(np.sum(cord_voxels[codes]))
    return 100.0 * int(np.sum(lesion_voxels[codes])) / cord if cord else None


def csv_text(columns: tuple[str, ...], rows: list[dict]) -> str:
    """CSV text of ``rows`` in ``columns`` order, None as an empty cell."""
    buffer = textio.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return buffer.getvalue()


