"""The annotators' case list (mrml/case_list.py) and manual masks (batch/labels.py), headless under slicer-core, on a
BIDS dataset built from real MRI with pre-labels written here: statuses, loading a case on Slicer's own grid, a
correction saved on the image's grid with its sidecar, the overwrite rule, and Next/Previous with autosave."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from bids_data import build_bids
from conftest import MODULE_DIR
from SpinalLesionSegLib import defaults
from SpinalLesionSegLib.batch.labels import (
    LabelWriter,
    ManualMaskExists,
    compare_masks,
    manual_sidecar,
    manual_sidecar_path,
    on_image_grid,
)
from SpinalLesionSegLib.batch.records import ImageRecord, write_record
from SpinalLesionSegLib.bids import find_images
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.geometry import is_right_handed, to_right_handed
from SpinalLesionSegLib.image_io import read_image, same_grid, sha256_file
from SpinalLesionSegLib.inference.case import output_paths
from SpinalLesionSegLib.mrml.case_list import (
    CORRECTED,
    FAILED_QC,
    NOT_RUN,
    PRELABELLED,
    SLIDER_DECIMALS,
    CaseList,
    list_cases,
)
from SpinalLesionSegLib.mrml.nodes import node_ijk_to_ras, read_volume_node
from SpinalLesionSegLib.mrml.panel import PanelLogic
from SpinalLesionSegLib.mrml.results import (
    lesion_segment_id,
    node_array,
    segment_mask,
    segment_was_edited,
    write_segment_mask,
)

MODEL_SHA = "ab" * 32
ORDER = ["sub-01_T2w", "sub-02_ses-01_T2w", "sub-02_ses-02_acq-ax_T2w", "sub-03_T2w"]


def _ball(reference: sitk.Image, centre_kji: tuple[int, int, int], radius: float) -> np.ndarray:
    grid = np.indices(tuple(reversed(reference.GetSize())))
    return sum((g - c) ** 2 for g, c in zip(grid, centre_kji)) <= radius ** 2


def _image(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def _prelabel(image_path: Path, stem: str, lesions: np.ndarray) -> None:
    """What ``batch`` publishes for one image: mask, soft map (0.9 in lesions, a faint 0.3 blob), sidecar last."""
    folder = image_path.parents[0]
    root = next(p for p in image_path.parents if (p / "dataset_description.json").exists())
    out = root / "derivatives" / "spinal-lesion-seg" / folder.relative_to(root)
    out.mkdir(parents=True, exist_ok=True)
    reference = sitk.ReadImage(str(image_path))
    paths = output_paths(out, stem)
    soft = np.where(lesions, 0.9, 0.0).astype(np.float32)
    sitk.WriteImage(_image(lesions.astype(np.uint8), reference), str(paths["lesion_seg"]), useCompression=True)
    sitk.WriteImage(_image(soft, reference), str(paths["lesion_soft"]), useCompression=True)
    sidecar = {"model": {"name": "demo", "fingerprint": MODEL_SHA}, "threshold": 0.5,
               "written_sha256": {r: sha256_file(paths[r]) for r in ("lesion_seg", "lesion_soft")},
               "GeneratedBy": [{"Name": "SpinalLesionSeg", "Version": "0.9.0"}]}
    paths["sidecar"].write_text(json.dumps(sidecar))


@pytest.fixture()
def dataset(tmp_path: Path, shared_data: Path) -> SimpleNamespace:
    """build_bids + pre-labels of sub-01 (two lesions in the cord) and sub-02_ses-02 (one), a fails list naming
    sub-02_ses-02 and a file of another dataset, and a failed batch record for the broken sub-03."""
    root = tmp_path / "bids"
    paths = build_bids(root, shared_data)
    cord = sitk.GetArrayFromImage(sitk.ReadImage(str(paths["cord"]))) > 0
    t2 = sitk.ReadImage(str(paths["sub-01"]))
    centres = [tuple(np.argwhere(cord[:, j, :]).mean(0).round().astype(int)) for j in (12, 40)]
    a, b = (_ball(t2, (k, j, i), 2) & cord for (k, i), j in zip(centres, (12, 40)))
    _prelabel(paths["sub-01"], "sub-01_T2w", a | b)
    axial = sitk.ReadImage(str(paths["sub-02_ses-02"]))
    _prelabel(paths["sub-02_ses-02"], "sub-02_ses-02_acq-ax_T2w", _ball(axial, (9, 48, 48), 3))
    fails = tmp_path / "qc_fail.yml"
    fails.write_text("FILES_LESION:\n- sub-02/ses-02/anat/sub-02_ses-02_acq-ax_T2w.nii.gz\n- sub-99/anat/x.nii.gz\n")
    broken = find_images(root)[-1]
    write_record(root, ImageRecord.for_image(broken, "failed", error="truncated file"))
    return SimpleNamespace(root=root, paths=paths, fails=fails, lesion_a=a, lesion_b=b, cord=cord)


class Clock:
    """A monotonic clock the test advances (s)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture()
