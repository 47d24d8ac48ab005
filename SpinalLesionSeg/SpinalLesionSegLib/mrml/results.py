"""MRML nodes for inference results: the soft map, the lesion segmentation, the live threshold and edit detection.

Like :mod:`.nodes`, every function takes the scene or nodes as arguments and uses only ``slicer.vtkMRML*`` /
``slicer.vtkSlicer*`` classes, VTK and numpy, so it runs identically in 3D Slicer and under ``slicer-core``.

Grids: the soft map node and the segmentation's reference geometry are both the input volume's grid (as Slicer's
reader gives it), so a soft-map voxel and a segment voxel with the same IJK index are the same physical voxel.
Parent transforms are not applied (as in :mod:`.nodes`): results live in the nodes' own RAS space.

Live threshold: :func:`rethreshold_lesion_segment` writes ``soft >= threshold`` straight into the segment's
binary labelmap (no model run, no temporary label map node, no re-import), which keeps the segment's ID, name,
colour and terminology, and records a fingerprint of what it wrote. :func:`segment_was_edited` compares the
segment against that fingerprint, so the module can tell a user's Segment Editor correction from its own update
and never silently overwrite the former.
"""

from __future__ import annotations

import hashlib

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtkmodules.util import numpy_support

from ..errors import InputError
from ..terminology import (
    CORD_COLOR,
    CORD_SEGMENT_NAME,
    CORD_TERMINOLOGY,
    LESION_COLOR,
    LESION_SEGMENT_NAME,
    LESION_TERMINOLOGY,
)
from .nodes import labelmap_from_segmentation, node_ijk_to_ras, segmentation_node_from_labelmap, volume_node_from_image

#: Colour of a segment written beside an edited lesion segment: orange, to tell the two apart.
THRESHOLD_SEGMENT_COLOR = (1.0, 0.6, 0.1)
#: Colour table of the soft map: perceptually uniform, dark at 0 so that background stays out of the way. Slicer
#: loads it from its colour files; ``slicer-core`` ships no colour files, so there the built-in Iron table (also
#: black -> red -> yellow -> white) stands in.
SOFT_MAP_COLOR_TABLE_ID = "vtkMRMLColorTableNodeFileInferno.txt"
FALLBACK_COLOR_TABLE_ID = "vtkMRMLColorTableNodeIron"
#: Node attribute holding the fingerprint of a segment after the last automatic update (suffix: segment ID).
FINGERPRINT_ATTRIBUTE = "SpinalLesionSeg.AutoFingerprint."
_EMPTY_FINGERPRINT = "empty"


