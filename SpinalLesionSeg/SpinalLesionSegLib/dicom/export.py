"""The DICOM outputs of a lesion mask on a DICOM series, for PACS: the same builder (:func:`dicom_objects`) serves
``predict`` on a DICOM folder (:func:`stage_dicom`: the objects staged with the NIfTI files and published with them
as one set, :class:`..result_set.ResultSet`: a killed run leaves the old set or the new one, never a SEG without
its NIfTI or the other way round) and ``dicom-export`` (a reviewed or corrected mask, e.g. the Slicer panel's
corrected segment; :mod:`..cli.dicom`).

Files (S = the series' readable stem): ``S_lesion_seg.dcm`` (BINARY SEG: lesions, and the cord when given),
``S_lesion_soft.dcm`` (FRACTIONAL SEG, PROBABILITY; only with a soft map), ``S_lesion_sr.dcm`` (TID 1500 structured
report: each lesion's volume, mean probability with a soft map, and level, and the totals; :mod:`.sr`) and
``S_preview_N.dcm`` (secondary capture: the sagittal overview, then axial close-ups of the largest lesions;
:mod:`.preview`). Every object gets new UIDs (:class:`.uids.UidSource`), copies the patient and study from the
source series, and names the model and its version in its series description and algorithm identification. A
reviewed mask (``reviewed=True``: a person corrected or accepted it) says so in the descriptions, and its lesion
segment's algorithm type is SEMIAUTOMATIC (DICOM: "calculated with user assistance") instead of AUTOMATIC.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk

from ..analysis.lesions import analyze_lesions
from ..dicom_series import DicomSeries, check_geometry, choose_series
from ..errors import InputError
from ..result_set import ResultSet
from . import MAX_PREVIEW_CLOSE_UPS, seg
from .preview import preview_images, preview_pictures
from .sr import lesion_report, lesion_segment_number
from .uids import UidSource

#: Series numbers of the outputs (a PACS sorts series by number; high numbers keep them after the scanner's).
SERIES_NUMBERS = {"dicom_seg": 9001, "dicom_soft": 9002, "dicom_sr": 9003, "dicom_preview": 9004}
#: DICOM's Segment Algorithm Type of a segment a person corrected (PS3.3 C.8.20.4).
SEMIAUTOMATIC = "SEMIAUTOMATIC"


def source_datasets(series: DicomSeries) -> list[pydicom.Dataset]:
    """The source series' headers in slice order (pixels are not needed to reference them)."""
    return [pydicom.dcmread(path, stop_before_pixels=True) for path in series.files]


def stage_dicom(result_set: ResultSet, source: str | os.PathLike[str], series_uids: Sequence[str], *,
                image: sitk.Image, lesion: sitk.Image, soft: sitk.Image, cord: sitk.Image | None, model: str,
                model_version: str, uid_root: str | None) -> dict[str, str]:
    """Build the DICOM outputs of one case (``image``: the series read as a volume; the masks and soft map on its
    grid) and stage them into ``result_set``; return role -> SOP Instance UID (recorded in the sidecar)."""
    series = check_geometry(choose_series(source, series_uids))
    objects = dicom_objects(series, image, lesion, soft, cord, model=model, model_version=model_version,
                            uid_root=uid_root)
    return stage_objects(result_set, objects)


def stage_objects(result_set: ResultSet, objects: dict[str, pydicom.Dataset]) -> dict[str, str]:
    """Stage each object under its role; return role -> SOP Instance UID."""
    for role, dataset in objects.items():
        result_set.stage_bytes(role, seg.to_bytes(dataset))
    return {role: str(dataset.SOPInstanceUID) for role, dataset in objects.items()}


def dicom_objects(series: DicomSeries, image: sitk.Image, lesion: sitk.Image, soft: sitk.Image | None,
                  cord: sitk.Image | None, *, model: str, model_version: str, uid_root: str | None,
                  reviewed: bool = False) -> dict[str, pydicom.Dataset]:
    """The SEG, fractional SEG (with ``soft``), SR and preview images of ``lesion`` (and ``cord``) on the grid of
    ``image``, the checked ``series`` read as a volume (slice k = ``series.files[k]``), by output role."""
    sources, uid = source_datasets(series), UidSource(uid_root)
    if sitk.GetArrayViewFromImage(lesion).shape[0] != len(sources):
        raise InputError(series.folder, "the lesion mask does not have one slice per source image")
    return _objects(sources, image, lesion, soft, cord, seg.algorithm(model, model_version), uid, model, reviewed)


def _objects(sources: list[pydicom.Dataset], image: sitk.Image, lesion: sitk.Image, soft: sitk.Image | None,
             cord: sitk.Image | None, algo: Any, uid: UidSource, model: str,
             reviewed: bool) -> dict[str, pydicom.Dataset]:
    """The SEG, fractional SEG, SR and preview images, by output role."""
    array = sitk.GetArrayViewFromImage
    mask = array(lesion) != 0
    probability = None if soft is None else np.asarray(array(soft), dtype=np.float32)
    cord_mask = None if cord is None else array(cord) != 0
    label = f"{model}, reviewed" if reviewed else model
    binary = seg.binary_seg(sources, mask, cord_mask, algo=algo, uid=uid, series_number=SERIES_NUMBERS["dicom_seg"],
                            description=f"MS lesions ({label})")
    if reviewed:
        _mark_semiautomatic(binary)
    analysis = analyze_lesions(mask, image, soft=None if probability is None else probability.astype(np.float64),
                               cord=cord_mask)
    pictures = preview_pictures(image, analysis, soft=soft, cord=cord, max_close_ups=MAX_PREVIEW_CLOSE_UPS)
    previews = preview_images(sources, pictures, uid=uid, series_number=SERIES_NUMBERS["dicom_preview"],
                              description=f"MS lesion preview ({label})")
    objects = {"dicom_seg": binary}
    if probability is not None:
        objects["dicom_soft"] = seg.fractional_seg(sources, probability, algo=algo, uid=uid,
                                                   series_number=SERIES_NUMBERS["dicom_soft"],
                                                   description=f"MS lesion probability ({model})")
    objects["dicom_sr"] = lesion_report(sources, binary, analysis, algo=algo, uid=uid,
                                        series_number=SERIES_NUMBERS["dicom_sr"],
                                        description=f"MS lesion report ({label})")
    return {**objects, **{f"dicom_preview_{n}": dataset for n, dataset in enumerate(previews, start=1)}}


def _mark_semiautomatic(segmentation: pydicom.Dataset) -> None:
    """The lesion segment of a reviewed SEG: made by the algorithm with a person's corrections."""
    number = lesion_segment_number(segmentation)
    for segment in segmentation.SegmentSequence:
        if int(segment.SegmentNumber) == number:
            segment.SegmentAlgorithmType = SEMIAUTOMATIC