def opened(dataset, mrml_scene):
    clock = Clock()
    cases = CaseList(mrml_scene, clock=clock, now=lambda: datetime(2026, 3, 4, 5, 6, 7))
    cases.open(dataset.root, dataset.fails)
    p = SimpleNamespace(inputVolume=None, softMap=None, segmentation=None, threshold=0.3, roiNode=object(),
                        levelsNode=object())
    return cases, p, clock


def _on_node_grid(file_array: np.ndarray, image: sitk.Image) -> np.ndarray:
    """A file-grid ``[k, j, i]`` array on the grid Slicer holds the image on (k reversed for a left-handed file)."""
    return file_array if is_right_handed(image) else file_array[::-1]


def _edit(p, image: sitk.Image, change) -> None:
    """A Segment Editor-style edit of the lesion segment; ``change`` maps the mask (on the file's grid) to the new
    one."""
    segment_id = lesion_segment_id(p.segmentation)
    now = _on_node_grid(segment_mask(p.segmentation, segment_id, p.inputVolume), image)  # the flip is its inverse
    write_segment_mask(p.segmentation, segment_id, _on_node_grid(change(now.copy()), image), p.inputVolume)


def test_open_lists_every_image_with_its_status(dataset, opened) -> None:
    cases, _, _ = opened
    assert [c.image.stem for c in cases.cases] == ORDER
    assert [c.status for c in cases.cases] == [PRELABELLED, CORRECTED, FAILED_QC, NOT_RUN]
    assert cases.unmatched == ["sub-99/anat/x.nii.gz"]
    assert "batch failed: truncated file" in cases.cases[3].details
    assert cases.cases[0].prelabel.model == "demo" and cases.cases[0].prelabel.fingerprint == MODEL_SHA
    assert cases.cases[0].label == "sub-01_T2w  [pre-labelled]"
    assert [c.status for c in CaseList(slicer.vtkMRMLScene()).open(dataset.root)][2] == PRELABELLED


def test_a_loaded_case_is_on_slicers_own_grid_of_the_image(dataset, opened, mrml_scene) -> None:
    cases, p, _ = opened
    position = cases.go(p, 0, "")
    image = read_image(dataset.paths["sub-01"])
    assert not is_right_handed(image), "the real T2w is PSR: the k flip between file and node is exercised"
    slicers = read_volume_node(mrml_scene, dataset.paths["sub-01"], "as Slicer reads it")
    np.testing.assert_allclose(node_ijk_to_ras(p.inputVolume), node_ijk_to_ras(slicers), atol=1e-6)
    np.testing.assert_array_equal(node_array(p.inputVolume), node_array(slicers))
    np.testing.assert_allclose(node_ijk_to_ras(p.softMap), node_ijk_to_ras(slicers), atol=1e-6)
    expected = _on_node_grid(dataset.lesion_a | dataset.lesion_b, image)
    np.testing.assert_array_equal(segment_mask(p.segmentation, lesion_segment_id(p.segmentation), p.inputVolume),
                                  expected)
    np.testing.assert_array_equal(node_array(p.softMap) >= 0.5, expected)
    assert p.threshold == 0.5 and p.segmentation.GetAttribute("SpinalLesionSeg.Threshold") == "0.5"
    assert p.roiNode is None and p.levelsNode is None, "the previous image's ROI and levels do not carry over"
    assert position is not None and not cases.edited(p)
    assert not segment_was_edited(p.segmentation, lesion_segment_id(p.segmentation)), "a pre-label is automatic"
    assert p.inputVolume.GetName() == "sub-01_T2w" and p.inputVolume.GetDisplayNode() is not None


