"""The annotators' case list, headless: the images of a BIDS dataset with their status, one case at a time in the
panel's usual correction workflow, and the correction saved as the image's manual lesion mask.

A case is one raw image (:func:`..bids.find_images`). Its status, first that applies: **corrected** (a
``lesion-manual`` mask exists), **failed QC** (named in the QC page's fails list, ``qc_fail.yml``), **pre-labelled**
(``batch`` published a prediction), **not run** (with the batch's error when its record says it failed).

Loading a case (:meth:`CaseList.load`) adds the image, the soft map and the lesion segmentation through the panel's
own helpers (:mod:`.nodes`, :mod:`.results`) and sets the panel's parameters, exactly as a finished prediction
does (:meth:`.panel.PanelLogic.load_results`): threshold, review table and Segment Editor work unchanged. The
segment starts from the manual mask when there is one (a case is resumed, never restarted), else from the
pre-label, else empty. The previous case's nodes (and the tables and charts its segmentation owns) are removed, so
a session of a hundred cases holds one in memory.

Saving (:meth:`CaseList.save`) rasterises the case's lesion segment (the panel's, while the panel shows the case's
image) on the image's grid and hands it to :mod:`..batch.labels` (location, change counts against the pre-label,
sidecar, atomic publication, the overwrite rule). :meth:`CaseList.go` moves to another case, saving first when the
segment changed since it was loaded or saved; a case only looked at writes nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer

from ..batch.labels import (
    Correction,
    LabelWriter,
    Prelabel,
    compare_masks,
    empty_like,
    find_prelabel,
    manual_sidecar,
    on_image_grid,
    recorded_seconds,
)
from ..batch.records import read_records
from ..bids import BidsImage, find_images, read_selection
from ..defaults import THRESHOLD_RANGE
from ..errors import InputError
from ..image_io import array_to_image, read_image, same_grid
from .nodes import volume_node_from_image
from .results import (
    FINGERPRINT_ATTRIBUTE,
    create_lesion_segmentation,
    lesion_segment_id,
    segment_fingerprint,
    segment_mask,
    show_soft_map,
)
from .review import grid_image, largest_lesion_ras
from .review_state import clear_review_state
from .review_steps import THRESHOLD_ATTRIBUTE, Parameters

CORRECTED, FAILED_QC, PRELABELLED, NOT_RUN = "corrected", "failed QC", "pre-labelled", "not run"
#: Decimals of the panel's threshold slider (the .ui's ``thresholdSliderWidget``): a pre-label threshold with more
#: would be rounded by the slider, which would then re-threshold the segment on its own.
SLIDER_DECIMALS = 2
#: Node reference roles of the tables and charts a lesion segmentation owns (removed with it).
OWNED_ROLE_PREFIX = "SpinalLesionSeg."
Position = tuple[float, float, float]


@dataclass
class Case:
    """One image of the dataset: its pre-label (None when not run), whether a manual mask exists, whether the
    QC fails list names it, and the batch's error when its prediction failed."""

    image: BidsImage
    prelabel: Prelabel | None
    corrected: bool
    qc_failed: bool
    batch_error: str | None = None

    @property
    def status(self) -> str:
        if self.corrected:
            return CORRECTED
        if self.qc_failed:
            return FAILED_QC
        return PRELABELLED if self.prelabel is not None else NOT_RUN

    @property
    def label(self) -> str:
        """The line of the panel's list: the image and its status."""
        return f"{self.image.stem}  [{self.status}]"

    @property
    def details(self) -> str:
        """The list's tooltip: the file, the model that pre-labelled it, QC, the batch's error."""
        lines = [self.image.relative.as_posix()]
        if self.prelabel is not None:
            lines.append(f"pre-labelled by model {self.prelabel.model or '?'}")
        if self.corrected:
            lines.append(f"manual mask: {self.image.manual_lesion().name}")
        if self.qc_failed:
            lines.append("failed QC (in the fails list)")
        if self.batch_error:
            lines.append(f"batch failed: {self.batch_error}")
        return "\n".join(lines)


