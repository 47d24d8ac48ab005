"""The report's numbers, gathered once into :class:`ReportData` for both renderers (HTML and PDF).

The analysis is the statistics command's own (:mod:`..analysis.report` reads and aligns the inputs,
:func:`..analysis.lesions.analyze_lesions` measures, ``lesion_rows``/``level_table`` make the rows), so a report
never disagrees with ``spinal-lesion-seg stats`` on the same files. Added here only: each lesion's mean probability
(soft volume / volume, the review table's definition, with its "check" flag below LOW_PROBABILITY), the choice of
the lesions to picture, and what the prediction's sidecar says about how the mask was made.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from .. import __version__, safe_json
from ..analysis.lesions import LesionAnalysis, analyze_lesions
from ..analysis.level_sources import AUTO, load_level_source
from ..analysis.levels import LevelSource
from ..analysis.report import (
    lesion_rows,
    level_table,
    read_mask,
    read_mask_on,
    read_soft,
)
from ..defaults import LOW_PROBABILITY
from ..errors import InputError
from ..image_io import (
    image_to_array,
    input_digest,
    read_image,
    resample_to_grid,
    sha256_file,
    split_image_suffix,
)
from ..outputs import WRITTEN_SHA256
from .tables import column_label

#: Lesions pictured in axial close-ups: the largest ones, as many as fit one report page.
MAX_KEY_LESIONS = 5
#: Longest patient identifier accepted (characters): it is printed in every page header.
MAX_PATIENT_ID = 64
#: The prediction sidecar's suffix after the mask's stem (``<stem>_lesion_seg.nii.gz`` -> ``<stem>_lesion_seg.json``).
PREDICTION_STEM_SUFFIX = "_lesion_seg"
#: Largest prediction sidecar read (bytes): real ones are a few kilobytes.
SIDECAR_MAX_BYTES = 1 << 20
#: Labels of the prediction settings the sidecar records besides folds, threshold, ensemble, TTA and contrast;
#: others are labelled from their names.
SETTING_LABELS = {"roi_margin_mm": "ROI margin (mm)", "roi_box": "ROI box", "roi_mask_sha256": "ROI mask sha256"}

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportData:
    """Everything a report shows. Volumes in mm3; ``level_rows`` and ``lesion_rows`` are the analysis' rows
    (lesion rows with ``mean_probability`` and ``flag`` when a soft map is given); ``key_lesions`` the ids of the
    pictured lesions, largest first; ``inputs`` and ``input_sha256`` the files by role (image, lesion, soft,
    levels, cord) and their sha256; ``labels`` the numbered lesions on the mask's grid (for the pictures);
    ``settings`` and ``prediction`` (None without a sidecar) are (label, text) pairs; ``longitudinal`` the change
    section's input (:mod:`.change`), None without a baseline."""

    patient_id: str | None
    created: str
    inputs: dict[str, Path]
    input_sha256: dict[str, str]
    lesion_count: int
    total_volume_mm3: float
    total_soft_volume_mm3: float | None
    level_rows: list[dict[str, Any]]
    lesion_rows: list[dict[str, Any]]
    key_lesions: list[int]
    labels: sitk.Image
    settings: list[tuple[str, str]]
    prediction: list[tuple[str, str]] | None
    longitudinal: dict[str, Any] | None
    #: The DICOM series of a DICOM image folder (empty: its only series, or a file).
    series_uids: tuple[str, ...] = ()
    version: str = __version__
    #: A multi-station report's merged volumes on the stations' union grid (``image``, and ``soft`` and ``cord``
    #: when given): its pictures are drawn from them. Empty for one scan (its files are read).
    volumes: dict[str, sitk.Image] = field(default_factory=dict)
    #: How many stations (series) the report merges (:mod:`.stations`); 1 for one scan.
    station_count: int = 1

    def has(self, role: str) -> bool:
        """Whether the report was given a ``role`` input (``soft``, ``cord``...), for one scan or for stations
        (``cord_1``, ``cord_2``...)."""
        return any(name == role or name.startswith(f"{role}_") for name in self.inputs)


def check_patient_id(text: str | None) -> str | None:
    """``text`` stripped, or None when empty. It goes into every page header, so InputError for more than
    MAX_PATIENT_ID characters, control characters, and characters outside Latin-1, which the PDF's standard
    fonts cannot draw: an identifier printed as blank boxes would identify no one."""
    if text is None or not text.strip():
        return None
    patient = text.strip()
    latin1 = all(ord(character) < 256 for character in patient)
    if len(patient) > MAX_PATIENT_ID or not patient.isprintable() or not latin1:
        raise InputError(None, f"the patient ID must be at most {MAX_PATIENT_ID} printable Latin-1 characters "
                               "(letters, digits, punctuation)")
    return patient


