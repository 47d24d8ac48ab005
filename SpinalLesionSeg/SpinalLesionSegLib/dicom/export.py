"""The DICOM outputs of a prediction made on a DICOM series, written next to the NIfTI files and published with
them as one set (:class:`..result_set.ResultSet`): a killed run leaves the old set or the new one, never a SEG
without its NIfTI or the other way round.

Files (S = the series' readable stem): ``S_lesion_seg.dcm`` (BINARY SEG: lesions, and the cord when the model gives
it), ``S_lesion_soft.dcm`` (FRACTIONAL SEG, PROBABILITY), ``S_lesion_sr.dcm`` (TID 1500 structured report: each
lesion's volume, mean probability and level, and the totals; :mod:`.sr`) and ``S_preview_N.dcm`` (secondary
capture: the sagittal overview, then axial close-ups of the largest lesions; :mod:`.preview`). Every object gets
new UIDs (:class:`.uids.UidSource`), copies the patient and study from the source series, and names the model and
its version in its series description and algorithm identification.
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
from .sr import lesion_report
from .uids import UidSource

#: Series numbers of the outputs (a PACS sorts series by number; high numbers keep them after the scanner's).
SERIES_NUMBERS = {"dicom_seg": 9001, "dicom_soft": 9002, "dicom_sr": 9003, "dicom_preview": 9004}


def source_datasets(series: DicomSeries) -> list[pydicom.Dataset]:
    """The source series' headers in slice order (pixels are not needed to reference them)."""
    return [pydicom.dcmread(path, stop_before_pixels=True) for path in series.files]


def stage_dicom(result_set: ResultSet, source: str | os.PathLike[str], series_uids: Sequence[str], *,
                image: sitk.Image, lesion: sitk.Image, soft: sitk.Image, cord: sitk.Image | None, model: str,
                model_version: str, uid_root: str | None) -> dict[str, str]:
    """Build the DICOM outputs of one case (``image``: the series read as a volume; the masks and soft map on its
    grid) and stage them into ``result_set``; return role -> SOP Instance UID (recorded in the sidecar)."""
    series = check_geometry(choose_series(source, series_uids))
    sources, uid = source_datasets(series), UidSource(uid_root)
    if sitk.GetArrayViewFromImage(lesion).shape[0] != len(sources):
        raise InputError(source, "the prediction does not have one slice per source image")
    objects = _objects(sources, image, lesion, soft, cord, seg.algorithm(model, model_version), uid, model)
    for role, dataset in objects.items():
        result_set.stage_bytes(role, seg.to_bytes(dataset))
    return {role: str(dataset.SOPInstanceUID) for role, dataset in objects.items()}


def _objects(sources: list[pydicom.Dataset], image: sitk.Image, lesion: sitk.Image, soft: sitk.Image,
             cord: sitk.Image | None, algo: Any, uid: UidSource, model: str) -> dict[str, pydicom.Dataset]:
    """The SEG, fractional SEG, SR and preview images, by output role."""
    array = sitk.GetArrayViewFromImage
    mask, probability = array(lesion) != 0, np.asarray(array(soft), dtype=np.float32)
    cord_mask = None if cord is None else array(cord) != 0
    binary = seg.binary_seg(sources, mask, cord_mask, algo=algo, uid=uid, series_number=SERIES_NUMBERS["dicom_seg"],
                            description=f"MS lesions ({model})")
    analysis = analyze_lesions(mask, image, soft=probability.astype(np.float64), cord=cord_mask)
    pictures = preview_pictures(image, analysis, soft=soft, cord=cord, max_close_ups=MAX_PREVIEW_CLOSE_UPS)
    previews = preview_images(sources, pictures, uid=uid, series_number=SERIES_NUMBERS["dicom_preview"],
                              description=f"MS lesion preview ({model})")
    return {
        "dicom_seg": binary,
        "dicom_soft": seg.fractional_seg(sources, probability, algo=algo, uid=uid,
                                         series_number=SERIES_NUMBERS["dicom_soft"],
                                         description=f"MS lesion probability ({model})"),
        "dicom_sr": lesion_report(sources, binary, analysis, algo=algo, uid=uid,
                                  series_number=SERIES_NUMBERS["dicom_sr"], description=f"MS lesion report ({model})"),
        **{f"dicom_preview_{n}": dataset for n, dataset in enumerate(previews, start=1)},
    }