def list_cases(root: str | os.PathLike[str], fails_list: str | os.PathLike[str] | None = None
               ) -> tuple[list[Case], list[str]]:
    """The dataset's cases (sorted by path) and the fails-list entries that name no image of it (a list exported
    from another dataset's QC page shows up there). InputError for a root that is not a BIDS dataset or an
    unreadable list."""
    images = find_images(root)
    tokens = read_selection([f"@{fails_list}"]) if fails_list else []
    errors = {record.name: record.error for record in read_records(root) if record.status == "failed"}
    cases = [_case(image, tokens, errors.get(image.key)) for image in images]
    return cases, [token for token in tokens if not any(image.matches(token) for image in images)]


def _case(image: BidsImage, fails: list[str], batch_error: str | None) -> Case:
    """One image's case, its status read from disk now."""
    return Case(image, find_prelabel(image), image.manual_lesion().is_file(),
                any(image.matches(token) for token in fails), batch_error)


def _position(cases: list[Case], image: BidsImage) -> int | None:
    """Where ``image`` (same root, same path) is in ``cases``."""
    return next((n for n, case in enumerate(cases) if case.image == image), None)


@dataclass
class LoadedCase:
    """The case in the panel: its image, its nodes, the raw image's grid (an empty image: the geometry a saved mask must
    have), the segment's fingerprint when loaded or last saved, and the clock (s) when it was opened plus the
    seconds a previous session recorded for it."""

    image: BidsImage
    volume: slicer.vtkMRMLScalarVolumeNode
    soft: slicer.vtkMRMLScalarVolumeNode | None
    segmentation: slicer.vtkMRMLSegmentationNode
    grid: sitk.Image
    fingerprint: str
    opened_at: float
    prior_seconds: float