def gather_report_data(image_path: str | os.PathLike[str], lesion_path: str | os.PathLike[str], *,
                       soft_path: str | os.PathLike[str] | None = None,
                       levels_path: str | os.PathLike[str] | None = None, levels_kind: str = AUTO,
                       cord_path: str | os.PathLike[str] | None = None, patient_id: str | None = None,
                       longitudinal: dict[str, Any] | None = None, resample: bool = False,
                       series_uids: Sequence[str] = ()) -> ReportData:
    """Analyse the lesion mask as ``stats`` does (same defaults) and gather the report's numbers. The image may be
    a DICOM folder (``series_uids`` chooses its series; :mod:`..dicom_series`).

    The lesion mask defines the grid; the image, soft map, cord mask and a levels image on another grid are
    refused unless ``resample`` (nearest neighbour, with a warning). InputError for any unusable input.
    """
    reference = read_mask(lesion_path)
    name = "the lesion mask"
    resample_to_grid(read_image(image_path, series_uids), reference, image_path, name, allow=resample)  # or refused
    soft = read_soft(soft_path, reference, name, resample=resample) if soft_path else None
    cord = read_mask_on(cord_path, reference, name, resample=resample) if cord_path else None
    source = load_level_source(levels_path, levels_kind) if levels_path else None
    if source is not None and source.regions is not None:
        resample_to_grid(source.regions, reference, source.path, name, allow=resample)  # refused unless allowed
    analysis = analyze_lesions(image_to_array(reference) != 0, reference, soft=soft, levels=source, cord=cord)

    inputs = {role: Path(path) for role, path in (("image", image_path), ("lesion", lesion_path),
                                                   ("soft", soft_path), ("levels", levels_path),
                                                   ("cord", cord_path)) if path}
    digests = {role: input_digest(path, series_uids) if role == "image" else sha256_file(path)
               for role, path in inputs.items()}
    return report_data(analysis, reference, source, inputs, digests, with_cord=cord is not None,
                       patient_id=patient_id, longitudinal=longitudinal,
                       prediction=prediction_record(lesion_path, digests["lesion"], digests["image"]),
                       series_uids=tuple(series_uids))


def report_data(analysis: LesionAnalysis, reference: sitk.Image, source: LevelSource | None,
                inputs: dict[str, Path], digests: dict[str, str], *, with_cord: bool, patient_id: str | None,
                longitudinal: dict[str, Any] | None = None, prediction: list[tuple[str, str]] | None = None,
                series_uids: tuple[str, ...] = (), volumes: dict[str, sitk.Image] | None = None,
                station_count: int = 1) -> ReportData:
    """:class:`ReportData` of an analysis on ``reference``'s grid, made from the files ``inputs`` (by role, with
    their sha256 ``digests``): one scan's (:func:`gather_report_data`) or several stations' (:mod:`.stations`)."""
    largest = sorted(analysis.lesions, key=lambda lesion: (-lesion.voxel_count, lesion.id))
    return ReportData(
        patient_id=check_patient_id(patient_id),
        created=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip(),
        inputs=inputs,
        input_sha256=digests,
        lesion_count=len(analysis.lesions),
        total_volume_mm3=analysis.total_voxels * analysis.voxel_volume_mm3,
        total_soft_volume_mm3=(sum(lesion.soft_volume_mm3 for lesion in analysis.lesions)
                               if analysis.has_soft else None),
        level_rows=level_table(analysis, source),
        lesion_rows=[_with_probability(row) for row in lesion_rows(analysis, with_cord)],
        key_lesions=[lesion.id for lesion in largest[:MAX_KEY_LESIONS]],
        labels=_label_image(analysis, reference),
        settings=_settings(analysis, reference, source, inputs, digests, station_count),
        prediction=prediction,
        longitudinal=longitudinal,
        series_uids=series_uids,
        volumes=dict(volumes or {}),
        station_count=station_count,
    )


