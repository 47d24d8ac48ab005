"""MRML helpers shared by the Slicer module and the headless tests.

Every function takes the MRML scene (or a node) as an argument and uses only ``slicer.vtkMRML*`` /
``slicer.vtkSlicer*`` classes and VTK, never ``slicer.app``, ``slicer.util`` or Qt. The same code therefore runs
inside 3D Slicer and under the Qt-free ``slicer-core`` wheel in plain pytest, where it is tested against real files.

Geometry crosses the SimpleITK/MRML boundary only through :mod:`..geometry` (IJK-to-RAS matrices): this module
only copies those matrices to and from ``vtkMatrix4x4`` and never derives one itself.

Note on Slicer's file reader: when a file's voxel axes form a left-handed system (e.g. NIfTI "LAS"), Slicer's
volume reader flips the k axis so that its IJK-to-RAS matrix is right-handed; the node holds the same physical
image on a k-flipped voxel grid. :func:`volume_node_from_image` does the same (via
:func:`..geometry.to_right_handed`), so a file loaded by Slicer and the same image built by us give identical nodes
(matrix and voxels), and arrays of the input, the soft map and the segmentation line up voxel for voxel.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtkmodules.util import numpy_support

from ..geometry import ijk_to_ras_matrix, set_ijk_to_ras, to_right_handed
from ..image_io import atomic_destination


def _to_vtk_matrix(matrix: np.ndarray) -> vtk.vtkMatrix4x4:
    """Copy a 4x4 numpy matrix into a ``vtkMatrix4x4`` (VTK glue only; the geometry comes from :mod:`..geometry`)."""
    vtk_matrix = vtk.vtkMatrix4x4()
    for row in range(4):
        for col in range(4):
            vtk_matrix.SetElement(row, col, float(matrix[row, col]))
    return vtk_matrix


def node_ijk_to_ras(node: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """The 4x4 IJK-to-RAS matrix (mm) of a volume node as a numpy array, as :func:`..geometry.ijk_to_ras_matrix`
    gives it for a SimpleITK image."""
    vtk_matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(vtk_matrix)
    return np.array([[vtk_matrix.GetElement(row, col) for col in range(4)] for row in range(4)])


def volume_node_from_image(
    scene: slicer.vtkMRMLScene,
    image: sitk.Image,
    name: str,
    node_class: str = "vtkMRMLScalarVolumeNode",
) -> slicer.vtkMRMLVolumeNode:
    """Add a volume node holding ``image``'s voxels (deep copy), on the grid Slicer's reader would give the image.

    That is ``image``'s own grid when it is right-handed, else the grid with k reversed (see the module note).

    ``node_class`` is ``vtkMRMLScalarVolumeNode`` (intensities, probability maps) or
    ``vtkMRMLLabelMapVolumeNode`` (integer labels).
    """
    image = to_right_handed(image)
    array = np.ascontiguousarray(sitk.GetArrayViewFromImage(image))
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(*image.GetSize())
    scalars = numpy_support.numpy_to_vtk(array.ravel(), deep=True)
    image_data.GetPointData().SetScalars(scalars)
    node = scene.AddNewNodeByClass(node_class, name)
    node.SetAndObserveImageData(image_data)
    node.SetIJKToRASMatrix(_to_vtk_matrix(ijk_to_ras_matrix(image)))
    return node


def image_from_volume_node(node: slicer.vtkMRMLVolumeNode) -> sitk.Image:
    """A SimpleITK image (deep copy) with the node's voxels and the node's IJK-to-RAS geometry.

    Parent transforms are not applied: the image is in the node's own (untransformed) RAS space.
    """
    image_data = node.GetImageData()
    if image_data is None:
        raise ValueError(f"volume node {node.GetName()!r} has no image data")
    dims = image_data.GetDimensions()
    scalars = image_data.GetPointData().GetScalars()
    components = scalars.GetNumberOfComponents()
    array = numpy_support.vtk_to_numpy(scalars).reshape(dims[::-1] + ((components,) if components > 1 else ()))
    image = sitk.GetImageFromArray(array.copy(), isVector=components > 1)
    set_ijk_to_ras(image, node_ijk_to_ras(node))
    return image


def scalar_volumes(scene: slicer.vtkMRMLScene) -> list[slicer.vtkMRMLScalarVolumeNode]:
    """The scene's scalar volumes that are not label maps, in scene order (what the panel's volume selectors
    show; GetNthNodeByClass also matches subclasses, label maps among them)."""
    volumes = (scene.GetNthNodeByClass(n, "vtkMRMLScalarVolumeNode")
               for n in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")))
    return [volume for volume in volumes if not volume.IsA("vtkMRMLLabelMapVolumeNode")]


def read_volume_node(scene: slicer.vtkMRMLScene, path: str | os.PathLike[str], name: str | None = None,
                     node_class: str = "vtkMRMLScalarVolumeNode") -> slicer.vtkMRMLVolumeNode:
    """Load a NIfTI/NRRD file into a new volume node with Slicer's own reader (as "Add Data" would)."""
    return _read_node(scene, path, name, node_class, "vtkMRMLVolumeArchetypeStorageNode", "volume")