def show_soft_map(scene: slicer.vtkMRMLScene, soft: sitk.Image, name: str) -> slicer.vtkMRMLScalarVolumeNode:
    """Add the probability map as a float volume shown with the Inferno colour table and window/level fixed to
    [0, 1] (automatic window/level would stretch a low-probability map and make noise look like lesions).

    The node's grid is the one Slicer's reader gives the input (:func:`.nodes.volume_node_from_image`). Inferno
    when the scene has it (Slicer always has), else Iron; InputError when neither is in the scene (a headless
    scene needs the default colour nodes of a colour logic).
    """
    color = scene.GetNodeByID(SOFT_MAP_COLOR_TABLE_ID) or scene.GetNodeByID(FALLBACK_COLOR_TABLE_ID)
    if color is None:
        raise InputError(name, f"neither colour table {SOFT_MAP_COLOR_TABLE_ID} nor {FALLBACK_COLOR_TABLE_ID} "
                               "is in the scene")
    node = volume_node_from_image(scene, sitk.Cast(soft, sitk.sitkFloat32), name)
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(color.GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    return node


def create_lesion_segmentation(scene: slicer.vtkMRMLScene, binary: sitk.Image,
                               input_volume: slicer.vtkMRMLScalarVolumeNode,
                               cord: sitk.Image | None = None) -> slicer.vtkMRMLSegmentationNode:
    """Add ``<input name> lesions`` with segment ``MS lesion`` (and ``Spinal cord`` when ``cord`` is given),
    reference geometry = ``input_volume`` so the Segment Editor edits on the scan's own grid.

    ``binary`` and ``cord`` are 0/1 masks on the input's grid (worker outputs). The lesion segment's fingerprint is
    recorded: this is an automatic result, not a user edit.
    """
    labels = sitk.Cast(binary != 0, sitk.sitkUInt8)
    names = {1: LESION_SEGMENT_NAME}
    if cord is not None:
        labels = labels + sitk.Cast((cord != 0) & (binary == 0), sitk.sitkUInt8) * 2
        names[2] = CORD_SEGMENT_NAME
    segmentation = segmentation_node_from_labelmap(scene, labels, names, f"{input_volume.GetName()} lesions",
                                                   reference_volume=input_volume)
    content = segmentation.GetSegmentation()
    for label, (segment_name, color, terminology) in {
        1: (LESION_SEGMENT_NAME, LESION_COLOR, LESION_TERMINOLOGY),
        2: (CORD_SEGMENT_NAME, CORD_COLOR, CORD_TERMINOLOGY),
    }.items():
        if label not in names:
            continue
        segment_id = content.GetSegmentIdBySegmentName(segment_name)
        if not segment_id:  # an empty mask imports no segment: add it empty so the user can still paint it
            segment_id = add_empty_segment(segmentation, segment_name, input_volume)
        segment = content.GetSegment(segment_id)
        segment.SetColor(*color)
        segment.SetTag(segment.GetTerminologyEntryTagName(), terminology)
    record_fingerprint(segmentation, lesion_segment_id(segmentation))
    return segmentation


def add_empty_segment(segmentation: slicer.vtkMRMLSegmentationNode, name: str,
                      reference_volume: slicer.vtkMRMLVolumeNode,
                      color: tuple[float, float, float] = LESION_COLOR) -> str:
    """Add an empty binary-labelmap segment on ``reference_volume``'s grid and return its ID.

    Built from an explicit empty labelmap rather than ``AddEmptySegment``, which needs converter rules that only
    a running Slicer registers (it fails on a segmentation that holds no segment yet under slicer-core).
    """
    labelmap = slicer.vtkOrientedImageData()
    matrix = vtk.vtkMatrix4x4()
    reference_volume.GetIJKToRASMatrix(matrix)
    labelmap.SetImageToWorldMatrix(matrix)
    segment = slicer.vtkSegment()
    segment.SetName(name)
    segment.SetColor(*color)
    segment.AddRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName(), labelmap)
    content = segmentation.GetSegmentation()
    if not content.AddSegment(segment):
        raise RuntimeError(f"could not add segment {name!r} to {segmentation.GetName()!r}")
    return content.GetSegmentIdBySegment(segment)


def lesion_segment_id(segmentation: slicer.vtkMRMLSegmentationNode) -> str:
    """ID of the ``MS lesion`` segment; InputError when the segmentation has none."""
    segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName(LESION_SEGMENT_NAME)
    if not segment_id:
        raise InputError(segmentation.GetName(), f"has no segment named {LESION_SEGMENT_NAME!r}")
    return segment_id


def node_array(volume: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """The voxels of a volume node as a read-only ``[k, j, i]`` numpy view (no copy: the live threshold reads
    the soft map on every slider move)."""
    data = volume.GetImageData()
    if data is None:
        raise InputError(volume.GetName(), "volume node has no image data")
    array = numpy_support.vtk_to_numpy(data.GetPointData().GetScalars()).reshape(data.GetDimensions()[::-1])
    array.flags.writeable = False
    return array


def check_same_grid(volume: slicer.vtkMRMLVolumeNode, reference: slicer.vtkMRMLVolumeNode) -> None:
    """InputError unless ``volume`` has ``reference``'s dimensions and IJK-to-RAS matrix (voxel-wise comparable)."""
    same = (volume.GetImageData() is not None and reference.GetImageData() is not None
            and volume.GetImageData().GetDimensions() == reference.GetImageData().GetDimensions()
            and np.allclose(node_ijk_to_ras(volume), node_ijk_to_ras(reference), atol=1e-4))
    if not same:
        raise InputError(volume.GetName(), f"is not on the voxel grid of {reference.GetName()!r}")


def write_segment_mask(segmentation: slicer.vtkMRMLSegmentationNode, segment_id: str, mask: np.ndarray,
                       reference_volume: slicer.vtkMRMLVolumeNode) -> None:
    """Replace a segment's voxels by ``mask`` (boolean ``[k, j, i]`` on ``reference_volume``'s grid), in place.

    Uses the Segmentations logic's own ``SetBinaryLabelmapToSegment`` (what the Segment Editor effects call), so
    shared labelmap layers, the segment's identity and Slicer's undo stay correct.
    """
    dims = reference_volume.GetImageData().GetDimensions()
    if mask.shape != dims[::-1]:
        raise InputError(segmentation.GetName(), f"mask shape {mask.shape} is not the grid of "
                                                 f"{reference_volume.GetName()!r} {dims[::-1]} (k, j, i)")
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(*dims)
    scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(mask, dtype=np.uint8).ravel(), deep=True,
                                         array_type=vtk.VTK_UNSIGNED_CHAR)
    image.GetPointData().SetScalars(scalars)
    matrix = vtk.vtkMatrix4x4()
    reference_volume.GetIJKToRASMatrix(matrix)
    image.SetImageToWorldMatrix(matrix)
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    if not logic.SetBinaryLabelmapToSegment(image, segmentation, segment_id, logic.MODE_REPLACE):
        raise RuntimeError(f"could not write segment {segment_id!r} of {segmentation.GetName()!r}")