class CaseList:
    """A dataset's cases and the one loaded in the panel. ``clock`` (s, monotonic) times each case; ``now`` dates
    the sidecars (both replaceable in tests). One :class:`..batch.labels.LabelWriter` per list: a mask saved in
    this session is replaced without a question, any other only with ``overwrite=True``."""

    def __init__(self, scene: slicer.vtkMRMLScene, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = datetime.now) -> None:
        self.scene, self.clock, self.now = scene, clock, now
        self.root: Path | None = None
        self.fails_list: Path | None = None
        self.cases: list[Case] = []
        self.unmatched: list[str] = []
        self.current: LoadedCase | None = None
        self.writer = LabelWriter()

    def open(self, root: str | os.PathLike[str], fails_list: str | os.PathLike[str] | None = None) -> list[Case]:
        """List a dataset (optionally with a QC fails list). A loaded case stays loaded when the new list holds
        its image (the same dataset, another fails list); otherwise close it first (:meth:`close`), so that its
        correction is saved or knowingly dropped."""
        cases, unmatched = list_cases(root, fails_list)
        if self.current is not None and _position(cases, self.current.image) is None:
            raise InputError(None, "a case of another dataset is loaded: close it (saving its correction) first")
        self.cases, self.unmatched = cases, unmatched
        self.root, self.fails_list = Path(root), Path(fails_list) if fails_list else None
        return self.cases

    @property
    def index(self) -> int | None:
        """The loaded case's place in the list (None when none is loaded, or its image left the dataset)."""
        return _position(self.cases, self.current.image) if self.current is not None else None

    def neighbour(self, step: int) -> int | None:
        """The case ``step`` places after the loaded one (before, for a negative step; the first case when none
        is loaded), or None past either end."""
        index = (self.index + step) if self.index is not None else 0
        return index if 0 <= index < len(self.cases) else None

    def edited(self, p: Parameters) -> bool:
        """Whether the loaded case's lesion segment differs from what was loaded or last saved (False when its
        nodes are gone: a closed scene)."""
        segmentation = self._segmentation(p) if self.current is not None else None
        return _in_scene(segmentation) and \
            segment_fingerprint(segmentation, lesion_segment_id(segmentation)) != self.current.fingerprint

    def _segmentation(self, p: Parameters) -> slicer.vtkMRMLSegmentationNode | None:
        """The loaded case's correction: the panel's segmentation while the panel shows the case's image (a
        re-run there replaces it), else the one loaded with the case."""
        return p.segmentation if _same_node(p.inputVolume, self.current.volume) else self.current.segmentation

    def go(self, p: Parameters, index: int, author: str, *, save: bool = True, overwrite: bool = False
           ) -> Position | None:
        """Save the loaded case when it was edited (unless ``save`` is False), then load case ``index``. Raises
        ManualMaskExists (nothing moved) when the save needs ``overwrite``."""
        if save and self.edited(p):
            self.save(p, author, overwrite=overwrite)
        return self.load(p, index)

    def close(self, p: Parameters, author: str, *, save: bool = True, overwrite: bool = False) -> None:
        """Save the loaded case when it was edited (unless ``save`` is False) and remove its nodes."""
        if self.current is None:
            return
        if save and self.edited(p):
            self.save(p, author, overwrite=overwrite)
        _remove_case_nodes(self.scene, self.current)
        self.current = None

    def load(self, p: Parameters, index: int) -> Position | None:
        """Load case ``index`` into the scene and the panel's parameters (the previous case's nodes are removed,
        unsaved); return where the views should jump (the largest lesion's centroid, RAS mm), None without
        lesions. InputError (nothing changed) for an unreadable image or a mask off the image's grid."""
        if not 0 <= index < len(self.cases):
            raise InputError(None, f"there is no case {index + 1} (the list has {len(self.cases)})")
        case = self.cases[index]
        image, soft, mask, cord, manual = _read_case(case)
        volume = volume_node_from_image(self.scene, image, case.image.stem)
        volume.CreateDefaultDisplayNodes()
        soft_node = show_soft_map(self.scene, soft, f"{case.image.stem} lesion probability") if soft else None
        segmentation = create_lesion_segmentation(self.scene, mask, volume, cord)
        segment_id = lesion_segment_id(segmentation)
        if manual is not None:  # a person's mask: the live threshold must ask before replacing it
            segmentation.RemoveAttribute(FINGERPRINT_ATTRIBUTE + segment_id)
        clear_review_state(segmentation)
        previous, self.current = self.current, LoadedCase(
            case.image, volume, soft_node, segmentation, empty_like(image),
            segment_fingerprint(segmentation, segment_id), self.clock(),
            recorded_seconds(manual) if manual is not None else 0.0)
        _show(p, self.current, case.prelabel.threshold if case.prelabel else None)
        if previous is not None:
            _remove_case_nodes(self.scene, previous)
        return largest_lesion_ras(segmentation, segment_id, volume)

    def save(self, p: Parameters, author: str, *, overwrite: bool = False) -> tuple[Path, Correction]:
        """Write the panel's lesion segment as the loaded case's manual mask, on the image's grid, with its sidecar
        (:mod:`..batch.labels`); return the mask's path and what the correction changed. ManualMaskExists when a
        mask this session did not write is there and ``overwrite`` is False; InputError without an author or a
        loaded case."""
        loaded, segmentation = self._loaded(p)
        case = self.cases[self.index] if self.index is not None else _case(loaded.image, [], None)
        segment_id = lesion_segment_id(segmentation)
        mask = segment_mask(segmentation, segment_id, loaded.volume).astype(np.uint8)
        manual = on_image_grid(array_to_image(mask, grid_image(loaded.volume)), loaded.grid)
        before = _mask_on(case.prelabel.mask, loaded.grid) if case.prelabel else loaded.grid
        correction = compare_masks(sitk.GetArrayViewFromImage(before) != 0, sitk.GetArrayViewFromImage(manual) != 0,
                                   loaded.prior_seconds + self.clock() - loaded.opened_at)
        sidecar = manual_sidecar(case.prelabel, author, self.now(), correction)
        path = self.writer.save(case.image, manual, sidecar, overwrite=overwrite)
        loaded.fingerprint = segment_fingerprint(segmentation, segment_id)
        case.corrected = True
        return path, correction

    def _loaded(self, p: Parameters) -> tuple[LoadedCase, slicer.vtkMRMLSegmentationNode]:
        """The loaded case and its correction (:meth:`_segmentation`); InputError when its nodes are gone."""
        loaded = self.current
        if loaded is None or not _in_scene(loaded.volume):
            raise InputError(None, "no case is loaded: open a dataset and choose a case")
        segmentation = self._segmentation(p)
        if not _in_scene(segmentation):
            raise InputError(loaded.volume.GetName(), "has no lesion segmentation any more: load the case again")
        return loaded, segmentation