def test_a_saved_correction_is_on_the_image_grid_with_its_counts(dataset, opened) -> None:
    cases, p, clock = opened
    cases.go(p, 0, "")
    image = read_image(dataset.paths["sub-01"])
    new = _ball(image, (25, 26, 31), 1.5) & ~dataset.lesion_a & ~dataset.lesion_b  # in the cord, between the two
    _edit(p, image, lambda mask: (mask & ~dataset.lesion_a) | new)
    assert cases.edited(p)
    clock.t += 42.0
    path, correction = cases.save(p, "Ann Otator")

    assert path == dataset.root / "derivatives/labels/sub-01/anat/sub-01_T2w_lesion-manual.nii.gz"
    saved = read_image(path)
    assert saved.GetSize() == image.GetSize() and same_grid(saved, image, tolerance=1e-6)
    assert saved.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(saved), (dataset.lesion_b | new).astype(np.uint8))
    sidecar = json.loads(manual_sidecar_path(path).read_text())
    assert sidecar["SpatialReference"] == "orig"
    assert sidecar["GeneratedBy"] == [
        {"Name": "SpinalLesionSeg", "Version": "0.9.0", "Model": "demo", "ModelSHA256": MODEL_SHA},
        {"Name": "Manual", "Author": "Ann Otator", "Date": "2026-03-04 05:06:07"}]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", sidecar["GeneratedBy"][1]["Date"])
    assert sidecar["Correction"] == {"lesions_added": 1, "lesions_removed": 1, "voxels_added": int(new.sum()),
                                     "voxels_removed": int(dataset.lesion_a.sum()), "seconds_spent": 42.0}
    assert correction.lesions_added == 1 and not cases.edited(p)
    assert cases.cases[0].status == CORRECTED and list_cases(dataset.root)[0][0].status == CORRECTED

    _edit(p, image, lambda mask: mask & ~new)  # the same session saves again: replaced without a question
    clock.t += 8.0
    cases.save(p, "Ann Otator")
    again = json.loads(manual_sidecar_path(path).read_text())["Correction"]
    assert again == {"lesions_added": 0, "lesions_removed": 1, "voxels_added": 0,
                     "voxels_removed": int(dataset.lesion_a.sum()), "seconds_spent": 50.0}

    sitk.WriteImage(_image(dataset.cord.astype(np.uint8), image), str(path))  # someone else writes it meanwhile
    with pytest.raises(ManualMaskExists) as refused:
        cases.save(p, "Ann Otator")
    assert refused.value.path == str(path) and sha256_file(path) != "" and read_image(path) is not None
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(path)), dataset.cord.astype(np.uint8))
    cases.save(p, "Ann Otator", overwrite=True)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(path)), dataset.lesion_b.astype(np.uint8))


def test_a_save_needs_an_author_and_the_loaded_case(dataset, opened) -> None:
    cases, p, _ = opened
    with pytest.raises(InputError, match="no case is loaded"):
        cases.save(p, "Ann")
    cases.go(p, 0, "")
    with pytest.raises(InputError, match="no author"):
        cases.save(p, "  ")
    assert not (dataset.root / "derivatives/labels/sub-01/anat/sub-01_T2w_lesion-manual.nii.gz").exists()
    image = read_image(dataset.paths["sub-01"])
    _edit(p, image, lambda mask: mask & ~dataset.lesion_a)
    p.inputVolume = read_volume_node(p.segmentation.GetScene(), dataset.paths["sub-01"], "another volume")
    p.segmentation = None  # the panel shows something else: the case's own segmentation is still saved
    assert cases.edited(p)
    path, _ = cases.save(p, "Ann")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(path)), dataset.lesion_b.astype(np.uint8))
    cases.scene.RemoveNode(cases.current.segmentation)  # the user deleted it
    with pytest.raises(InputError, match="no lesion segmentation any more"):
        cases.save(p, "Ann")


def test_another_annotators_mask_is_resumed_and_replaced_only_when_confirmed(dataset, opened) -> None:
    cases, p, _ = opened
    manual = dataset.paths["manual"]
    before = sha256_file(manual)
    cases.go(p, 1, "")
    image = read_image(dataset.paths["sub-02_ses-01"])
    theirs = sitk.GetArrayFromImage(read_image(manual)) > 0
    np.testing.assert_array_equal(segment_mask(p.segmentation, lesion_segment_id(p.segmentation), p.inputVolume),
                                  _on_node_grid(theirs, image))
    assert p.softMap is None, "not pre-labelled: no soft map"
    assert segment_was_edited(p.segmentation, lesion_segment_id(p.segmentation)), \
        "a person's mask: the live threshold must ask before replacing it"
    with pytest.raises(ManualMaskExists):
        cases.save(p, "Ann")
    assert sha256_file(manual) == before
    _, correction = cases.save(p, "Ann", overwrite=True)
    assert correction.lesions_added == 1 and correction.voxels_added == int(theirs.sum())
    made_by = json.loads(manual_sidecar_path(manual).read_text())["GeneratedBy"]
    assert made_by == [{"Name": "Manual", "Author": "Ann", "Date": "2026-03-04 05:06:07"}]
    cases.save(p, "Ann")  # ours now


