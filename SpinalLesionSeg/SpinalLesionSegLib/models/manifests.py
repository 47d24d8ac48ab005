"""What we know about each supported model, as plain Python data.

A manifest says where a model comes from (release archives, or a folder bundled with the package), what its
nnU-Net results folder must look like once installed, and how its outputs are to be read (which label is lesion,
which is cord, in which orientation the model was trained, whether the input must first be cropped around the
cord). The installer (:mod:`.installer`) checks archives against it; the predictor reads it for defaults. Code
reads ``manifests.MANIFESTS`` through the module at call time, so that tests can replace it.

The manifests are Python rather than JSON data files so that they need no package-data plumbing in either the
pip package or the Slicer extension, and so that a typo is an import error caught by the tests. Facts come from
the model releases and from how the Spinal Cord Toolbox (SCT) runs them (see ``docs/models.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..contrasts import CONTRASTS

#: Orientation SCT assumes when a model's dataset.json has no ``image_orientation`` (SCT-style "from" letters).
DEFAULT_ORIENTATION = "LPI"

#: A known model's installed files may unpack to at most this many times its download size (``size_mb``): trained
#: weights barely compress, so anything far beyond is not the published model (a hostile mirror, a zip bomb).
UNPACKED_PER_DOWNLOADED = 3
#: A known model's downloads may total at most this many times ``size_mb`` (a re-released model may grow a little;
#: a URL serving far more is not the model, and would fill the disk).
DOWNLOAD_SLACK = 2

#: The registry name of the spinal cord model that ``predict --roi auto`` runs before a lesion model without a cord
#: output of its own ("Crop to cord: automatic").
CORD_MODEL = "cord_contrast_agnostic"

_PACKAGE = Path(__file__).resolve().parents[1]


def bundled_folder(name: str) -> Path:
    """Where a bundled model lives: in the Slicer module's Resources (Slicer, a checkout, an editable install), or in
    the package's ``_resources`` folder (a wheel installed with pip; see pyproject.toml)."""
    folders = (_PACKAGE.parent / "Resources" / "Models" / name, _PACKAGE / "_resources" / "Models" / name)
    return next((folder for folder in folders if folder.is_dir()), folders[0])


#: The bundled demo models: cord + lesion (one T2w), and two sequences with missing-sequence imputation.
DEMO_MODEL_FOLDER = bundled_folder("demo")
MULTISEQUENCE_DEMO_FOLDER = bundled_folder("demo_multisequence")


