"""DICOM outputs for PACS: SEG (binary and fractional), secondary-capture previews and a TID 1500 structured report
of a prediction made on a DICOM series (reading DICOM is the base module :mod:`..dicom_series`).

This file stays light (no highdicom import): :func:`..inference.case.output_paths` names the files from it.
"""

from __future__ import annotations

import os

from ..dicom_series import is_dicom_folder
from ..errors import InputError

#: Most axial close-ups in the preview series (besides the sagittal overview).
MAX_PREVIEW_CLOSE_UPS = 4
#: DICOM output roles and their file names after the case's stem: the binary and fractional SEG, the structured
#: report, and the preview series (overview, then close-ups; as many files as pictures).
DICOM_FILES = {"dicom_seg": "lesion_seg.dcm", "dicom_soft": "lesion_soft.dcm", "dicom_sr": "lesion_sr.dcm",
               **{f"dicom_preview_{n}": f"preview_{n}.dcm" for n in range(1, MAX_PREVIEW_CLOSE_UPS + 2)}}


def wants_dicom(dicom_out: bool | None, source: str | os.PathLike[str]) -> bool:
    """Whether to write DICOM outputs: as asked, or (None) when the input is a DICOM folder. InputError when asked
    for a file input: a SEG must reference the source images it was made on."""
    if dicom_out and not is_dicom_folder(source):
        raise InputError(source, "is not a DICOM series: DICOM outputs (--dicom-out) reference the source images, "
                                 "so they need a DICOM input folder")
    return is_dicom_folder(source) if dicom_out is None else dicom_out