def _read_case(case: Case) -> tuple[sitk.Image, sitk.Image | None, sitk.Image, sitk.Image | None, Path | None]:
    """Every file of a case, read and checked before any node is made: (image, soft map, starting mask, cord mask,
    the manual mask's path when the mask is one)."""
    image = read_image(case.image.path)
    manual = case.image.manual_lesion()
    manual = manual if manual.is_file() else None
    pre = case.prelabel
    source = manual or (pre.mask if pre else None)
    mask = _mask_on(source, image) if source else empty_like(image)
    soft = _mask_on(pre.soft, image) if pre and pre.soft else None
    cord = _mask_on(pre.cord, image) if pre and pre.cord else None
    return image, soft, mask, cord, manual


def _mask_on(path: Path, image: sitk.Image) -> sitk.Image:
    """A mask or map read from ``path``, which must be on ``image``'s grid (pre-labels and manual masks are)."""
    found = read_image(path)
    if not same_grid(found, image):
        raise InputError(path, "is not on the voxel grid of its image: it cannot be shown or corrected there")
    return found


def _show(p: Parameters, loaded: LoadedCase, threshold: float | None) -> None:
    """Point the panel's parameters at the case; the cord ROI and the vertebral levels belonged to the previous
    image and are cleared. The threshold the pre-label was made with is recorded on the segmentation first, and
    shown on the slider only when the slider can show it exactly, so the slider's own update never re-thresholds
    the new segment."""
    if threshold is not None:
        loaded.segmentation.SetAttribute(THRESHOLD_ATTRIBUTE, repr(float(threshold)))
    p.roiNode = p.levelsNode = None
    p.inputVolume, p.softMap, p.segmentation = loaded.volume, loaded.soft, loaded.segmentation
    if threshold is not None and THRESHOLD_RANGE[0] <= threshold <= THRESHOLD_RANGE[1] \
            and round(threshold, SLIDER_DECIMALS) == threshold:
        p.threshold = threshold


def _in_scene(node: slicer.vtkMRMLNode | None) -> bool:
    return node is not None and node.GetScene() is not None


def _same_node(a: slicer.vtkMRMLNode | None, b: slicer.vtkMRMLNode | None) -> bool:
    return _in_scene(a) and _in_scene(b) and a.GetID() == b.GetID()


def _remove_case_nodes(scene: slicer.vtkMRMLScene, loaded: LoadedCase) -> None:
    """Remove a case's nodes: the tables and charts its segmentation owns, display nodes, then the nodes (the scene
    leaves display nodes behind otherwise). Nodes the user already deleted are skipped."""
    for node in (loaded.segmentation, loaded.soft, loaded.volume):
        if not _in_scene(node):
            continue
        roles = [node.GetNthNodeReferenceRole(n) for n in range(node.GetNumberOfNodeReferenceRoles())]
        owned = [node.GetNodeReference(role) for role in roles if role.startswith(OWNED_ROLE_PREFIX)]
        displays = [node.GetNthDisplayNode(n) for n in range(node.GetNumberOfDisplayNodes())]
        for doomed in [*owned, *displays, node]:
            if _in_scene(doomed):
                scene.RemoveNode(doomed)