def _with_probability(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with the lesion's mean probability (soft volume / volume) and the review table's ``check`` flag
    (below LOW_PROBABILITY) right after its soft volume. Unchanged without a soft map, or when the analysis'
    rows carry a mean probability of their own."""
    if row.get("soft_volume_mm3") is None or "mean_probability" in row:
        return row
    mean = row["soft_volume_mm3"] / row["volume_mm3"]
    extended: dict[str, Any] = {}
    for key, value in row.items():
        extended[key] = value
        if key == "soft_volume_mm3":
            extended.update(mean_probability=mean, flag="check" if mean < LOW_PROBABILITY else "")
    return extended


def _label_image(analysis: LesionAnalysis, reference: sitk.Image) -> sitk.Image:
    """The lesions numbered 1..N (as in the lesion rows) on the mask's grid."""
    image = sitk.GetImageFromArray(analysis.labels)
    image.CopyInformation(reference)
    return image


def _settings(analysis: LesionAnalysis, reference: sitk.Image, source: LevelSource | None,
              inputs: dict[str, Path], digests: dict[str, str], station_count: int = 1) -> list[tuple[str, str]]:
    """How the numbers were computed, and from which files (sha256 shortened to 12 hex digits), as text pairs."""
    spacing = " x ".join(f"{value:.4g}" for value in reference.GetSpacing())
    origin = "each station's levels file" if station_count > 1 else source.path.name if source else ""
    levels = ("not given: every lesion is unassigned" if source is None else
              f"{source.kind} from {origin}; a lesion's level is the level holding most of its voxels")
    pairs = [
        ("Lesions", f"connected components of the mask, {analysis.connectivity}-connectivity; none removed"),
        ("Voxel volume", f"{analysis.voxel_volume_mm3:.4g} mm³ (spacing {spacing} mm)"),
        ("Vertebral levels", levels),
        ("Soft-weighted volume", "sum of probability x voxel volume over a lesion's voxels" if analysis.has_soft
         else "no soft map given"),
    ]
    if station_count > 1:
        pairs.append(("Stations", f"{station_count} series merged on their union grid; where they overlap, each "
                                  "voxel is taken from the station it lies deeper in, so each lesion is counted once"))
    pairs += [(input_label(role), f"{path.name} (sha256 {digests[role][:12]})") for role, path in inputs.items()]
    return pairs + [("Software", f"spinal-lesion-seg {__version__}")]


def input_label(role: str) -> str:
    """``Image``, ``Cord mask``...; a station's input (``cord_2``) as ``Cord mask, station 2``."""
    names = {"image": "Image", "lesion": "Lesion mask", "soft": "Soft map", "levels": "Levels", "cord": "Cord mask"}
    base, _, station = role.partition("_")
    return f"{names[base]}, station {station}" if station else names[base]


def prediction_record(lesion_path: str | os.PathLike[str], lesion_sha256: str,
                      image_sha256: str) -> list[tuple[str, str]] | None:
    """What the prediction sidecar beside a ``<stem>_lesion_seg`` mask says: model, release, fingerprint and
    settings, whether the mask is still what the model wrote (its sha256 is ``lesion_sha256``), and whether it
    was predicted from this image (sha256 ``image_sha256``).

    None for masks without a sidecar (a manual mask). A sidecar that cannot be read gives one line saying so
    (and a logged warning) rather than no report: the numbers stand without it, the reader must know it is gone.
    """
    stem, _ = split_image_suffix(lesion_path)
    sidecar = Path(lesion_path).parent / f"{stem}.json"
    if not stem.endswith(PREDICTION_STEM_SUFFIX) or not sidecar.is_file():
        return None
    try:
        record = safe_json.load_file(sidecar, max_bytes=SIDECAR_MAX_BYTES)
    except InputError as error:
        _LOG.warning("%s", error)
        return [("Prediction record", f"unreadable: {error}")]
    if not isinstance(record, dict):
        return [("Prediction record", f"{sidecar.name} is not a prediction record")]
    return _prediction_items(record, lesion_sha256, image_sha256)


def _prediction_items(record: dict[str, Any], lesion_sha256: str, image_sha256: str) -> list[tuple[str, str]]:
    """The sidecar's facts as text pairs (missing ones left out), then the two checks against the files."""
    model = _mapping(record.get("model"))
    software = next(iter(record.get("GeneratedBy") or []), None)
    items = [("Model", model.get("name")), ("Model release", model.get("release")),
             ("Model fingerprint", model.get("fingerprint")),
             ("Model checksums verified", model.get("checksum_verified")),
             ("Folds", record.get("folds")), ("Threshold", record.get("threshold")),
             ("Ensemble rule", _mapping(record.get("ensemble")).get("rule")),
             ("Test-time augmentation", record.get("test_time_augmentation")),
             ("Contrast", _mapping(record.get("contrast")).get("used")),
             ("Device", _mapping(record.get("device")).get("name")),
             ("Predicted by", " ".join(str(_mapping(software).get(k, "")) for k in ("Name", "Version")).strip())]
    shown = {"folds", "threshold", "ensemble", "tta", "contrast"}
    items += [(SETTING_LABELS.get(key, column_label(key)), value)
              for key, value in _mapping(record.get("settings")).items() if key not in shown]
    written = _mapping(record.get(WRITTEN_SHA256)).get("lesion_seg")
    if written:
        items.append(("Mask", "as the model wrote it" if written == lesion_sha256 else
                      "edited after the prediction (it differs from what the model wrote)"))
    source = _mapping(next(iter(record.get("Sources") or []), None)).get("sha256")
    if source:
        items.append(("Predicted from", "this image" if source == image_sha256 else
                      "another file than this image (sha256 differs): check the inputs"))
    return [(label, _plain(value)) for label, value in items if value not in (None, "", [], {})]


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one: a sidecar from another version may lack a key."""
    return value if isinstance(value, dict) else {}


def _plain(value: Any) -> str:
    """A sidecar value as text: yes/no, lists comma-separated, objects as ``key=value`` pairs."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{key}={_plain(item)}" for key, item in value.items())
    return f"{value:g}" if isinstance(value, float) else str(value)