def test_next_and_previous_save_edited_cases_and_free_the_last_one(dataset, opened, mrml_scene) -> None:
    cases, p, _ = opened
    volumes = mrml_scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    displays = mrml_scene.GetNumberOfNodesByClass("vtkMRMLDisplayNode")
    cases.go(p, cases.neighbour(+1), "Ann")
    assert cases.index == 0 and cases.neighbour(-1) is None
    image = read_image(dataset.paths["sub-01"])
    _edit(p, image, lambda mask: mask & ~dataset.lesion_b)
    first = cases.current
    cases.go(p, cases.neighbour(+1), "Ann")  # autosaved on the way
    saved = dataset.root / "derivatives/labels/sub-01/anat/sub-01_T2w_lesion-manual.nii.gz"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(saved)), dataset.lesion_a.astype(np.uint8))
    assert cases.index == 1 and cases.cases[0].status == CORRECTED
    assert first.volume.GetScene() is None and first.segmentation.GetScene() is None and first.soft.GetScene() is None
    assert mrml_scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == volumes + 1  # this case's image only
    assert mrml_scene.GetNumberOfNodesByClass("vtkMRMLDisplayNode") == displays + 2  # its image and segmentation

    theirs = sha256_file(dataset.paths["manual"])
    _edit(p, read_image(dataset.paths["sub-02_ses-01"]), lambda mask: np.zeros_like(mask))
    with pytest.raises(ManualMaskExists):
        cases.go(p, cases.neighbour(+1), "Ann")
    assert cases.index == 1, "a refused save does not move"
    cases.go(p, cases.neighbour(+1), "Ann", save=False)  # "No": keep their file, drop this case's changes
    assert cases.index == 2 and sha256_file(dataset.paths["manual"]) == theirs
    cases.go(p, cases.neighbour(-1), "Ann")  # only looked at: nothing written
    assert not (dataset.root / "derivatives/labels/sub-02/ses-02").exists()
    cases.go(p, 2, "Ann")
    with pytest.raises(InputError, match="sub-03_T2w"):
        cases.go(p, cases.neighbour(+1), "Ann")
    assert cases.index == 2 and p.inputVolume.GetName() == "sub-02_ses-02_acq-ax_T2w" and cases.neighbour(+2) is None
    cases.close(p, "Ann")
    assert cases.current is None and mrml_scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == volumes


def test_the_axial_oblique_case_saves_on_its_own_grid(dataset, opened) -> None:
    cases, p, _ = opened
    cases.go(p, 2, "")
    image = read_image(dataset.paths["sub-02_ses-02"])
    _edit(p, image, lambda mask: mask | _ball(image, (3, 20, 20), 2))
    path, correction = cases.save(p, "Ann")
    saved = read_image(path)
    assert same_grid(saved, image, tolerance=1e-6) and correction.lesions_added == 1
    expected = _ball(image, (9, 48, 48), 3) | _ball(image, (3, 20, 20), 2)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(saved), expected.astype(np.uint8))


def test_change_counts_follow_connected_components() -> None:
    before = np.zeros((1, 5, 12), bool)
    before[0, 1:3, 0:2] = True  # kept, grown
    before[0, 1:3, 4:6] = True  # removed
    after = np.zeros_like(before)
    after[0, 1:4, 0:3] = True
    after[0, 0, 9:11] = True  # added
    counts = compare_masks(before, after, 12.34)
    assert (counts.lesions_added, counts.lesions_removed, counts.voxels_added, counts.voxels_removed) == (1, 1, 7, 4)
    assert counts.seconds_spent == 12.3


def test_a_mask_goes_back_onto_a_left_handed_files_grid_exactly(t2_path: Path) -> None:
    image = read_image(t2_path)
    on_node = to_right_handed(image)
    array = np.zeros(tuple(reversed(image.GetSize())), np.uint8)
    array[1, 2, 3] = 1
    saved = on_image_grid(_image(_on_node_grid(array, image), on_node), image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(saved), array)
    assert saved.GetOrigin() == image.GetOrigin() and saved.GetDirection() == image.GetDirection()
    with pytest.raises(InputError, match="not on the image's voxel grid"):
        on_image_grid(sitk.Image([4, 4, 4], sitk.sitkUInt8), image)


