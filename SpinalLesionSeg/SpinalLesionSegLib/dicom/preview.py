"""The PACS preview: a secondary-capture series (Secondary Capture Image Storage, RGB, one image per picture) of the
report's key slices, for viewers that cannot show a DICOM SEG.

The pictures are the clinical report's (:func:`..analysis.overlay_pictures.lesion_picture_arrays`, the same
renderer as the QC page): a sagittal overview with every lesion outlined in red and numbered as "Lesion N" in the
structured report (:mod:`.sr`), then an axial close-up through each of the largest lesions. Each image copies the
patient and study attributes of the source series (highdicom's ``SCImage.from_ref_dataset``), so the PACS files it
in the same study, and says in its Image Comments and Derivation Description what it shows and that it is not for
diagnostic use without review (an algorithm drew it; nobody has checked it yet).

The pictures are not resampled here: their pixels are those of the report's PNG files, exactly. They carry a
Patient Orientation (the display conventions of :mod:`..analysis.overlay_pictures`, fixed whatever the scan's voxel
order), but no pixel spacing: a secondary capture is not for measuring, the SEG and the SR are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import highdicom as hd
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.uid import ExplicitVRLittleEndian

from .. import __version__
from ..analysis.lesions import LesionAnalysis
from ..analysis.levels import UNASSIGNED, level_name
from ..analysis.overlay_pictures import AXIAL_FIELD_MM, lesion_picture_arrays
from ..image_io import array_to_image
from .seg import MANUFACTURER
from .uids import UidSource

#: What every preview image says of itself (Image Comments and Derivation Description).
NOT_DIAGNOSTIC = "Not for diagnostic use without review"
#: Patient Orientation (direction along a row, direction down a column) of the pictures: sagittal slices with
#: anterior on the left and superior up (rows run to posterior, columns to the feet); axial slices radiological,
#: anterior up and the patient's right on the viewer's left (rows run to the patient's left, columns to posterior).
SAGITTAL_ORIENTATION = ("P", "F")
AXIAL_ORIENTATION = ("L", "P")
#: Axial close-ups in a preview: the largest lesions, as many as a radiologist pages through at a glance; every
#: lesion is still outlined and numbered on the overview.
MAX_CLOSE_UPS = 6


class Picture(NamedTuple):
    """One preview image: its title (what it shows), its pixels (rows x columns x 3, uint8 RGB) and its Patient
    Orientation (row direction, column direction: letters among A, P, R, L, H, F)."""

    title: str
    rgb: np.ndarray
    orientation: tuple[str, str]


def preview_pictures(image: sitk.Image, analysis: LesionAnalysis, *, soft: sitk.Image | None = None,
                     cord: sitk.Image | None = None, max_close_ups: int = MAX_CLOSE_UPS) -> list[Picture]:
    """The preview's pictures of ``image`` (the source series read as a volume) and its lesions ``analysis``
    (labels on the image's grid): the sagittal overview, then axial close-ups of the ``max_close_ups`` largest
    lesions, largest first. The soft map (probabilities 0..1) tints them; the cord mask centres the overview."""
    labels = array_to_image(analysis.labels.astype(np.int32), image)
    ids = [lesion.id for lesion in analysis.lesions]
    largest = sorted(analysis.lesions, key=lambda lesion: (-lesion.voxel_count, lesion.id))[:max_close_ups]
    drawn = lesion_picture_arrays(image, labels, ids, soft=soft, cord=cord)
    overview = ("Sagittal overview: every lesion outlined in red and numbered as in the structured report"
                if ids else "Sagittal overview: no lesion found")
    pictures = [Picture(overview, drawn.overview, SAGITTAL_ORIENTATION)]
    for lesion in largest:
        if lesion.id not in drawn.axial:
            continue
        level = f", level {level_name(lesion.primary_level)}" if lesion.primary_level != UNASSIGNED else ""
        pictures.append(Picture(f"Axial slice through lesion {lesion.id} ({lesion.volume_mm3:.1f} mm3{level}), "
                                f"{AXIAL_FIELD_MM:g} mm field", drawn.axial[lesion.id], AXIAL_ORIENTATION))
    return pictures


def preview_images(sources: Sequence[pydicom.Dataset], pictures: Sequence[Picture], *, uid: UidSource,
                   series_number: int, description: str) -> list[hd.sc.SCImage]:
    """One secondary-capture image per picture, in one new series (``description``: the caller puts the model
    name and version in it) of the source series' study; instance numbers follow the pictures' order."""
    series_uid = uid()
    return [_image(sources[0], picture, number, series_uid=series_uid, sop_uid=uid(), series_number=series_number,
                   description=description)
            for number, picture in enumerate(pictures, start=1)]


def _image(source: pydicom.Dataset, picture: Picture, number: int, *, series_uid: str, sop_uid: str,
           series_number: int, description: str) -> hd.sc.SCImage:
    """One picture as an SC image with the study of ``source`` and the comments that say what it is."""
    rgb = np.ascontiguousarray(picture.rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"preview picture {picture.title!r} is not an RGB array (shape {rgb.shape})")
    image = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=rgb, photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8, coordinate_system=hd.CoordinateSystemNames.PATIENT, series_instance_uid=series_uid,
        series_number=series_number, sop_instance_uid=sop_uid, instance_number=number, manufacturer=MANUFACTURER,
        patient_orientation=picture.orientation, transfer_syntax_uid=ExplicitVRLittleEndian)
    image.SeriesDescription = description[:64]
    image.ManufacturerModelName = "spinal-lesion-seg"
    image.SoftwareVersions = __version__
    image.ImageComments = f"{picture.title}. {NOT_DIAGNOSTIC}."
    image.DerivationDescription = (f"Automatic lesion segmentation drawn on series {source.SeriesInstanceUID} "
                                   f"({description}): {picture.title}. {NOT_DIAGNOSTIC}.")[:1024]
    image.BurnedInAnnotation = "NO"  # orientation letters and lesion numbers only: nothing identifies the patient
    return image