def rethreshold_lesion_segment(segmentation: slicer.vtkMRMLSegmentationNode, segment_id: str,
                               soft_node: slicer.vtkMRMLScalarVolumeNode, threshold: float,
                               reference_volume: slicer.vtkMRMLVolumeNode) -> int:
    """Rewrite a segment as ``soft >= threshold`` without re-running the model; return the voxels set.

    The segment keeps its ID, name, colour and terminology. The new content's fingerprint is recorded, so this
    update is not mistaken for a user edit. ``soft_node`` must be on ``reference_volume``'s grid.
    """
    if not 0.0 <= threshold <= 1.0:
        raise InputError(soft_node.GetName(), f"threshold must lie in 0..1, got {threshold}")
    if segmentation.GetSegmentation().GetSegment(segment_id) is None:
        raise InputError(segmentation.GetName(), f"has no segment {segment_id!r}")
    check_same_grid(soft_node, reference_volume)
    mask = node_array(soft_node) >= threshold
    write_segment_mask(segmentation, segment_id, mask, reference_volume)
    record_fingerprint(segmentation, segment_id)
    return int(np.count_nonzero(mask))


def add_thresholded_segment(segmentation: slicer.vtkMRMLSegmentationNode, soft_node: slicer.vtkMRMLScalarVolumeNode,
                            threshold: float, reference_volume: slicer.vtkMRMLVolumeNode) -> str:
    """Write ``soft >= threshold`` into a new segment ``MS lesion (threshold 0.40)`` and return its ID.

    For when the lesion segment holds the user's edits: the new threshold is shown beside them instead of
    overwriting them. The new segment has the lesion terminology and an orange colour.
    """
    name = f"{LESION_SEGMENT_NAME} (threshold {threshold:.2f})"
    content = segmentation.GetSegmentation()
    segment_id = (content.GetSegmentIdBySegmentName(name)
                  or add_empty_segment(segmentation, name, reference_volume, THRESHOLD_SEGMENT_COLOR))
    segment = content.GetSegment(segment_id)
    segment.SetTag(segment.GetTerminologyEntryTagName(), LESION_TERMINOLOGY)
    rethreshold_lesion_segment(segmentation, segment_id, soft_node, threshold, reference_volume)
    return segment_id