def test_the_writer_replaces_only_what_it_wrote(dataset) -> None:
    image = find_images(dataset.root)[0]
    mask = on_image_grid(_image(dataset.lesion_a.astype(np.uint8), read_image(image.path)), read_image(image.path))
    sidecar = manual_sidecar(None, "Ann", datetime(2026, 1, 1), compare_masks(dataset.lesion_a, dataset.lesion_a, 0))
    first, second = LabelWriter(), LabelWriter()
    path = first.save(image, mask, sidecar)
    first.save(image, mask, sidecar)
    with pytest.raises(ManualMaskExists):
        second.save(image, mask, sidecar)  # another session
    other = on_image_grid(_image(dataset.lesion_b.astype(np.uint8), mask), mask)
    assert second.save(image, other, sidecar, overwrite=True) == path and second.wrote(path)
    assert not first.wrote(path), "its file was replaced since: no longer what it wrote"
    assert sorted(p.name for p in path.parent.iterdir() if "lesion" in p.name) == ["sub-01_T2w_lesion-manual.json",
                                                             "sub-01_T2w_lesion-manual.nii.gz"]


def test_the_slider_decimals_are_the_panels() -> None:
    ui = ET.parse(MODULE_DIR / "Resources" / "UI" / "SpinalLesionSeg.ui").getroot()
    slider = next(w for w in ui.iter("widget") if w.get("name") == "thresholdSliderWidget")
    decimals = next(p for p in slider.findall("property") if p.get("name") == "decimals")
    assert int(decimals.find("number").text) == SLIDER_DECIMALS
    assert defaults.THRESHOLD == round(defaults.THRESHOLD, SLIDER_DECIMALS)


def test_the_panels_review_works_on_a_loaded_case(dataset, opened, mrml_scene) -> None:
    """The loaded case is the panel's usual review: the lesion table, reject (undoable), the live threshold."""
    cases, p, _ = opened
    cases.go(p, 0, "")
    p.candidateThreshold = defaults.CANDIDATE_THRESHOLD
    logic = PanelLogic(mrml_scene)
    assert logic.review_table(p).GetNumberOfRows() == 2
    assert logic.applied_threshold(p) == 0.5 and not logic.lesion_segment_edited(p)
    logic.reject_lesion(p, 1)
    assert cases.edited(p) and logic.can_undo(p)
    _, correction = cases.save(p, "Ann")
    assert (correction.lesions_removed, correction.lesions_added) == (1, 0)
    logic.apply_threshold(p, 0.5)  # back to the pre-label, from the soft map
    assert cases.edited(p), "differs from what was last saved"
    cases.close(p, "Ann")
    saved = read_image(dataset.root / "derivatives/labels/sub-01/anat/sub-01_T2w_lesion-manual.nii.gz")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(saved), (dataset.lesion_a | dataset.lesion_b).astype(np.uint8))


def test_a_fails_list_can_be_added_while_a_case_is_loaded(dataset, opened, tmp_path, shared_data) -> None:
    cases, p, _ = opened
    cases.open(dataset.root)
    cases.go(p, 2, "")
    assert cases.cases[2].status == PRELABELLED
    cases.open(dataset.root, dataset.fails)
    assert cases.index == 2 and cases.cases[2].status == FAILED_QC
    other = tmp_path / "other"
    build_bids(other, shared_data)
    with pytest.raises(InputError, match="another dataset"):
        cases.open(other)
    cases.close(p, "")
    assert cases.open(other) and cases.index is None


def test_a_case_resumed_in_a_later_session_adds_up_its_time(dataset, opened, mrml_scene) -> None:
    cases, p, clock = opened
    cases.go(p, 0, "")
    clock.t += 30.0
    path, _ = cases.save(p, "Ann")
    cases.close(p, "Ann")
    later = CaseList(mrml_scene, clock=clock)  # Slicer restarted: this file is no longer "ours"
    later.open(dataset.root)
    later.go(p, 0, "")
    assert segment_was_edited(p.segmentation, lesion_segment_id(p.segmentation)), "resumed from the manual mask"
    clock.t += 12.0
    with pytest.raises(ManualMaskExists):
        later.save(p, "Ann")
    _, correction = later.save(p, "Ann", overwrite=True)
    assert correction.seconds_spent == 42.0
    assert json.loads(manual_sidecar_path(path).read_text())["Correction"]["seconds_spent"] == 42.0
