"""DICOM in and DICOM SEG out, on a real MR series written from the shared real T2w (Testing/dicom_data.py).

Reading: the volume a DICOM folder gives has the source's voxels at the source's physical positions; broken series
(a missing slice, mixed orientations, two series, duplicate positions) are refused in one line. Predicting: the
NIfTI outputs are named after the series and lie on its grid, and the SEG and the fractional SEG read back (with
highdicom, and with dcmqi's segimage2itkimage) give the NIfTI result's voxels at the same positions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import MODULE_DIR
from dicom_data import write_mr_series
from SpinalLesionSegLib import terminology
from SpinalLesionSegLib.dicom_series import read_series
from SpinalLesionSegLib.errors import InputError

DEMO = MODULE_DIR / "Resources" / "Models" / "demo"


@pytest.fixture(scope="module")
def source(t2_path: Path) -> sitk.Image:
    return sitk.ReadImage(str(t2_path))


@pytest.fixture(scope="module")
def series(source: sitk.Image, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("dicom") / "MR_sag_T2"
    return folder, write_mr_series(source, folder)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "SpinalLesionSegLib", *args], capture_output=True, text=True,
                          timeout=600, check=False)


def test_the_volume_has_the_source_voxels_at_the_source_positions(source: sitk.Image, series: tuple) -> None:
    folder, uids = series
    image, found = read_series(folder)
    assert found.uid == uids["series"] and found.stem() == "sag_T2_TSE_s5" and len(found.files) == 52
    # The source's direction is left-handed (PSR): the DICOM stack runs along the slice normal instead, so the same
    # voxels come in another order. Resampling the source onto the DICOM grid by nearest neighbour must give them.
    on_dicom_grid = sitk.Resample(source, image, sitk.Transform(), sitk.sitkNearestNeighbor, -1.0, sitk.sitkFloat64)
    expected = sitk.GetArrayFromImage(on_dicom_grid)
    assert expected.min() >= 0  # every DICOM voxel centre is a source voxel centre
    assert np.allclose(sitk.GetArrayFromImage(image), expected, atol=uids["slope"])
    corners = {tuple(np.round(img.TransformContinuousIndexToPhysicalPoint([c * (s - 1) for c, s in
                                                                          zip(corner, img.GetSize())]), 4))
               for img in (source, image) for corner in np.ndindex(2, 2, 2)}
    assert len(corners) == 8  # the two grids span the same box


@pytest.mark.parametrize("damage, problem", [
    ("missing", "irregular slice spacing"), ("orientation", "mixed slice orientations"),
    ("duplicate", "two images at the same slice position"), ("empty", "is a folder with no DICOM image series"),
])
def test_broken_series_are_refused_in_one_line(series: tuple, tmp_path: Path, damage: str, problem: str) -> None:
    folder = tmp_path / "broken"
    shutil.copytree(series[0], folder)
    files = sorted(folder.glob("*.dcm"))
    if damage == "missing":
        files[20].unlink()
    elif damage == "orientation":
        dataset = pydicom.dcmread(files[5])
        dataset.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        dataset.save_as(files[5])
    elif damage == "duplicate":
        shutil.copy(files[3], folder / "copy.dcm")
        dataset = pydicom.dcmread(folder / "copy.dcm")
        dataset.SOPInstanceUID = pydicom.uid.generate_uid()
        dataset.save_as(folder / "copy.dcm")
    else:
        for path in files:
            path.unlink()
        (folder / "notes.txt").write_text("not DICOM")
    result = _cli("info", str(folder))
    assert result.returncode == 2 and problem in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and str(folder) in result.stderr


def test_two_series_need_a_series_uid(source: sitk.Image, series: tuple, tmp_path: Path) -> None:
    folder = tmp_path / "study"
    shutil.copytree(series[0], folder / "a")
    axial = write_mr_series(source[:, :, 10:40], folder / "b", description="ax T2", series_number=7,
                            study_uid=str(series[1]["study"]))
    result = _cli("info", str(folder))
    assert result.returncode == 2 and "holds 2 image series; choose one with --series-uid" in result.stderr
    assert series[1]["series"] in result.stderr and "(ax T2, 30 images)" in result.stderr
    chosen = _cli("info", str(folder), "--series-uid", str(axial["series"]), "--json")
    assert chosen.returncode == 0, chosen.stderr
    described = json.loads(chosen.stdout)[str(folder)]
    assert described["size"] == [60, 55, 30] and described["dicom"]["output_stem"] == "ax_T2_s7"
    with pytest.raises(InputError, match="holds no series 1.2.3"):
        read_series(folder, ["1.2.3"])


def test_headers_are_read_once_per_file_version(series: tuple, tmp_path: Path) -> None:
    """A folder's headers and file digests are cached per file (size, modification time): reading the series again
    reads no header, and a file rewritten since is read again."""
    from SpinalLesionSegLib import dicom_series

    folder = tmp_path / "copy"
    shutil.copytree(series[0], folder)
    first = dicom_series.choose_series(folder)
    digest = first.digest()
    misses = dicom_series._image_header.cache_info().misses
    again = dicom_series.choose_series(folder)
    assert dicom_series._image_header.cache_info().misses == misses and again.digest() == digest
    changed = sorted(folder.glob("*.dcm"))[0]
    dataset = pydicom.dcmread(changed)
    dataset.SeriesDescription = "renamed"
    dataset.save_as(changed)
    os.utime(changed, ns=(1, 1))  # another version even where the file system's clock is coarse
    rescanned = dicom_series.find_series(folder)
    assert dicom_series._image_header.cache_info().misses == misses + 1
    described = [str(header["SeriesDescription"]) for header in rescanned[0].headers]
    assert described.count("renamed") == 1 and described.count("sag T2 TSE") == len(described) - 1


@pytest.fixture(scope="module")
def predicted(series: tuple, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("predicted")
    result = _cli("predict", str(series[0]), "-o", str(out), "--model", str(DEMO), "--device", "cpu",
                  "--folds", "0", "--uid-root", "1.2.826.0.1.3680043.10.1234")
    assert result.returncode == 0, result.stderr
    return {"out": out, "stem": out / "sag_T2_TSE_s5", "result": result}


def test_predict_names_outputs_after_the_series_and_records_it(predicted: dict, series: tuple) -> None:
    stem = predicted["stem"]
    sidecar = json.loads(Path(f"{stem}_lesion_seg.json").read_text())
    source = sidecar["Sources"][0]
    assert source["dicom"]["SeriesInstanceUID"] == series[1]["series"] and source["dicom"]["NumberOfImages"] == 52
    assert len(source["sha256"]) == 64
    image = read_series(series[0])[0]
    for name in ("lesion_seg", "lesion_soft"):
        written = sitk.ReadImage(f"{stem}_{name}.nii.gz")
        assert written.GetSize() == image.GetSize()
        assert np.allclose(written.GetOrigin(), image.GetOrigin(), atol=1e-4)
        assert np.allclose(written.GetDirection(), image.GetDirection(), atol=1e-6)
    uids = sidecar["dicom_outputs"]
    assert {"dicom_seg", "dicom_soft", "dicom_sr", "dicom_preview_1"} <= set(uids)
    assert all(u.startswith("1.2.826.0.1.3680043.10.1234.") for u in uids.values())


def _positions(datasets: list[pydicom.Dataset]) -> list[tuple[float, ...]]:
    return [tuple(round(float(v), 3) for v in ds.ImagePositionPatient) for ds in datasets]


def test_the_seg_gives_back_the_nifti_result(predicted: dict, series: tuple) -> None:
    stem = predicted["stem"]
    seg = hd.seg.segread(f"{stem}_lesion_seg.dcm")
    sources = [pydicom.dcmread(p) for p in read_series(series[0])[1].files]
    assert seg.segmentation_type == hd.seg.SegmentationTypeValues.BINARY
    assert seg.StudyInstanceUID == series[1]["study"] and seg.PatientID == "P-0042"
    assert seg.FrameOfReferenceUID == series[1]["frame_of_reference"]
    description = seg.get_segment_description(1)
    assert description.segment_label == terminology.LESION_SEGMENT_NAME
    assert description.segmented_property_type.value == terminology.INFLAMMATION.value
    # Frame by frame, in the source's slice order: the SEG's frame for source image k is the NIfTI's slice k.
    mask = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[ds.SOPInstanceUID for ds in sources], segment_numbers=[1],
        assert_missing_frames_are_empty=True)[..., 0]
    nifti = sitk.GetArrayFromImage(sitk.ReadImage(f"{stem}_lesion_seg.nii.gz"))
    assert mask.shape == nifti.shape and np.array_equal(mask != 0, nifti != 0) and nifti.any()
    # Each frame lies where the source image it references lies.
    where = dict(zip((ds.SOPInstanceUID for ds in sources), _positions(sources)))
    for frame in seg.PerFrameFunctionalGroupsSequence:
        plane = tuple(round(float(v), 3) for v in frame.PlanePositionSequence[0].ImagePositionPatient)
        referenced = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert plane == where[referenced]


def test_the_fractional_seg_gives_back_the_soft_map_within_its_step(predicted: dict, series: tuple) -> None:
    stem = predicted["stem"]
    seg = hd.seg.segread(f"{stem}_lesion_soft.dcm")
    assert seg.segmentation_type == hd.seg.SegmentationTypeValues.FRACTIONAL
    assert seg.SegmentationFractionalType == "PROBABILITY" and seg.MaximumFractionalValue == 255
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in read_series(series[0])[1].files]
    soft = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[ds.SOPInstanceUID for ds in sources], segment_numbers=[1],
        rescale_fractional=True, assert_missing_frames_are_empty=True)[..., 0]
    nifti = sitk.GetArrayFromImage(sitk.ReadImage(f"{stem}_lesion_soft.nii.gz"))
    assert np.max(np.abs(soft - nifti)) <= 0.5 / 255 + 1e-6


def test_dcmqi_reads_the_seg_as_the_nifti_result(predicted: dict, tmp_path: Path) -> None:
    tool = shutil.which("segimage2itkimage") or str(Path(sys.executable).parent / "segimage2itkimage")
    if not Path(tool).exists():
        pytest.skip("dcmqi is not installed (pip install dcmqi)")
    stem = predicted["stem"]
    result = subprocess.run([tool, "--inputDICOM", f"{stem}_lesion_seg.dcm", "--outputDirectory", str(tmp_path),
                             "--outputType", "nifti", "--prefix", "seg"], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    read = sitk.ReadImage(str(tmp_path / "seg-1.nii.gz"))
    nifti = sitk.ReadImage(f"{stem}_lesion_seg.nii.gz")
    on_nifti = sitk.Resample(read, nifti, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    assert np.array_equal(sitk.GetArrayFromImage(on_nifti) != 0, sitk.GetArrayFromImage(nifti) != 0)
    assert np.allclose(read.GetSpacing(), nifti.GetSpacing(), atol=1e-4)
    meta = json.loads((tmp_path / "seg-meta.json").read_text())
    assert meta["segmentAttributes"][0][0]["SegmentLabel"] == terminology.LESION_SEGMENT_NAME


def test_dicom_outputs_need_a_dicom_input(t2_path: Path, tmp_path: Path) -> None:
    result = _cli("predict", str(t2_path), "-o", str(tmp_path), "--model", str(DEMO), "--device", "cpu",
                  "--folds", "0", "--dicom-out")
    assert result.returncode == 2 and "is not a DICOM series" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*lesion*"))


def test_the_report_and_preview_describe_the_nifti_result(predicted: dict, series: tuple) -> None:
    """End to end: the SR's totals are the NIfTI mask's lesion count and volume (components counted here with
    scipy, 18-connected as stats), and the preview has the overview plus a close-up per lesion (at most four)."""
    from scipy import ndimage

    stem = predicted["stem"]
    nifti = sitk.ReadImage(f"{stem}_lesion_seg.nii.gz")
    mask = sitk.GetArrayFromImage(nifti) != 0
    count = ndimage.label(mask, ndimage.generate_binary_structure(3, 2))[1]
    document = hd.sr.srread(f"{stem}_lesion_sr.dcm")
    groups = {g.tracking_identifier: g for g in document.content.get_volumetric_roi_measurement_groups()}
    totals = groups.pop("All lesions")
    (volume,) = totals.get_measurements(name=hd.sr.CodedConcept("118565006", "SCT", "Volume"))
    assert float(volume.value) == pytest.approx(mask.sum() * np.prod(nifti.GetSpacing()))
    assert len(groups) == count and document.StudyInstanceUID == series[1]["study"]
    previews = sorted(predicted["out"].glob("sag_T2_TSE_s5_preview_*.dcm"))
    assert len(previews) == 1 + min(4, count)
    shown = [pydicom.dcmread(path) for path in previews]
    assert len({ds.SeriesInstanceUID for ds in shown}) == 1 and all(ds.PatientID == "P-0042" for ds in shown)
    assert "Not for diagnostic use" in shown[0].ImageComments


def test_a_rerun_without_dicom_out_leaves_a_consistent_set(predicted: dict, series: tuple, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(predicted["out"], out)
    result = _cli("predict", str(series[0]), "-o", str(out), "--model", str(DEMO), "--device", "cpu",
                  "--folds", "0", "--no-dicom-out")
    assert result.returncode == 0, result.stderr
    assert not list(out.glob("*.dcm"))  # the older run's DICOM files went with its set
    assert json.loads((out / "sag_T2_TSE_s5_lesion_seg.json").read_text())["dicom_outputs"] is None


def test_report_and_compare_take_dicom_folders(predicted: dict, series: tuple, source: sitk.Image,
                                               tmp_path: Path) -> None:
    """report on a DICOM image adds the PDF as an Encapsulated PDF of the scan's study; compare chooses each
    folder's series from one --series-uid list (the follow-up folder also holds another series)."""
    stem = predicted["stem"]
    report = _cli("report", "--image", str(series[0]), "--lesion", f"{stem}_lesion_seg.nii.gz", "-o",
                  str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    encapsulated = pydicom.dcmread(tmp_path / "report" / "report.dcm")
    assert encapsulated.StudyInstanceUID == series[1]["study"] and encapsulated.PatientID == "P-0042"
    assert bytes(encapsulated.EncapsulatedDocument).rstrip(b"\0") == (tmp_path / "report" / "report.pdf").read_bytes()
    manifest = json.loads((tmp_path / "report" / "report.json").read_text())
    assert manifest["inputs"]["image"]["sha256"] == read_series(series[0])[1].digest()
    followup = tmp_path / "followup"
    shutil.copytree(series[0], followup / "sag")
    other = write_mr_series(source[:, :, 10:40], followup / "ax", description="ax T2", series_number=7)
    result = _cli("compare", "--baseline", str(series[0]), "--baseline-lesion", f"{stem}_lesion_seg.nii.gz",
                  "--followup", str(followup), "--followup-lesion", f"{stem}_lesion_seg.nii.gz", "--no-register",
                  "--series-uid", str(series[1]["series"]), "-o", str(tmp_path / "compare"))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "compare" / "summary.json").read_text())
    assert summary["new"] == summary["disappeared"] == 0 and summary["stable"] == summary["baseline_lesion_count"]
    assert summary["inputs"]["followup"]["sha256"] == summary["inputs"]["baseline"]["sha256"]
    ambiguous = _cli("compare", "--baseline", str(series[0]), "--baseline-lesion", f"{stem}_lesion_seg.nii.gz",
                     "--followup", str(followup), "--followup-lesion", f"{stem}_lesion_seg.nii.gz",
                     "-o", str(tmp_path / "compare2"))
    assert ambiguous.returncode == 2 and "choose one with --series-uid" in ambiguous.stderr
    assert str(other["series"]) in ambiguous.stderr
