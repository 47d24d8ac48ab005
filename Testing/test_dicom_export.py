"""Export to DICOM from the panel (``mrml/dicom_export.py``, headless on slicer-core) and ``dicom-export``.

A real MR series is written from the shared real T2w (Testing/dicom_data.py) and enters the scene as Slicer's DICOM
scalar volume plugin loads it: its volume (the series read as one stack) with ``DICOM.instanceUIDs`` naming each
slice's file. Three lesions are painted in the real cord and made into the panel's segmentation, then corrected:
one erased, one painted. The export's SEG must give back the corrected segment voxel for voxel at the source images'
positions and reference the source series; the SR's totals must be the corrected segment's lesion count and
volume (counted here with scipy, 18-connected as stats). Expected values never come from the code under test.
"""

from __future__ import annotations

import json
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
from pydicom.sr.codedict import codes
from scipy import ndimage
from SpinalLesionSegLib import terminology
from SpinalLesionSegLib.dicom_series import read_series
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.mrml.dicom_export import (
    EXPORT_FOLDER,
    INSTANCE_UIDS_ATTRIBUTE,
    prepare_dicom_export,
    run_dicom_export,
)
from SpinalLesionSegLib.mrml.nodes import volume_node_from_image
from SpinalLesionSegLib.mrml.results import (
    create_lesion_segmentation,
    lesion_segment_id,
    show_soft_map,
    write_segment_mask,
)

STRUCTURE = ndimage.generate_binary_structure(3, 2)


@pytest.fixture(scope="module")
def case(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The series, its volume, its cord on the volume's grid, three lesions in the cord and the corrected mask."""
    t2 = shared_data / "sct_testing_data" / "t2"
    folder = tmp_path_factory.mktemp("export") / "MR_sag_T2"
    uids = write_mr_series(sitk.ReadImage(str(t2 / "t2.nii.gz")), folder)
    image, series = read_series(folder)
    # The cord file is on the (left-handed) NIfTI grid: every DICOM voxel centre is one of its voxel centres.
    cord_image = sitk.Resample(sitk.ReadImage(str(t2 / "t2_seg-manual.nii.gz")), image, sitk.Transform(),
                               sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    cord = sitk.GetArrayFromImage(cord_image) != 0
    inside = np.argwhere(ndimage.binary_erosion(cord, iterations=1))
    centres = [inside[int(len(inside) * f)] for f in (0.2, 0.5, 0.8)]
    lesions = np.zeros(cord.shape, dtype=bool)
    for k, j, i in centres:
        lesions[k - 1:k + 2, j - 1:j + 2, i - 1:i + 2] = True
    lesions &= cord
    corrected = lesions.copy()
    k, j, i = centres[0]
    corrected[k - 1:k + 2, j - 1:j + 2, i - 1:i + 2] = False  # erased lesion
    k, j, i = inside[int(len(inside) * 0.65)]
    corrected[k, j - 1:j + 1, i - 1:i + 1] = True  # painted lesion (4 voxels)
    soft = np.where(lesions, 0.8, np.where(cord, 0.1, 0.0)).astype(np.float32)
    return SimpleNamespace(folder=folder, uids=uids, image=image, files=series.files, cord=cord, lesions=lesions,
                           corrected=corrected, soft=soft)


def _as_image(array: np.ndarray, reference: sitk.Image, kind: int = sitk.sitkUInt8) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(sitk.GetArrayViewFromImage(sitk.Image(1, 1, 1, kind)).dtype))
    image.CopyInformation(reference)
    return image


def _panel(scene, case: SimpleNamespace, edit: bool = True) -> SimpleNamespace:
    """The panel after predicting on the DICOM volume, with the lesion segment corrected in the Segment Editor."""
    volume = volume_node_from_image(scene, case.image, "5: sag T2 TSE")
    instance_uids = [str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in case.files]
    volume.SetAttribute(INSTANCE_UIDS_ATTRIBUTE, " ".join(instance_uids))
    segmentation = create_lesion_segmentation(scene, _as_image(case.lesions, case.image), volume,
                                              _as_image(case.cord, case.image))
    soft = show_soft_map(scene, _as_image(case.soft, case.image, sitk.sitkFloat32), "lesion probability")
    if edit:
        write_segment_mask(segmentation, lesion_segment_id(segmentation), case.corrected, volume)
    return SimpleNamespace(inputVolume=volume, segmentation=segmentation, softMap=soft, levelsNode=None,
                           model="lesion_ms", instance_uids=instance_uids)


def test_the_export_gives_the_corrected_segment_as_seg_and_its_totals_in_the_sr(mrml_scene, case: SimpleNamespace,
                                                                             tmp_path: Path) -> None:
    p = _panel(mrml_scene, case)
    export = prepare_dicom_export(p, [str(f) for f in case.files], tmp_path / "out", tmp_path / "work")
    assert export.reviewed and export.output_dir == tmp_path / "out" / EXPORT_FOLDER
    outcome = run_dicom_export(export, timeout_s=120)
    files = {path.name for path in outcome.files}
    assert {"sag_T2_TSE_s5_lesion_seg.dcm", "sag_T2_TSE_s5_lesion_soft.dcm", "sag_T2_TSE_s5_lesion_sr.dcm",
            "sag_T2_TSE_s5_preview_1.dcm"} <= files and all(path.is_file() for path in outcome.files)

    seg = hd.seg.segread(export.output_dir / "sag_T2_TSE_s5_lesion_seg.dcm")
    assert seg.StudyInstanceUID == case.uids["study"] and seg.FrameOfReferenceUID == case.uids["frame_of_reference"]
    assert {item.SeriesInstanceUID for item in seg.ReferencedSeriesSequence} == {case.uids["series"]}
    lesion_segment, cord_segment = seg.SegmentSequence
    assert lesion_segment.SegmentLabel == terminology.LESION_SEGMENT_NAME
    assert lesion_segment.SegmentAlgorithmType == "SEMIAUTOMATIC" and "reviewed" in seg.SeriesDescription
    assert cord_segment.SegmentLabel == terminology.CORD_SEGMENT_NAME
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=p.instance_uids, segment_numbers=[1, 2],
                                               assert_missing_frames_are_empty=True)
    # Frame k is the frame of source image k (the volume's slice k): the corrected segment, voxel for voxel.
    assert np.array_equal(pixels[..., 0] != 0, case.corrected) and not np.array_equal(case.corrected, case.lesions)
    # The cord segment was imported without the predicted lesions (segments do not overlap); the SEG's cord is it
    # plus the corrected lesions, the panel's one cord rule: an erased lesion leaves its hole in the cord.
    assert np.array_equal(pixels[..., 1] != 0, (case.cord & ~case.lesions) | case.corrected)
    sources = {str(ds.SOPInstanceUID): ds for ds in (pydicom.dcmread(f, stop_before_pixels=True) for f in case.files)}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        referenced = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert np.allclose([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient],
                           [float(v) for v in sources[referenced].ImagePositionPatient], atol=1e-3)

    count = ndimage.label(case.corrected, STRUCTURE)[1]
    volume_mm3 = case.corrected.sum() * float(np.prod(case.image.GetSpacing()))
    document = hd.sr.srread(export.output_dir / "sag_T2_TSE_s5_lesion_sr.dcm")
    groups = {g.tracking_identifier: g for g in document.content.get_volumetric_roi_measurement_groups()}
    totals = groups.pop("All lesions")
    (number,) = totals.get_measurements(name=codes.SCT.NumberOfLesions)
    (volume,) = totals.get_measurements(name=codes.SCT.Volume)
    assert (float(number.value), float(volume.value)) == (count, pytest.approx(volume_mm3)) and len(groups) == count
    assert (outcome.lesion_count, outcome.volume_mm3) == (count, pytest.approx(volume_mm3, abs=1e-3))

    soft = hd.seg.segread(export.output_dir / "sag_T2_TSE_s5_lesion_soft.dcm").get_pixels_by_source_instance(
        source_sop_instance_uids=p.instance_uids, segment_numbers=[1], rescale_fractional=True)[..., 0]
    assert np.max(np.abs(soft - case.soft)) <= 0.5 / 255 + 1e-6
    manifest = json.loads(outcome.manifest.read_text())
    assert manifest["reviewed"] and manifest["series"]["SeriesInstanceUID"] == case.uids["series"]
    assert manifest["model"]["name"] == "lesion_ms"