@dataclass(frozen=True)
class Archive:
    """One release archive. ``sha256`` is pinned only when the authors publish one (none do today)."""

    url: str
    sha256: str | None = None

    @property
    def filename(self) -> str:
        """The archive's file name (last URL component), used for the download and its ``.part`` file."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class CropRequirement:
    """The model was trained on images cropped around the spinal cord, so inference must crop the same way.

    ``margins_mm`` is (right-left, anterior-posterior, inferior-superior) in mm around the cord segmentation when
    the margins are fixed; ``None`` when they come from the archive's ``crop_metadata.json`` (``pad_*`` keys, mm).
    """

    description: str
    margins_mm: tuple[float, float, float] | None = None
    metadata_file: str | None = None


@dataclass(frozen=True)
class ModelManifest:
    """Everything the toolkit knows about one model before it is installed."""

    name: str
    title: str
    release: str
    #: Release archives merged into one trainer folder; empty for a bundled model.
    archives: tuple[Archive, ...]
    #: Folds the release ships; ``None`` = every ``fold_N`` found (at least one).
    folds: tuple[int, ...] | None
    #: Training orientation (SCT-style "from" letters), used only when dataset.json has no ``image_orientation``.
    orientation: str
    contrasts: tuple[str, ...]
    citation: str
    licence: str
    homepage: str
    #: nnU-Net trainer folder name (``Trainer__Plans__configuration``); ``None`` = whatever the archive holds.
    trainer_folder: str | None = None
    #: Expected dataset.json ``labels`` (checked at install); ``None`` = not known in advance.
    labels: Mapping[str, int | tuple[int, ...]] | None = None
    #: Label (or region) name holding lesions, and the spinal cord one when the model also segments the cord. A
    #: cord-only model (``task`` "cord", e.g. SCT's contrast-agnostic cord model) has ``lesion_label=None``.
    lesion_label: str | None = "lesion"
    cord_label: str | None = None
    crop: CropRequirement | None = None
    #: The input channel whose image defines the grid of a multi-channel model's inputs and outputs (the others
    #: are registered and resampled onto it, :mod:`..inference.sequences`).
    reference_channel: int = 0
    #: What a multi-channel model does when a sequence is missing (:data:`..inference.channels.POLICIES`):
    #: ``refuse`` (every channel needs an image), ``zeros`` (fed as zeros, at the input) or ``impute``
    #: (feature-level mean imputation by the network, :mod:`..inference.imputation_net`).
    missing_sequences: str = "refuse"
    #: PSIR images must be multiplied by -1 before inference (a model trained on inverted PSIR).
    invert_psir: bool = False
    doi: str | None = None
    #: Approximate download size in MB, for ``models list`` and the docs (``None`` when unknown).
    size_mb: float | None = None
    #: Folder of a model shipped with the package instead of downloaded (the demo model).
    bundled_folder: Path | None = field(default=None, compare=False)

    @property
    def bundled(self) -> bool:
        """True for a model shipped inside the package (nothing to download or remove)."""
        return self.bundled_folder is not None

    @property
    def task(self) -> str:
        """"lesion" for a lesion model (with or without a cord output), "cord" for a cord-only model."""
        return "cord" if self.lesion_label is None else "lesion"

    @property
    def max_unpacked_bytes(self) -> int | None:
        """Most bytes its installed files may unpack to (from ``size_mb``); ``None`` when its size is unknown."""
        return None if self.size_mb is None else int(self.size_mb * 1e6 * UNPACKED_PER_DOWNLOADED)

    @property
    def max_download_bytes(self) -> int | None:
        """Most bytes one of its archives may download (from ``size_mb``); ``None`` when its size is unknown."""
        return None if self.size_mb is None else int(self.size_mb * 1e6 * DOWNLOAD_SLACK)


_LESION_MS_CITATION = (
    "Benveniste P-L, et al. A multi-contrast deep learning model for spinal cord multiple sclerosis lesion "
    "segmentation. Multiple Sclerosis Journal 2026;32(6):598-613."
)


def _published(repo: str, release: str, files: Iterable[str], **facts: Any) -> ModelManifest:
    """A model whose ``files`` are attached to GitHub release ``release`` of ``github.com/<repo>`` (its homepage)."""
    homepage = f"https://github.com/{repo}"
    archives = tuple(Archive(f"{homepage}/releases/download/{release}/{file}") for file in files)
    return ModelManifest(release=release, archives=archives, homepage=homepage, **facts)


def _lesion_ms_release(repo: str, release: str, **facts: Any) -> ModelManifest:
    """A release of the multi-contrast lesion_ms model: one zip per fold 0-4, every contrast, the same paper."""
    folds = (0, 1, 2, 3, 4)
    return _published(repo, release, (f"model_fold{fold}.zip" for fold in folds), folds=folds, contrasts=CONTRASTS,
                      citation=_LESION_MS_CITATION, doi="10.1177/13524585261427333", **facts)


MANIFESTS: Mapping[str, ModelManifest] = MappingProxyType({
    manifest.name: manifest
    for manifest in (
        _lesion_ms_release(
            "ivadomed/ms-lesion-agnostic", "r20250909",
            name="lesion_ms",
            title="Multi-contrast spinal cord MS lesion model (SCT 7.2/7.3 lesion_ms)",
            trainer_folder="nnUNetTrainerDiceCELoss_noSmooth_4000epochs_fromScratch__"
                           "nnUNetResEncUNetL1x1x1_Model2_Plans__3d_fullres",
            orientation="RPI",
            labels=MappingProxyType({"background": 0, "lesion": 1}),
            licence="MIT (github.com/ivadomed/ms-lesion-agnostic)",
            size_mb=764,
        ),
        _lesion_ms_release(
            "ivadomed/seg-sc-ms-lesion-multicontrast", "r20260703",
            name="lesion_ms_cropped",
            title="Multi-contrast spinal cord MS lesion model, retrained on crops around the cord (r20260703)",
            orientation=DEFAULT_ORIENTATION,
            crop=CropRequirement(
                description="crop around the spinal cord segmentation, padded by the pad_* margins (mm) of "
                            "crop_metadata.json; trained at 0.5 mm isotropic",
                metadata_file="crop_metadata.json",
            ),
            licence="not stated in the release repository (the r20250909 weights of the same authors are MIT)",
        ),
        _published(
            "ivadomed/model-seg-ms-axial-t2w", "r20241111", ["model_bavaria_quebec_axial_t2w_ms.zip"],
            name="lesion_ms_axial_t2",
            title="Spinal cord and intramedullary MS lesion model for axial T2w (region-based)",
            folds=None,
            orientation="RPI",
            labels=MappingProxyType({"background": 0, "sc": (1, 2), "lesion": 2}),
            cord_label="sc",
            contrasts=("T2w",),
            citation="Naga Karthik E, et al. Spinal cord and intramedullary MS lesion segmentation in axial "
                     "T2-weighted MRI of the whole spine (NeuroPoly / TUM), 2025.",
            licence="not stated in the release repository",
        ),
        _published(
            "ivadomed/model_seg_ms_mp2rage", "r20240610",
            ["nnUNetTrainer_seg_ms_lesion_mp2rage__nnUNetPlans__3d_fullres.zip"],
            name="lesion_ms_mp2rage",
            title="Spinal cord MS lesion model for MP2RAGE UNIT1",
            folds=(3,),
            orientation=DEFAULT_ORIENTATION,
            crop=CropRequirement(
                description="crop around the spinal cord segmentation dilated by 30 x 30 x 5 mm, as SCT does; "
                            "trained at 1 mm isotropic",
                margins_mm=(30.0, 30.0, 5.0),
            ),
            contrasts=("UNIT1",),
            citation="model_seg_ms_mp2rage: MS lesion segmentation on MP2RAGE UNIT1 (ivadomed), release r20240610, "
                     "Zenodo record 11555780.",
            doi="10.5281/zenodo.11555780",
            licence="MIT (github.com/ivadomed/model_seg_ms_mp2rage)",
        ),
        _published(
            # SCT's default spinal cord model (sct_deepseg spinalcord): see docs/models.md for the sources.
            "sct-pipeline/contrast-agnostic-softseg-spinalcord", "v4.0", ["model_contrast_agnostic_20260628.zip"],
            name=CORD_MODEL,
            title="Contrast-agnostic spinal cord model (SCT's sct_deepseg spinalcord, v4.0; trained on crops)",
            folds=None,
            orientation=DEFAULT_ORIENTATION,  # SCT's fallback; its training data were RPI with image_orientation set
            contrasts=CONTRASTS,  # "any" in SCT, tested on all of ours (and MT, DWI, EPI)
            lesion_label=None,
            cord_label="sc",
            crop=CropRequirement(
                description="sc-crop's detected cord bounding box, padded by the pad_* margins (mm) of "
                            "crop_metadata.json, as SCT runs it",
                metadata_file="crop_metadata.json",
            ),
            citation="Bédard S*, Naga Karthik E*, Tsagkas C, Pravatà E, Granziera C, Smith A, Weber KA II, "
                     "Cohen-Adad J. Towards contrast-agnostic soft segmentation of the spinal cord. Medical Image "
                     "Analysis 2025;101:103473.",
            doi="10.1016/j.media.2025.103473",
            licence="MIT (github.com/sct-pipeline/contrast-agnostic-softseg-spinalcord)",
        ),
        ModelManifest(
            name="demo",
            title="SpinalLesionSeg demo model (small cord + lesion network, phantoms and one real scan)",
            release="bundled",
            archives=(),
            folds=(0, 1),
            orientation="RPI",  # as lesion_ms; its dataset.json says so too
            # Region-based as lesion_ms_axial_t2: sc = cord including lesions, lesion (scripts/train_demo_model.py
            # --regions, on synthetic T2w phantoms and the real t2_ms with painted lesions).
            labels=MappingProxyType({"background": 0, "sc": (1, 2), "lesion": 2}),
            cord_label="sc",
            contrasts=("T2w",),
            citation="SpinalLesionSeg demo model; for testing and demonstration only, not for clinical images.",
            licence="Apache-2.0 (this project)",
            homepage="https://github.com/SpinalLesionSeg/SlicerSpinalLesionSeg",
            bundled_folder=DEMO_MODEL_FOLDER,
        ),
        ModelManifest(
            name="demo_multisequence",
            title="SpinalLesionSeg multi-sequence demo model (T2w + STIR, missing sequences imputed; phantoms)",
            release="bundled",
            archives=(),
            folds=(0,),
            orientation="RPI",
            # scripts/train_multisequence_demo.py: MeanImputationUNet on synthetic T2w + STIR phantoms, sequence
            # dropout; either sequence alone works (feature-level mean imputation, Walsh et al. 2025).
            labels=MappingProxyType({"background": 0, "lesion": 1}),
            contrasts=("T2w", "STIR"),
            reference_channel=0,
            missing_sequences="impute",
            citation="SpinalLesionSeg multi-sequence demo model; for testing and demonstration only. Method: Walsh "
                     "et al. 2025 (multi-sequence models with missing-sequence imputation).",
            licence="Apache-2.0 (this project)",
            homepage="https://github.com/SpinalLesionSeg/SlicerSpinalLesionSeg",
            bundled_folder=MULTISEQUENCE_DEMO_FOLDER,
        ),
    )
})
