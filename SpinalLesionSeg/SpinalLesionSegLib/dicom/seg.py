"""DICOM SEG of a prediction: the binary lesions (and the cord when the model gives one) and the soft map as a
FRACTIONAL segmentation of type PROBABILITY, both referencing the source series and its frame of reference.

Segments carry the codes the Slicer panel uses (:mod:`..terminology`), so the lesion reads back as "MS lesion" in
Slicer, dcmqi and PACS viewers. Arrays are ``[k, j, i]`` on the volume :func:`..dicom_series.read_series` made, whose
slice k is source file k: frame k of the SEG is that file's plane. The probability is stored in 8 bits
(``max_fractional_value`` 255): a quantisation step of 1/255, about 0.004.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from .. import __version__, terminology
from ..terminology import Code
from .uids import UidSource

MANUFACTURER = "SpinalLesionSeg"
#: Largest stored value of the fractional SEG (8-bit): probability = stored / 255.
FRACTIONAL_MAX = 255


def algorithm(model: str, model_version: str) -> hd.AlgorithmIdentificationSequence:
    """The algorithm identification of every segment and of the SR: the model and its version."""
    return hd.AlgorithmIdentificationSequence(name=f"SpinalLesionSeg nnU-Net {model}"[:64],
                                              family=codes.cid7162.ArtificialIntelligence,
                                              version=(model_version or __version__)[:64])


def _concept(code: Code) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def _segment(number: int, label: str, category: Code, kind: Code, anatomy: Sequence[Code],
             color: tuple[float, float, float], algo: hd.AlgorithmIdentificationSequence) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=label, segmented_property_category=_concept(category),
        segmented_property_type=_concept(kind), algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algo, anatomic_regions=[_concept(c) for c in anatomy] or None,
        display_color=hd.color.CIELabColor.from_rgb(*(round(255 * v) for v in color)))


def lesion_segment(algo: hd.AlgorithmIdentificationSequence, number: int = 1) -> hd.seg.SegmentDescription:
    return _segment(number, terminology.LESION_SEGMENT_NAME, terminology.MORPHOLOGICALLY_ALTERED,
                    terminology.INFLAMMATION, [terminology.SPINAL_CORD], terminology.LESION_COLOR, algo)


def cord_segment(algo: hd.AlgorithmIdentificationSequence, number: int = 2) -> hd.seg.SegmentDescription:
    return _segment(number, terminology.CORD_SEGMENT_NAME, terminology.ANATOMICAL_STRUCTURE, terminology.SPINAL_CORD,
                    [], terminology.CORD_COLOR, algo)


def binary_seg(sources: Sequence[pydicom.Dataset], lesion: np.ndarray, cord: np.ndarray | None, *,
               algo: hd.AlgorithmIdentificationSequence, uid: UidSource, series_number: int,
               description: str) -> hd.seg.Segmentation:
    """The BINARY SEG: segment 1 the lesions, segment 2 the cord (when given; it overlaps the lesions)."""
    masks = [lesion.astype(bool)] + ([cord.astype(bool)] if cord is not None else [])
    segments = [lesion_segment(algo)] + ([cord_segment(algo)] if cord is not None else [])
    return _segmentation(sources, np.stack(masks, axis=-1), hd.seg.SegmentationTypeValues.BINARY, segments,
                         uid=uid, series_number=series_number, description=description)


def fractional_seg(sources: Sequence[pydicom.Dataset], soft: np.ndarray, *,
                   algo: hd.AlgorithmIdentificationSequence, uid: UidSource, series_number: int,
                   description: str) -> hd.seg.Segmentation:
    """The FRACTIONAL SEG (PROBABILITY) of the soft map (0..1), one lesion segment, 8-bit."""
    return _segmentation(sources, np.clip(soft, 0.0, 1.0).astype(np.float32),
                         hd.seg.SegmentationTypeValues.FRACTIONAL, [lesion_segment(algo)], uid=uid,
                         series_number=series_number, description=description,
                         fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY,
                         max_fractional_value=FRACTIONAL_MAX)


def _segmentation(sources: Sequence[pydicom.Dataset], pixels: np.ndarray, kind: hd.seg.SegmentationTypeValues,
                  segments: list[hd.seg.SegmentDescription], *, uid: UidSource, series_number: int,
                  description: str, **fractional: object) -> hd.seg.Segmentation:
    seg = hd.seg.Segmentation(
        source_images=list(sources), pixel_array=pixels, segmentation_type=kind, segment_descriptions=segments,
        series_instance_uid=uid(), series_number=series_number, sop_instance_uid=uid(), instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name="spinal-lesion-seg", software_versions=__version__,
        device_serial_number="0", content_label="LESIONS", content_description=description[:64],
        omit_empty_frames=False, **fractional)
    seg.SeriesDescription = description[:64]
    return seg


def to_bytes(dataset: pydicom.Dataset) -> bytes:
    """A dataset as a DICOM Part 10 file's bytes (staged and published with the other outputs)."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
