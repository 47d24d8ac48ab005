"""Make a report and publish its files as one set: ``report.html``, ``report.pdf``, the pictures beside them,
and ``report.json`` last.

``report.json`` is the set's manifest (:mod:`..result_set`): the inputs with their sha256, the totals and the
sha256 of every file of the report. The files are staged under hidden names and renamed into place with the
manifest last, so a killed run leaves the previous complete report or the new one, never a new PDF beside old
pictures; pictures the new report no longer has (fewer lesions) are removed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..analysis.level_sources import AUTO
from ..dicom import wants_dicom
from ..dicom.uids import UidSource
from ..outputs import WRITTEN_SHA256, writable_folder
from ..result_set import ResultSet
from .data import ReportData, gather_report_data
from .html_page import render_html
from .pdf_document import render_pdf
from .pictures import PICTURE_FILES, render_pictures

#: The report's own files, by role, beside its pictures (:data:`.pictures.PICTURE_FILES`).
REPORT_FILES = {"html": "report.html", "pdf": "report.pdf"}
MANIFEST = "report.json"
#: The report as an Encapsulated PDF (DICOM input only) and its series number in the study.
DICOM_PDF = "report.dcm"
REPORT_SERIES_NUMBER = 9005


@dataclass(frozen=True)
class ReportOutputs:
    """The files written (paths) and the numbers they show."""

    html: Path
    pdf: Path
    manifest: Path
    pictures: list[Path]
    data: ReportData


def make_report(image_path: str | os.PathLike[str], lesion_path: str | os.PathLike[str],
                out_dir: str | os.PathLike[str], *, soft_path: str | os.PathLike[str] | None = None,
                levels_path: str | os.PathLike[str] | None = None, levels_kind: str = AUTO,
                cord_path: str | os.PathLike[str] | None = None, patient_id: str | None = None,
                longitudinal: dict[str, Any] | None = None, resample: bool = False,
                series_uids: Sequence[str] = (), dicom_out: bool | None = None,
                uid_root: str | None = None) -> ReportOutputs:
    """Analyse the lesion mask (:func:`.data.gather_report_data`) and write its report into ``out_dir``.

    The folder is checked first (InputError when it cannot be written), before any image is read.
    ``longitudinal`` is the change section's dict (:mod:`.change`), None for a report without a baseline. For a
    DICOM image (a folder; ``series_uids`` chooses its series) the PDF is also written as an Encapsulated PDF
    ``report.dcm`` in the scan's study, unless ``dicom_out`` is False (:func:`..dicom.wants_dicom`).
    """
    folder = writable_folder(out_dir)
    data = gather_report_data(image_path, lesion_path, soft_path=soft_path, levels_path=levels_path,
                              levels_kind=levels_kind, cord_path=cord_path, patient_id=patient_id,
                              longitudinal=longitudinal, resample=resample, series_uids=series_uids)
    encapsulate = wants_dicom(dicom_out, image_path)
    return write_report(data, folder, dicom_pdf=UidSource(uid_root) if encapsulate else None)


def make_station_report(image_paths: Sequence[str | os.PathLike[str]],
                        lesion_paths: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str], *,
                        soft_paths: Sequence[str | os.PathLike[str]] = (),
                        cord_paths: Sequence[str | os.PathLike[str]] = (),
                        levels_paths: Sequence[str | os.PathLike[str]] = (), levels_kind: str = AUTO,
                        patient_id: str | None = None, resample: bool = False) -> ReportOutputs:
    """The report of a multi-station exam (:mod:`.stations`) into ``out_dir`` (checked first): one report for
    the patient, each lesion once. No Encapsulated PDF: it would belong to one station's series."""
    from .stations import gather_station_report_data

    folder = writable_folder(out_dir)
    data = gather_station_report_data(image_paths, lesion_paths, soft_paths=soft_paths, cord_paths=cord_paths,
                                      levels_paths=levels_paths, levels_kind=levels_kind, patient_id=patient_id,
                                      resample=resample)
    return write_report(data, folder)


def write_report(data: ReportData, out_dir: str | os.PathLike[str], *, dicom_pdf: Any = None) -> ReportOutputs:
    """Render ``data`` (pictures, HTML, PDF) and publish the files into ``out_dir`` with ``report.json`` last;
    with ``dicom_pdf`` (a :class:`..dicom.uids.UidSource`) also the PDF as ``report.dcm`` (Encapsulated PDF)."""
    folder = Path(out_dir)
    pictures = render_pictures(data)
    page, pdf = render_html(data, pictures), render_pdf(data, pictures)
    roles = {role: folder / name for role, name in (*PICTURE_FILES.items(), *REPORT_FILES.items())}
    roles["dicom_pdf"] = folder / DICOM_PDF
    with ResultSet(folder / MANIFEST, roles) as result_set:
        for picture in pictures:
            result_set.stage_bytes(picture.role, picture.png)
        result_set.stage_text("html", page)
        result_set.stage_bytes("pdf", pdf)
        if dicom_pdf is not None:
            result_set.stage_bytes("dicom_pdf", _encapsulated(data, pdf, dicom_pdf))
        manifest = _manifest(data)
        manifest[WRITTEN_SHA256] = result_set.sha256()
        published = result_set.publish(json.dumps(manifest, indent=2) + "\n")
    return ReportOutputs(html=published["html"], pdf=published["pdf"], manifest=published["sidecar"],
                         pictures=[published[picture.role] for picture in pictures], data=data)


def _encapsulated(data: ReportData, pdf: bytes, uid: Any) -> bytes:
    """The report as an Encapsulated PDF instance in the image's DICOM study (highdicom loads only here)."""
    from ..dicom.export import source_datasets
    from ..dicom.pdf import encapsulated_pdf
    from ..dicom.seg import to_bytes
    from ..dicom_series import check_geometry, choose_series

    series = check_geometry(choose_series(data.inputs["image"], data.series_uids))
    return to_bytes(encapsulated_pdf(source_datasets(series), pdf, uid=uid, series_number=REPORT_SERIES_NUMBER,
                                     title="MS lesion report (spinal-lesion-seg)"))


def _manifest(data: ReportData) -> dict[str, Any]:
    """``report.json``: what the report was made from and its totals (mm3), for scripts and audits."""
    return {
        "report": "spinal-lesion-seg report",
        "created": data.created,
        "patient_id": data.patient_id,
        "inputs": {role: {"path": str(path), "sha256": data.input_sha256[role]} for role, path in data.inputs.items()},
        "lesion_count": data.lesion_count,
        "total_volume_mm3": data.total_volume_mm3,
        "total_soft_volume_mm3": data.total_soft_volume_mm3,
        "longitudinal": None if data.longitudinal is None else data.longitudinal.get("summary"),
        "software": {"name": "spinal-lesion-seg", "version": data.version},
    }
