"""The structured report: a TID 1500 Measurement Report (Comprehensive 3D SR) of the lesions of a prediction made on
a DICOM series, so that a PACS, dcmqi's ``tid1500reader`` or Slicer's Quantitative Reporting read the numbers of the
report as coded measurements.

Content (codes in docs/conventions.md, "DICOM SR and preview"):

* Observation context: the observer is a device, the algorithm (its UID derived from the model name and version,
  so reports of the same model name the same device). Procedure reported: Imaging procedure (SCT 363679005).
* One Volumetric ROI measurement group (TID 1411) per lesion: tracking identifier ``Lesion N`` (N as in the report,
  the QC page and the preview pictures) with a new tracking UID; finding type the lesion code of the Slicer panel
  (:mod:`..terminology`), finding category Morphologically Altered Structure, finding site Spinal cord; the
  algorithm identification of the SEG (:func:`.seg.algorithm`); the ROI is the lesion segment of the binary SEG
  with its source series; measurements: Volume (SCT 118565006, ``mm3``) and, with a soft map, the mean lesion
  probability (private code, unit ``1``); the vertebral levels as qualitative evaluations when a level source was
  given.
* One group for the totals, tracking identifier ``All lesions``: the same segment (which holds all the lesions, so
  its volume is the total volume exactly), Number of lesions (SCT 246206008) and Volume.

Choices, and why:

* The vertebral level is a **qualitative evaluation** (name: a private concept, value: the SCT code of the vertebra,
  e.g. "C3 vertebra" 113205007), not a finding site: a finding site "C3 vertebra" would say the lesion is in the bone
  (a PACS shows finding sites as the lesion's location), whereas it is in the cord at that vertebra's height. The
  finding site stays "Spinal cord". highdicom writes TID 1411 qualitative evaluations as CODE items; dcmqi's
  ``tid1500reader`` lists them in its JSON ``qualitativeEvaluations``.
* The mean probability has no standard code (DCM 122157 "Probability" exists but belongs to no context group and
  says nothing of an average over a region), so it is a private concept of the coding scheme ``99SLS``, declared in
  the Coding Scheme Identification Sequence. It is the mean of the soft map over the lesion's voxels, which is
  ``soft_volume_mm3 / volume_mm3`` of :class:`..analysis.lesions.Lesion`.
* The ROI of each lesion group is the **whole lesion segment**: the binary SEG has one segment for all lesions (the
  Slicer panel's), and TID 1411 takes exactly one ROI reference, so the lesion's centroid cannot be added as a 3D
  point (highdicom refuses a second reference, and a point alone would lose the link to the SEG that dcmqi and
  Slicer follow). The lesion is identified within the segment by its number: the connected components of the
  segment (connectivity of the analysis) numbered in scan order, as lesions.csv lists them with their centroids.
* Tracking UIDs are new in every report: following one lesion across reports is ``compare``'s job, not the SR's.
* The report is COMPLETE and UNVERIFIED: nobody has reviewed it yet.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import highdicom as hd
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from .. import terminology
from ..analysis.lesions import Lesion, LesionAnalysis
from ..analysis.levels import COCCYX, SACRUM, UNASSIGNED, canonical_level, level_name
from .seg import MANUFACTURER
from .uids import UidSource

#: The private coding scheme of the concepts DICOM has no code for.
PRIVATE_SCHEME = "99SLS"
PRIVATE_SCHEME_NAME = "SpinalLesionSeg private concepts"
#: Mean of the soft map (lesion probability 0..1) over a lesion's voxels; unit "1".
MEAN_PROBABILITY = Code("MEANPROB", PRIVATE_SCHEME, "Mean lesion probability")
#: The level holding most of a lesion's voxels (ties: the superior one), and every level holding some.
PRIMARY_LEVEL = Code("LEVEL", PRIVATE_SCHEME, "Primary vertebral level")
LEVEL_SPANNED = Code("LEVELSPAN", PRIVATE_SCHEME, "Vertebral level spanned")
#: Units (UCUM): cubic millimetres, a probability, a number of lesions.
MM3 = codes.UCUM.CubicMillimeter
UNITLESS = codes.UCUM.NoUnits
LESIONS_UNIT = Code("{lesions}", "UCUM", "lesions")
#: Tracking identifiers: lesions as numbered everywhere else, and the totals group.
LESION_IDENTIFIER = "Lesion {id}"
TOTALS_IDENTIFIER = "All lesions"


def lesion_report(sources: Sequence[pydicom.Dataset], segmentation: pydicom.Dataset, analysis: LesionAnalysis, *,
                  algo: hd.AlgorithmIdentificationSequence, uid: UidSource, series_number: int,
                  description: str) -> hd.sr.Comprehensive3DSR:
    """The TID 1500 report of ``analysis`` (the lesions of the binary SEG ``segmentation`` of the series
    ``sources``), in a new series of the source study (``description``: the caller puts the model in it)."""
    algorithm = hd.sr.AlgorithmIdentification(name=algo[0].AlgorithmName, version=algo[0].AlgorithmVersion)
    segment = hd.sr.ReferencedSegment(
        sop_class_uid=segmentation.SOPClassUID, sop_instance_uid=segmentation.SOPInstanceUID,
        segment_number=lesion_segment_number(segmentation),
        source_series=hd.sr.SourceSeriesForSegmentation(sources[0].SeriesInstanceUID))
    groups = [_lesion_group(lesion, analysis, segment, algorithm, uid) for lesion in analysis.lesions]
    groups.append(_totals_group(analysis, segment, algorithm, uid))
    report = hd.sr.MeasurementReport(observation_context=_observation_context(algorithm),
                                      procedure_reported=codes.SCT.ImagingProcedure, imaging_measurements=groups)
    document = hd.sr.Comprehensive3DSR(
        evidence=[segmentation, *sources], content=report, series_instance_uid=uid(), series_number=series_number,
        sop_instance_uid=uid(), instance_number=1, manufacturer=MANUFACTURER, is_complete=True, is_final=False,
        is_verified=False)
    document.SeriesDescription = description[:64]
    _declare_private_scheme(document)
    return document


def _observation_context(algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.ObservationContext:
    """The device observer: the algorithm, with a UID derived from its name and version (UUID version 5)."""
    name, version = algorithm[0].TextValue, algorithm[1].TextValue
    device_uid = f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, f'SpinalLesionSeg/{name}/{version}').int}"
    device = hd.sr.DeviceObserverIdentifyingAttributes(uid=device_uid, name=name[:64], manufacturer_name=MANUFACTURER,
                                                       model_name=name[:64])
    return hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))


def _group(identifier: str, segment: hd.sr.ReferencedSegment, algorithm: hd.sr.AlgorithmIdentification,
           uid: UidSource, measurements: list[hd.sr.Measurement],
           evaluations: list[hd.sr.QualitativeEvaluation] | None = None
           ) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """A TID 1411 group of the lesion segment: the lesion finding in the spinal cord, by the algorithm."""
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid(), identifier=identifier), referenced_segment=segment,
        finding_type=_code(terminology.INFLAMMATION), finding_category=_code(terminology.MORPHOLOGICALLY_ALTERED),
        finding_sites=[hd.sr.FindingSite(_code(terminology.SPINAL_CORD))], algorithm_id=algorithm,
        measurements=measurements, qualitative_evaluations=evaluations or None)


def _lesion_group(lesion: Lesion, analysis: LesionAnalysis, segment: hd.sr.ReferencedSegment,
                  algorithm: hd.sr.AlgorithmIdentification, uid: UidSource
                  ) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """Lesion ``lesion.id``: its volume (mm3), mean probability (with a soft map) and vertebral levels."""
    measurements = [hd.sr.Measurement(name=codes.SCT.Volume, value=lesion.volume_mm3, unit=MM3)]
    if analysis.has_soft and lesion.soft_volume_mm3 is not None and lesion.volume_mm3 > 0:
        measurements.append(hd.sr.Measurement(name=MEAN_PROBABILITY, value=mean_probability(lesion),
                                              unit=UNITLESS))
    evaluations = []
    if analysis.has_levels and lesion.primary_level != UNASSIGNED:
        evaluations.append(hd.sr.QualitativeEvaluation(PRIMARY_LEVEL, vertebra(lesion.primary_level)))
        evaluations += [hd.sr.QualitativeEvaluation(LEVEL_SPANNED, vertebra(code))
                        for code in lesion.levels_touched if code != UNASSIGNED]
    return _group(LESION_IDENTIFIER.format(id=lesion.id), segment, algorithm, uid, measurements, evaluations)


def _totals_group(analysis: LesionAnalysis, segment: hd.sr.ReferencedSegment,
                  algorithm: hd.sr.AlgorithmIdentification, uid: UidSource
                  ) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """All lesions: their number and total volume (mm3; the lesion segment's volume)."""
    total = sum(lesion.volume_mm3 for lesion in analysis.lesions)
    measurements = [hd.sr.Measurement(name=codes.SCT.NumberOfLesions, value=len(analysis.lesions),
                                      unit=LESIONS_UNIT),
                    hd.sr.Measurement(name=codes.SCT.Volume, value=total, unit=MM3)]
    return _group(TOTALS_IDENTIFIER, segment, algorithm, uid, measurements)


def lesion_segment_number(segmentation: pydicom.Dataset) -> int:
    """The number of the lesion segment (labelled as the Slicer panel's) in a SEG; ValueError without one."""
    for segment in segmentation.SegmentSequence:
        if segment.SegmentLabel == terminology.LESION_SEGMENT_NAME:
            return int(segment.SegmentNumber)
    raise ValueError(f"the SEG {segmentation.SOPInstanceUID} has no {terminology.LESION_SEGMENT_NAME!r} segment")


def mean_probability(lesion: Lesion) -> float:
    """The mean soft-map probability (0..1) over the lesion's voxels: soft volume / volume."""
    return float(lesion.soft_volume_mm3 or 0.0) / lesion.volume_mm3


def vertebra(level: int) -> Code:
    """The SCT code of the vertebra of a level code (3 -> "C3 vertebra"; sacrum, coccyx)."""
    level = canonical_level(level)
    if level == SACRUM:
        return codes.SCT.Sacrum
    if level == COCCYX:
        return codes.SCT.Coccyx
    return getattr(codes.SCT, f"{level_name(level)}Vertebra")


def _code(code: terminology.Code) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def _declare_private_scheme(document: Dataset) -> None:
    """Add ``99SLS`` to the Coding Scheme Identification Sequence (private schemes must be declared there)."""
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = PRIVATE_SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = "SpinalLesionSeg project"
    schemes = list(document.get("CodingSchemeIdentificationSequence", []))
    document.CodingSchemeIdentificationSequence = [s for s in schemes if s.CodingSchemeDesignator != PRIVATE_SCHEME] \
        + [item]
