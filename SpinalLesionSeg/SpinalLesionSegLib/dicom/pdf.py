"""The clinical report's PDF as a DICOM object (Encapsulated PDF Storage), so that it lands in the PACS in the study
of the series it reports on, beside the SEG, the preview and the structured report.

Written with pydicom (highdicom has no encapsulated-document class): the Patient and General Study modules are
copied from the source series, the document's own series is new (modality DOC), and the Source Instance Sequence
lists the source images the report was made from. Burned In Annotation is YES: the report's pages may name the
patient or the input file, so de-identification tools must treat the document as identifying.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from .. import __version__
from .seg import MANUFACTURER
from .uids import UidSource

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
#: Patient and study attributes copied from the source (type 2 ones are written empty when the source lacks them).
PATIENT_STUDY = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
                 "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
                 "ReferringPhysicianName", "StudyDescription")
TYPE_2 = {"PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
          "AccessionNumber", "ReferringPhysicianName"}


def encapsulated_pdf(sources: Sequence[pydicom.Dataset], pdf_bytes: bytes, *, uid: UidSource, series_number: int,
                     title: str) -> FileDataset:
    """The PDF ``pdf_bytes`` as an Encapsulated PDF instance in a new series of the sources' study, titled
    ``title`` (Document Title and Series Description; the caller puts the model in it). ValueError when the bytes
    are not a PDF (they would be stored, and refused by every viewer)."""
    if not pdf_bytes.startswith(b"%PDF-"):
        raise ValueError("the report to encapsulate is not a PDF (it does not start with %PDF-)")
    source = sources[0]
    dataset = _file(uid())
    dataset.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: names and titles are written as pydicom decoded them
    for keyword in PATIENT_STUDY:
        if keyword in source:
            setattr(dataset, keyword, source[keyword].value)
        elif keyword in TYPE_2:
            setattr(dataset, keyword, "")
    now = datetime.datetime.now()
    dataset.Modality, dataset.SeriesInstanceUID, dataset.SeriesNumber = "DOC", uid(), series_number
    dataset.SeriesDescription = dataset.DocumentTitle = title[:64]
    dataset.Manufacturer, dataset.SoftwareVersions = MANUFACTURER, __version__
    dataset.ConversionType = "WSD"  # made on a workstation, not scanned
    dataset.InstanceNumber = 1
    dataset.ContentDate, dataset.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    dataset.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    dataset.BurnedInAnnotation = "YES"
    dataset.ConceptNameCodeSequence = []
    dataset.SourceInstanceSequence = [_reference(item) for item in sources]
    dataset.MIMETypeOfEncapsulatedDocument = "application/pdf"
    dataset.EncapsulatedDocumentLength = len(pdf_bytes)
    dataset.EncapsulatedDocument = pdf_bytes + b"\0" * (len(pdf_bytes) % 2)  # OB values have an even length
    return dataset


def _file(sop_instance_uid: str) -> FileDataset:
    """An empty Encapsulated PDF dataset with its file meta information (explicit VR little endian)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID, dataset.SOPInstanceUID = ENCAPSULATED_PDF_STORAGE, sop_instance_uid
    return dataset


def _reference(source: pydicom.Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = source.SOPClassUID, source.SOPInstanceUID
    return item


def document_bytes(dataset: pydicom.Dataset) -> bytes:
    """The PDF stored in an Encapsulated PDF dataset (the padding byte removed)."""
    return bytes(dataset.EncapsulatedDocument[: int(dataset.EncapsulatedDocumentLength)])