def _read_node(scene: slicer.vtkMRMLScene, path: str | os.PathLike[str], name: str | None, node_class: str,
               storage_class: str, what: str) -> slicer.vtkMRMLNode:
    """A new ``node_class`` node read from ``path`` by a new ``storage_class`` node, which stays attached (so
    Slicer can save the node back); both are removed again and OSError is raised when the file cannot be read.

    ``name`` defaults to the file name without its suffixes; ``what`` names the data in the error.
    """
    node = scene.AddNewNodeByClass(node_class, name or Path(path).name.split(".")[0])
    storage = scene.AddNewNodeByClass(storage_class)
    storage.SetFileName(os.fspath(path))
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise OSError(f"{path}: Slicer could not read this {what}")
    node.SetAndObserveStorageNodeID(storage.GetID())
    return node


def segmentation_node_from_labelmap(
    scene: slicer.vtkMRMLScene,
    labels: sitk.Image,
    segment_names: Mapping[int, str],
    name: str,
    reference_volume: slicer.vtkMRMLVolumeNode | None = None,
) -> slicer.vtkMRMLSegmentationNode:
    """Add a segmentation node with one segment per label value of an integer ``labels`` image.

    ``segment_names`` maps label value -> segment name (e.g. ``{1: "MS lesion"}``); label values not in it are
    still imported (nothing is dropped) and keep Slicer's default names. The segmentation's reference geometry is
    ``reference_volume`` when given (so the Segment Editor edits on the source volume's grid), else ``labels``.
    """
    label_node = volume_node_from_image(scene, sitk.Cast(labels, sitk.sitkInt16), f"{name} labels",
                                        "vtkMRMLLabelMapVolumeNode")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume or label_node)
    try:
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(label_node, segmentation):
            raise RuntimeError(f"could not import label map into segmentation {name!r}")
    finally:
        scene.RemoveNode(label_node)
    content = segmentation.GetSegmentation()
    for index in range(content.GetNumberOfSegments()):
        segment = content.GetNthSegment(index)
        if segment.GetLabelValue() in segment_names:
            segment.SetName(segment_names[segment.GetLabelValue()])
    return segmentation


def segment_ids(segmentation: slicer.vtkMRMLSegmentationNode) -> list[str]:
    """IDs of all segments, in the segmentation's order."""
    content = segmentation.GetSegmentation()
    return [content.GetNthSegmentID(i) for i in range(content.GetNumberOfSegments())]


def labelmap_from_segmentation(
    segmentation: slicer.vtkMRMLSegmentationNode,
    reference_volume: slicer.vtkMRMLVolumeNode,
    ids: Sequence[str] | None = None,
) -> sitk.Image:
    """Rasterise segments onto ``reference_volume``'s grid: segment ``ids[n]`` gets label ``n + 1`` (uint8/int).

    The scene temporarily holds a label map node, removed before returning.
    """
    scene = segmentation.GetScene()
    ids = list(ids) if ids is not None else segment_ids(segmentation)
    id_array = vtk.vtkStringArray()
    for segment_id in ids:
        id_array.InsertNextValue(segment_id)
    label_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "export")
    try:
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation, id_array, label_node, reference_volume
        )
        if not ok:
            raise RuntimeError(f"could not export segmentation {segmentation.GetName()!r} to a label map")
        return image_from_volume_node(label_node)
    finally:
        display = label_node.GetDisplayNode()
        if display is not None:
            scene.RemoveNode(display)
        scene.RemoveNode(label_node)


def save_segmentation(segmentation: slicer.vtkMRMLSegmentationNode, path: str | os.PathLike[str]) -> Path:
    """Write a segmentation to ``.seg.nrrd`` atomically (temporary name in the same folder, then rename)."""
    target = Path(path)
    if not target.name.endswith(".seg.nrrd"):
        raise ValueError(f"{target}: a segmentation file must end with .seg.nrrd")
    storage = segmentation.GetScene().AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    return write_with_storage(storage, segmentation, target, ".partial.seg.nrrd", "the segmentation")


def write_with_storage(storage: slicer.vtkMRMLStorageNode, node: slicer.vtkMRMLNode, target: Path, suffix: str,
                       what: str) -> Path:
    """Write ``node`` with ``storage`` (a storage node already in the scene, removed afterwards) to ``target``
    atomically: under a temporary name ending with ``suffix`` (its extension picks the format), then renamed."""
    try:
        with atomic_destination(target, suffix=suffix) as tmp:
            storage.SetFileName(str(tmp))
            if not storage.WriteData(node):
                raise OSError(f"{target}: Slicer could not write {what}")
    finally:
        node.GetScene().RemoveNode(storage)
    return target


def load_segmentation(scene: slicer.vtkMRMLScene, path: str | os.PathLike[str],
                      name: str | None = None) -> slicer.vtkMRMLSegmentationNode:
    """Read a ``.seg.nrrd`` file into a new segmentation node with Slicer's own storage node."""
    return _read_node(scene, path, name, "vtkMRMLSegmentationNode", "vtkMRMLSegmentationStorageNode",
                      "segmentation")


def read_point_list(scene: slicer.vtkMRMLScene, path: str, name: str) -> slicer.vtkMRMLMarkupsFiducialNode:
    """A point list read from a ``.mrk.json`` file by Slicer's markups JSON storage node (the file's LPS read as
    RAS, as "Add Data" does), which stays attached so that the scene can save it; OSError when unreadable."""
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    storage = slicer.vtkMRMLMarkupsJsonStorageNode()  # slicer-core does not register it for AddNewNodeByClass
    scene.AddNode(storage)
    storage.SetFileName(path)
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise OSError(f"{path}: Slicer could not read this point list")
    node.SetAndObserveStorageNodeID(storage.GetID())
    node.SetName(name)
    node.CreateDefaultDisplayNodes()
    return node