def _segment_labelmap(segmentation: slicer.vtkMRMLSegmentationNode,
                      segment_id: str) -> tuple[np.ndarray, tuple[int, ...], np.ndarray]:
    """The segment's own voxels, without resampling: (boolean ``[k, j, i]`` array over the labelmap's extent,
    extent ``(i0, i1, j0, j1, k0, k1)``, image-to-world matrix). Reads the shared layer in place (no copy)."""
    segment = segmentation.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        raise InputError(segmentation.GetName(), f"has no segment {segment_id!r}")
    labelmap = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    matrix = vtk.vtkMatrix4x4()
    if labelmap is None:
        return np.zeros((0, 0, 0), dtype=bool), (0, -1, 0, -1, 0, -1), np.eye(4)
    labelmap.GetImageToWorldMatrix(matrix)
    extent = tuple(labelmap.GetExtent())
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    scalars = labelmap.GetPointData().GetScalars()
    if min(shape) <= 0 or scalars is None:
        return np.zeros((0, 0, 0), dtype=bool), extent, np.eye(4)
    values = numpy_support.vtk_to_numpy(scalars).reshape(shape)
    return values == segment.GetLabelValue(), extent, np.array(
        [[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def segment_mask(segmentation: slicer.vtkMRMLSegmentationNode, segment_id: str,
                 reference_volume: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """A segment as a boolean ``[k, j, i]`` array on ``reference_volume``'s grid.

    Reads the labelmap directly when it shares the reference's geometry (the usual case: the segmentation was
    made with :func:`create_lesion_segmentation`); otherwise lets Slicer resample it.
    """
    local, extent, matrix = _segment_labelmap(segmentation, segment_id)
    dims = reference_volume.GetImageData().GetDimensions()
    if local.size and not np.allclose(matrix, node_ijk_to_ras(reference_volume), atol=1e-4):
        return sitk.GetArrayViewFromImage(labelmap_from_segmentation(segmentation, reference_volume,
                                                                      [segment_id])) != 0
    mask = np.zeros(dims[::-1], dtype=bool)
    if local.size:
        low = np.array([extent[4], extent[2], extent[0]])
        clip_low = np.maximum(low, 0)
        clip_high = np.minimum(low + local.shape, dims[::-1])
        if np.all(clip_high > clip_low):
            target = tuple(slice(a, b) for a, b in zip(clip_low, clip_high))
            source = tuple(slice(a - o, b - o) for a, b, o in zip(clip_low, clip_high, low))
            mask[target] = local[source]
    return mask


def cord_mask(segmentation: slicer.vtkMRMLSegmentationNode, lesion: np.ndarray,
              reference_volume: slicer.vtkMRMLVolumeNode) -> np.ndarray | None:
    """The cord as the analysis takes it: the ``Spinal cord`` segment plus the ``lesion`` mask (boolean
    ``[k, j, i]``, both on ``reference_volume``'s grid). Segments here do not overlap (the cord is imported without
    the lesion voxels, and painting a lesion erases the cord beneath it), so the segment alone has holes where the
    lesions are. None without a cord segment, or when it is empty (the union would make each lesion its own cord).
    """
    segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName(CORD_SEGMENT_NAME)
    return cord_with_lesion(segmentation, segment_id, lesion, reference_volume) if segment_id else None


def cord_with_lesion(segmentation: slicer.vtkMRMLSegmentationNode, cord_segment_id: str, lesion: np.ndarray,
                     reference_volume: slicer.vtkMRMLVolumeNode) -> np.ndarray | None:
    """The segment ``cord_segment_id`` plus the ``lesion`` mask (:func:`cord_mask`'s rule); None when empty."""
    cord = segment_mask(segmentation, cord_segment_id, reference_volume)
    return cord | lesion if cord.any() else None


def segment_fingerprint(segmentation: slicer.vtkMRMLSegmentationNode, segment_id: str) -> str:
    """A hash of the segment's voxels (their absolute IJK indices and the grid's matrix).

    Independent of the labelmap's extent, which Slicer may crop or grow without changing the content.
    """
    local, extent, matrix = _segment_labelmap(segmentation, segment_id)
    flat = np.flatnonzero(local)
    if flat.size == 0:
        return _EMPTY_FINGERPRINT
    kji = np.stack(np.unravel_index(flat, local.shape), axis=1) + [extent[4], extent[2], extent[0]]
    digest = hashlib.sha256(np.round(matrix, 4).astype(np.float64).tobytes())
    digest.update(kji.astype(np.int64).tobytes())
    return digest.hexdigest()


def record_fingerprint(segmentation: slicer.vtkMRMLSegmentationNode, segment_id: str) -> None:
    """Remember the segment's current content as "automatic" (a node attribute, saved with the scene)."""
    segmentation.SetAttribute(FINGERPRINT_ATTRIBUTE + segment_id, segment_fingerprint(segmentation, segment_id))


def segment_was_edited(segmentation: slicer.vtkMRMLSegmentationNode, segment_id: str) -> bool:
    """True when the segment differs from what the last automatic update wrote (or none was recorded)."""
    recorded = segmentation.GetAttribute(FINGERPRINT_ATTRIBUTE + segment_id)
    return recorded is None or recorded != segment_fingerprint(segmentation, segment_id)
