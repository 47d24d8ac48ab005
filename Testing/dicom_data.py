"""Real MR DICOM series for the DICOM tests, written with pydicom from the shared real images.

:func:`write_mr_series` writes one MR Image Storage file per slice (explicit VR little endian) with the patient,
study, series and frame-of-reference attributes a scanner writes and the geometry tags a reader needs
(ImagePositionPatient, ImageOrientationPatient, PixelSpacing, SliceThickness, SpacingBetweenSlices), voxel values
as unsigned 16-bit with a rescale slope/intercept that restores the source values. The files' geometry is the source
image's (LPS, as SimpleITK holds it), so a correct reader gives back the source volume's grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
#: A UID root for test data (pydicom's own root, as generate_uid uses by default).
TEST_ROOT = "1.2.826.0.1.3680043.8.498."


def _study(patient_id: str, study_uid: str | None) -> dict[str, object]:
    return {"PatientName": "Test^Spine", "PatientID": patient_id, "PatientBirthDate": "19800101",
            "PatientSex": "F", "StudyInstanceUID": study_uid or generate_uid(TEST_ROOT), "StudyDate": "20260105",
            "StudyTime": "101500", "StudyID": "1", "AccessionNumber": "ACC0001", "ReferringPhysicianName": "",
            "StudyDescription": "Cervical spine MRI"}


def write_mr_series(image: sitk.Image, folder: Path, *, description: str = "sag T2 TSE", series_number: int = 5,
                    patient_id: str = "P-0042", study_uid: str | None = None, series_uid: str | None = None,
                    frame_of_reference: str | None = None, skip: tuple[int, ...] = ()) -> dict[str, object]:
    """Write ``image`` as an MR series into ``folder`` (``IM0001.dcm`` ...), leaving out the slices in ``skip``;
    return the UIDs and the rescale used. Slices follow the image's third axis."""
    folder.mkdir(parents=True, exist_ok=True)
    values = sitk.GetArrayFromImage(image).astype(np.float64)  # [k, j, i]: one DICOM frame per k
    low, high = float(values.min()), float(values.max())
    slope = (high - low) / 65535.0 or 1.0
    stored = np.round((values - low) / slope).astype(np.uint16)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    uids = {"study": study_uid or generate_uid(TEST_ROOT), "series": series_uid or generate_uid(TEST_ROOT),
            "frame_of_reference": frame_of_reference or generate_uid(TEST_ROOT), "slope": slope, "intercept": low}
    spacing = image.GetSpacing()
    for k in range(stored.shape[0]):
        if k in skip:
            continue
        dataset = _slice(stored[k], image.TransformIndexToPhysicalPoint((0, 0, k)), direction, spacing, k, uids)
        for key, value in {**_study(patient_id, uids["study"]), "SeriesDescription": description,
                           "SeriesNumber": series_number}.items():
            setattr(dataset, key, value)
        dataset.save_as(folder / f"IM{k + 1:04d}.dcm", enforce_file_format=True)
    return uids


def _slice(pixels: np.ndarray, position: tuple[float, ...], direction: np.ndarray, spacing: tuple[float, ...],
           k: int, uids: dict[str, object]) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid(TEST_ROOT)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID, dataset.SOPInstanceUID = MR_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
    dataset.Modality, dataset.Manufacturer, dataset.MagneticFieldStrength = "MR", "Test", 3
    dataset.SeriesInstanceUID, dataset.FrameOfReferenceUID = uids["series"], uids["frame_of_reference"]
    dataset.PositionReferenceIndicator = ""
    dataset.InstanceNumber, dataset.AcquisitionNumber = k + 1, 1
    dataset.SeriesDate, dataset.SeriesTime, dataset.ContentDate, dataset.ContentTime = \
        "20260105", "102000", "20260105", "102000"
    dataset.ImagePositionPatient = [f"{v:.6f}" for v in position]
    dataset.ImageOrientationPatient = [f"{v:.8f}" for v in [*direction[:, 0], *direction[:, 1]]]
    dataset.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]  # row spacing (j), column spacing (i)
    dataset.SliceThickness = dataset.SpacingBetweenSlices = f"{spacing[2]:.6f}"
    dataset.ScanningSequence, dataset.SequenceVariant, dataset.ScanOptions = "SE", "SK", ""
    dataset.MRAcquisitionType, dataset.EchoTime, dataset.RepetitionTime = "2D", 100, 3000
    dataset.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 16, 15, 0
    dataset.RescaleSlope, dataset.RescaleIntercept = f"{uids['slope']:.10g}", f"{uids['intercept']:.10g}"
    dataset.PixelData = np.ascontiguousarray(pixels).tobytes()
    return dataset


def read_back(folder: Path) -> list[pydicom.Dataset]:
    """Every DICOM file under ``folder``, read with pydicom."""
    return [pydicom.dcmread(path) for path in sorted(folder.rglob("*.dcm"))]