def test_the_command_exports_a_corrected_nifti_mask_on_another_voxel_order(case: SimpleNamespace,
                                                                          tmp_path: Path) -> None:
    """The CLI on a mask stored on the source NIfTI's (left-handed) grid: the same voxels, reordered, not resampled."""
    flipped = sitk.Flip(_as_image(case.corrected, case.image), [False, False, True])
    mask_path = tmp_path / "corrected.nii.gz"
    sitk.WriteImage(flipped, str(mask_path))
    result = subprocess.run([sys.executable, "-m", "SpinalLesionSegLib", "dicom-export", "--series", str(case.folder),
                             "--lesion", str(mask_path), "--model", "lesion_ms", "-o", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert not (out / "sag_T2_TSE_s5_lesion_soft.dcm").exists()  # no soft map given: no fractional SEG
    seg = hd.seg.segread(out / "sag_T2_TSE_s5_lesion_seg.dcm")
    uids = [str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in case.files]
    mask = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1])[..., 0]
    assert np.array_equal(mask != 0, case.corrected) and len(seg.SegmentSequence) == 1
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"  # not --reviewed


@pytest.mark.parametrize("problem", ["not from DICOM", "no lesion segment", "files gone", "another grid"])
def test_problems_are_one_line_input_errors(mrml_scene, case: SimpleNamespace, tmp_path: Path,
                                            problem: str) -> None:
    p = _panel(mrml_scene, case, edit=False)
    files = [str(f) for f in case.files]
    if problem == "not from DICOM":
        p.inputVolume.RemoveAttribute(INSTANCE_UIDS_ATTRIBUTE)
        expected = "was not loaded from Slicer's DICOM database"
    elif problem == "no lesion segment":
        content = p.segmentation.GetSegmentation()
        content.RemoveSegment(lesion_segment_id(p.segmentation))
        expected = "MS lesion"
    elif problem == "files gone":
        files[3] = ""
        expected = "1 of its 52 DICOM files are not in the DICOM database"
    else:
        mask = tmp_path / "small.nii.gz"
        sitk.WriteImage(sitk.Image(10, 10, 10, sitk.sitkUInt8), str(mask))
        result = subprocess.run([sys.executable, "-m", "SpinalLesionSegLib", "dicom-export", "--series",
                                 str(case.folder), "--lesion", str(mask), "--model", "m", "-o", str(tmp_path / "o")],
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "is not on the grid of series" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        return
    with pytest.raises(InputError) as raised:
        prepare_dicom_export(p, files, tmp_path / "out", tmp_path / "work")
    assert expected in str(raised.value) and "\n" not in str(raised.value)
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())
