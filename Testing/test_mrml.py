"""MRML helpers under the Qt-free slicer-core wheel, against Slicer's own readers and writers on real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from SpinalLesionSegLib.geometry import ijk_to_ras_matrix, reorient, to_right_handed, voxel_to_ras
from SpinalLesionSegLib.image_io import read_image, write_image
from SpinalLesionSegLib.mrml.nodes import (
    image_from_volume_node,
    labelmap_from_segmentation,
    load_segmentation,
    node_ijk_to_ras,
    read_volume_node,
    save_segmentation,
    segment_ids,
    segmentation_node_from_labelmap,
    volume_node_from_image,
)
from vtkmodules.util import numpy_support


@pytest.fixture()
def scene() -> slicer.vtkMRMLScene:
    return slicer.vtkMRMLScene()


def _node_array(node) -> np.ndarray:
    data = node.GetImageData()
    return numpy_support.vtk_to_numpy(data.GetPointData().GetScalars()).reshape(data.GetDimensions()[::-1])


@pytest.mark.parametrize("name", ["t2", "t2_ms"])
def test_our_ijk_to_ras_equals_slicers_reader(scene, name: str, t2_path: Path, t2_ms_path: Path) -> None:
    """Slicer's reader and our SimpleITK path give the same matrix and voxels for the same file."""
    path = {"t2": t2_path, "t2_ms": t2_ms_path}[name]
    node = read_volume_node(scene, path)
    image = read_image(path)
    # Both files are left-handed, so Slicer stores them with k reversed; our conversion of that grid must match
    # the node's matrix exactly, and the voxels must line up one for one.
    ours = ijk_to_ras_matrix(to_right_handed(image))
    np.testing.assert_allclose(node_ijk_to_ras(node), ours, atol=1e-5)
    assert np.array_equal(_node_array(node), sitk.GetArrayViewFromImage(to_right_handed(image)))
    # The file's own grid describes the same physical voxels.
    file_matrix = ijk_to_ras_matrix(image)
    nk = image.GetSize()[2]
    np.testing.assert_allclose(voxel_to_ras(file_matrix, (3, 4, 0)), voxel_to_ras(ours, (3, 4, nk - 1)), atol=1e-4)


def test_right_handed_file_matrix_equals_node_matrix_without_flip(scene, t2_path: Path, tmp_path: Path) -> None:
    image = reorient(read_image(t2_path), "RAS")
    path = write_image(image, tmp_path / "t2_ras.nii.gz")
    node = read_volume_node(scene, path)
    np.testing.assert_allclose(node_ijk_to_ras(node), ijk_to_ras_matrix(image), atol=1e-5)
    assert np.array_equal(_node_array(node), sitk.GetArrayViewFromImage(image))


def test_volume_node_round_trip_matches_slicer_reader(scene, t2_ms_path: Path) -> None:
    image = read_image(t2_ms_path)
    ours = volume_node_from_image(scene, image, "ours")
    theirs = read_volume_node(scene, t2_ms_path)
    np.testing.assert_allclose(node_ijk_to_ras(ours), node_ijk_to_ras(theirs), atol=1e-5)
    assert np.array_equal(_node_array(ours), _node_array(theirs))
    back = image_from_volume_node(ours)
    # Same physical image: resampling the round-tripped image onto the original grid changes nothing.
    resampled = sitk.Resample(back, image, sitk.Transform(), sitk.sitkNearestNeighbor)
    assert np.array_equal(sitk.GetArrayViewFromImage(resampled), sitk.GetArrayViewFromImage(image))


def test_segmentation_seg_nrrd_round_trip(scene, t2_path: Path, tmp_path: Path) -> None:
    volume = read_volume_node(scene, t2_path)
    image = image_from_volume_node(volume)
    labels_array = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    labels_array[20:24, 30:33, 25:29] = 1  # a "lesion"
    labels_array[40, 10, 5] = 1  # a one-voxel lesion elsewhere
    labels_array[5:8, 5:9, 5:7] = 2  # a second structure
    labels = sitk.GetImageFromArray(labels_array)
    labels.CopyInformation(image)
    segmentation = segmentation_node_from_labelmap(
        scene, labels, {1: "MS lesion", 2: "Spinal cord"}, "t2 lesions", reference_volume=volume
    )
    names = [segmentation.GetSegmentation().GetSegment(i).GetName() for i in segment_ids(segmentation)]
    assert names == ["MS lesion", "Spinal cord"]

    path = save_segmentation(segmentation, tmp_path / "t2 lesions.seg.nrrd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t2 lesions.seg.nrrd"]
    loaded = load_segmentation(scene, path)
    loaded_names = [loaded.GetSegmentation().GetSegment(i).GetName() for i in segment_ids(loaded)]
    assert loaded_names == names
    back = labelmap_from_segmentation(loaded, volume)
    np.testing.assert_allclose(ijk_to_ras_matrix(back), ijk_to_ras_matrix(image), atol=1e-6)
    assert np.array_equal(sitk.GetArrayViewFromImage(back), labels_array)


def test_save_segmentation_refuses_other_suffixes(scene, tmp_path: Path) -> None:
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "s")
    with pytest.raises(ValueError, match=".seg.nrrd"):
        save_segmentation(segmentation, tmp_path / "s.nrrd")
