"""The DICOM structured report (TID 1500) and the secondary-capture preview, on a real MR series written from the
shared real T2w (Testing/dicom_data.py) with three lesions painted inside its real cord.

Every output is serialised as a DICOM file and read back (pydicom, highdicom, and dcmqi's tid1500reader when it is
installed): the SR's per-lesion volumes and mean probabilities equal voxel counts x voxel volume and soft-map means
computed here independently, its totals their sums, its references the SEG and the source series; the preview's
pixels are the report's pictures exactly; the encapsulated PDF gives back the PDF's bytes; all carry the source's patient and study.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_data import write_mr_series
from PIL import Image
from pydicom.sr.codedict import codes
from SpinalLesionSegLib import terminology
from SpinalLesionSegLib.analysis.lesions import analyze_lesions
from SpinalLesionSegLib.analysis.level_sources import load_level_source
from SpinalLesionSegLib.analysis.overlay_pictures import render_lesion_pictures
from SpinalLesionSegLib.dicom import pdf, preview, seg, sr
from SpinalLesionSegLib.dicom.uids import UidSource
from SpinalLesionSegLib.dicom_series import read_series
from SpinalLesionSegLib.image_io import array_to_image

SC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
#: Painted lesions: (fraction along the cord's superior-inferior extent, half-width of the cube in voxels).
PAINTED = ((0.2, 1), (0.5, 2), (0.8, 1))


def _paint(cord: np.ndarray) -> list[np.ndarray]:
    """Three separate lesions: cubes around cord voxels at three heights, cut to the cord."""
    voxels = np.argwhere(cord)
    axis = int(np.argmax(voxels.max(axis=0) - voxels.min(axis=0)))  # the cord's long axis
    ordered = voxels[np.argsort(voxels[:, axis], kind="stable")]
    regions = []
    for fraction, half in PAINTED:
        centre = ordered[int(fraction * len(ordered))]
        region = np.zeros_like(cord)
        region[tuple(slice(c - half, c + half + 1) for c in centre)] = True
        regions.append(region & cord)
    return regions


@pytest.fixture(scope="module")
def case(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    t2 = shared_data / "sct_testing_data" / "t2"
    folder = tmp_path_factory.mktemp("dicom_reports") / "MR"
    write_mr_series(sitk.ReadImage(str(t2 / "t2.nii.gz")), folder)
    image, series = read_series(folder)
    sources = [pydicom.dcmread(path, stop_before_pixels=True) for path in series.files]  # as dicom/export
    cord_source = sitk.ReadImage(str(t2 / "t2_seg-manual.nii.gz"))
    cord = sitk.GetArrayFromImage(sitk.Resample(cord_source, image, sitk.Transform(), sitk.sitkNearestNeighbor)) > 0
    regions = _paint(cord)
    lesion = np.logical_or.reduce(regions)
    soft = np.where(lesion, np.random.default_rng(7).uniform(0.5, 1.0, lesion.shape),
                    np.where(cord, 0.1, 0.0)).astype(np.float32)  # the soft map's type
    labelled = sitk.ReadImage(str(t2 / "t2_seg-manual_labeled.nii.gz"))
    level_map = sitk.GetArrayFromImage(sitk.Resample(labelled, image, sitk.Transform(), sitk.sitkNearestNeighbor))
    analysis = analyze_lesions(lesion, image, soft=soft, cord=cord,
                               levels=load_level_source(t2 / "t2_seg-manual_labeled.nii.gz"))
    algo, uid = seg.algorithm("demo", "1.2"), UidSource()
    binary = seg.binary_seg(sources, lesion, cord, algo=algo, uid=uid, series_number=100,
                            description="SpinalLesionSeg demo 1.2 lesions")
    report = sr.lesion_report(sources, binary, analysis, algo=algo, uid=uid, series_number=102,
                              description="SpinalLesionSeg demo 1.2 lesion report")
    return SimpleNamespace(image=image, sources=sources, cord=cord, regions=regions, soft=soft, level_map=level_map,
                           analysis=analysis, algo=algo, uid=uid, binary=binary, report_bytes=seg.to_bytes(report),
                           folder=folder.parent)


def _groups(data: bytes) -> dict[str, hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations]:
    document = hd.sr.srread(io.BytesIO(data))
    return {group.tracking_identifier: group for group in document.content.get_volumetric_roi_measurement_groups()}


def _value(group: hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations, name: object) -> tuple[float, str]:
    (measurement,) = group.get_measurements(name=name)
    return float(measurement.value), measurement.unit.value


def test_each_lesion_has_its_volume_probability_and_level(case: SimpleNamespace) -> None:
    groups = _groups(case.report_bytes)
    assert set(groups) == {"Lesion 1", "Lesion 2", "Lesion 3", "All lesions"}
    voxel_mm3 = float(np.prod(case.image.GetSpacing()))
    for region in case.regions:
        (lesion_id,) = set(np.unique(case.analysis.labels[region]).tolist())  # one painted region = one lesion
        group = groups[f"Lesion {lesion_id}"]
        assert _value(group, codes.SCT.Volume) == (pytest.approx(np.count_nonzero(region) * voxel_mm3), "mm3")
        assert _value(group, sr.MEAN_PROBABILITY) == (pytest.approx(case.soft[region].mean(dtype=np.float64), rel=1e-9), "1")
        assert group.finding_type.value == terminology.INFLAMMATION.value
        assert [site.value.value for site in group.finding_sites] == [terminology.SPINAL_CORD.value]
        levels = {q.name.value: q.value for q in group.get_qualitative_evaluations()}
        primary = int(np.bincount(case.level_map[region].astype(int)).argmax())  # the labelled cord's level
        assert levels[sr.PRIMARY_LEVEL.value].meaning == f"C{primary} vertebra"
        assert len({group.tracking_uid for group in groups.values()}) == len(groups)


def test_the_totals_are_the_sums(case: SimpleNamespace) -> None:
    totals = _groups(case.report_bytes)["All lesions"]
    voxel_mm3 = float(np.prod(case.image.GetSpacing()))
    assert _value(totals, codes.SCT.NumberOfLesions) == (3, "{lesions}")
    total = sum(np.count_nonzero(region) for region in case.regions) * voxel_mm3
    assert _value(totals, codes.SCT.Volume) == (pytest.approx(total), "mm3")


def test_the_report_references_the_seg_segment_and_source_series(case: SimpleNamespace) -> None:
    dataset = pydicom.dcmread(io.BytesIO(case.report_bytes))
    source = case.sources[0]
    assert dataset.SOPClassUID == COMPREHENSIVE_3D_SR
    for tag in ("StudyInstanceUID", "PatientID", "PatientName", "PatientBirthDate", "AccessionNumber"):
        assert dataset[tag].value == source[tag].value, tag
    assert dataset.SeriesInstanceUID not in {source.SeriesInstanceUID, case.binary.SeriesInstanceUID}
    assert (dataset.CompletionFlag, dataset.VerificationFlag) == ("COMPLETE", "UNVERIFIED")
    assert [s.CodingSchemeDesignator for s in dataset.CodingSchemeIdentificationSequence].count("99SLS") == 1
    for group in _groups(case.report_bytes).values():
        segment = group.referenced_segment
        assert segment.referenced_sop_instance_uid == case.binary.SOPInstanceUID
        assert segment.referenced_segment_numbers == [1]
        assert segment.source_series_for_segmentation.value == source.SeriesInstanceUID
        algorithm = next(item for item in group[0].ContentSequence
                         if item.ConceptNameCodeSequence[0].CodeValue == "111001")  # Algorithm Name
        assert algorithm.TextValue == "SpinalLesionSeg nnU-Net demo"
    evidence = {item.ReferencedSOPInstanceUID for study in dataset.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for item in series.ReferencedSOPSequence}
    assert case.binary.SOPInstanceUID in evidence


def test_dcmqi_reads_the_report(case: SimpleNamespace, tmp_path: Path) -> None:
    reader = shutil.which("tid1500reader", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if reader is None:
        pytest.skip("dcmqi's tid1500reader is not installed")
    (tmp_path / "sr.dcm").write_bytes(case.report_bytes)
    subprocess.run([reader, "--inputDICOM", str(tmp_path / "sr.dcm"), "--outputMetadata", str(tmp_path / "sr.json")],
                   check=True, capture_output=True, timeout=60)
    read = json.loads((tmp_path / "sr.json").read_text())
    assert read["observerContext"]["ObserverType"] == "DEVICE"
    by_id = {group["TrackingIdentifier"]: group for group in read["Measurements"]}
    for lesion in case.analysis.lesions:
        group = by_id[f"Lesion {lesion.id}"]
        assert group["segmentationSOPInstanceUID"] == case.binary.SOPInstanceUID
        assert group["ReferencedSegment"] == 1
        assert group["SourceSeriesForImageSegmentation"] == case.sources[0].SeriesInstanceUID
        assert group["measurementAlgorithmIdentification"] == {"AlgorithmName": "SpinalLesionSeg nnU-Net demo",
                                                               "AlgorithmVersion": "1.2"}
        volume = next(item for item in group["measurementItems"] if item["quantity"]["CodeValue"] == "118565006")
        assert float(volume["value"]) == pytest.approx(lesion.volume_mm3)


def test_a_report_without_lesions_has_the_totals_only(case: SimpleNamespace) -> None:
    empty = np.zeros_like(case.cord)
    analysis = analyze_lesions(empty, case.image, soft=np.zeros(empty.shape, np.float32), cord=case.cord)
    binary = seg.binary_seg(case.sources, empty, case.cord, algo=case.algo, uid=case.uid, series_number=100,
                            description="lesions")
    report = sr.lesion_report(case.sources, binary, analysis, algo=case.algo, uid=case.uid, series_number=102,
                              description="report")
    groups = _groups(seg.to_bytes(report))
    assert list(groups) == ["All lesions"]
    assert _value(groups["All lesions"], codes.SCT.NumberOfLesions)[0] == 0
    assert _value(groups["All lesions"], codes.SCT.Volume)[0] == 0


def test_the_preview_shows_the_report_pictures_in_the_source_study(case: SimpleNamespace) -> None:
    image = case.image
    soft, cord = array_to_image(case.soft, image), array_to_image(case.cord.astype(np.uint8), image)
    pictures = preview.preview_pictures(image, case.analysis, soft=soft, cord=cord)
    images = preview.preview_images(case.sources, pictures, uid=case.uid, series_number=101,
                                    description="SpinalLesionSeg demo 1.2 preview")
    by_size = sorted(case.analysis.lesions, key=lambda lesion: -lesion.voxel_count)
    assert [p.title.split(" (")[0] for p in pictures[1:]] == [f"Axial slice through lesion {n.id}" for n in by_size]
    # The same pixels as the report's PNG pictures, drawn from files of the same volume, lesions and maps.
    files = {name: case.folder / f"{name}.nii.gz" for name in ("image", "soft", "cord")}
    for name, volume in zip(files, (image, soft, cord), strict=True):
        sitk.WriteImage(volume, str(files[name]))
    labels = array_to_image(case.analysis.labels.astype(np.int32), image)
    drawn = render_lesion_pictures(files["image"], labels, [n.id for n in case.analysis.lesions],
                                   soft_path=files["soft"], cord_path=files["cord"])
    pngs = [drawn.overview] + [drawn.axial[lesion.id] for lesion in by_size]
    source = case.sources[0]
    series_uids = set()
    for picture, written, png in zip(pictures, images, pngs, strict=True):
        dataset = pydicom.dcmread(io.BytesIO(seg.to_bytes(written)))
        assert np.array_equal(dataset.pixel_array, picture.rgb)
        assert np.array_equal(dataset.pixel_array, np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))
        assert (dataset.SOPClassUID, dataset.PhotometricInterpretation) == (SC_IMAGE_STORAGE, "RGB")
        for tag in ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "AccessionNumber"):
            assert dataset[tag].value == source[tag].value, tag
        assert "Not for diagnostic use without review" in dataset.ImageComments
        assert picture.title in dataset.ImageComments and picture.title in dataset.DerivationDescription
        assert dataset.SeriesDescription == "SpinalLesionSeg demo 1.2 preview"
        assert list(dataset.PatientOrientation) == list(picture.orientation)
        series_uids.add(dataset.SeriesInstanceUID)
    assert len(series_uids) == 1 and source.SeriesInstanceUID not in series_uids
    assert [int(i.InstanceNumber) for i in images] == list(range(1, len(pictures) + 1))


def test_the_pdf_report_is_encapsulated_in_the_source_study(case: SimpleNamespace) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format="PDF")  # a real one-page PDF, odd length or not
    document = pdf.encapsulated_pdf(case.sources, buffer.getvalue(), uid=case.uid, series_number=103,
                                    title="SpinalLesionSeg demo 1.2 report")
    dataset = pydicom.dcmread(io.BytesIO(seg.to_bytes(document)))
    assert pdf.document_bytes(dataset) == buffer.getvalue()
    assert (dataset.SOPClassUID, dataset.Modality, dataset.MIMETypeOfEncapsulatedDocument) == \
        (ENCAPSULATED_PDF_STORAGE, "DOC", "application/pdf")
    source = case.sources[0]
    for tag in ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "AccessionNumber"):
        assert dataset[tag].value == source[tag].value, tag
    assert dataset.SeriesInstanceUID != source.SeriesInstanceUID
    assert dataset.DocumentTitle == dataset.SeriesDescription == "SpinalLesionSeg demo 1.2 report"
    assert [item.ReferencedSOPInstanceUID for item in dataset.SourceInstanceSequence] == \
        [item.SOPInstanceUID for item in case.sources]
    with pytest.raises(ValueError, match="not a PDF"):
        pdf.encapsulated_pdf(case.sources, b"<html>", uid=case.uid, series_number=103, title="x")
