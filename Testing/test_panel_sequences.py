"""The panel's per-sequence inputs (issue 16, point 5; mrml/sequence_inputs.py and PanelLogic), headless under
slicer-core with the real worker and the bundled ``demo_multisequence`` (T2w + STIR, policy ``impute``): the
model's sequences read from its files, volumes pre-filled from names and series descriptions, one-line refusals,
and runs with both sequences on two grids and with one missing, the results on the reference volume's grid."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from SpinalLesionSegLib import defaults
from SpinalLesionSegLib.analysis.metrics import evaluate
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.mrml.nodes import image_from_volume_node, scalar_volumes, volume_node_from_image
from SpinalLesionSegLib.mrml.panel import PanelLogic
from SpinalLesionSegLib.mrml.results import lesion_segment_id, segment_mask
from SpinalLesionSegLib.mrml.sequence_inputs import ModelSequences, SequenceChoice, model_sequences, prefill
from SpinalLesionSegLib.phantom import make_phantom

SEED = 700_000  # bench/demo_multisequence_quality.py's held-out range, as Testing/test_multisequence_demo.py
MODEL = "demo_multisequence"


def _parameters(volume, **changes) -> SimpleNamespace:
    values = dict(inputVolume=volume, contrast=defaults.CONTRAST, model=MODEL, device="cpu", folds="", tta=False,
                  roiNode=None, roiMarginMm=defaults.ROI_MARGIN_MM, pythonPath="", threshold=defaults.THRESHOLD,
                  candidateThreshold=defaults.CANDIDATE_THRESHOLD, softMap=None, segmentation=None, levelsNode=None)
    return SimpleNamespace(**{**values, **changes})


@pytest.fixture(scope="module")
def exam() -> dict:
    return {"t2": make_phantom(SEED, "T2w", spacing=(1.0, 1.0, 1.0)),
            "stir": make_phantom(SEED, "STIR", spacing=(0.8, 0.8, 2.0))}


def test_the_models_sequences_come_from_its_files() -> None:
    assert model_sequences(MODEL) == ModelSequences(MODEL, ("T2w", "STIR"), 0, "impute")
    assert model_sequences("demo") is None and model_sequences("not_installed_model") is None


def test_prefill_from_names_and_series_descriptions(mrml_scene, exam) -> None:
    t2 = volume_node_from_image(mrml_scene, exam["t2"].image, "sub-01_T2w")
    other = volume_node_from_image(mrml_scene, exam["t2"].image, "Series 4")
    volumes = scalar_volumes(mrml_scene)
    sequences = model_sequences(MODEL)
    assert prefill(sequences, volumes).volumes == {"T2w": t2, "STIR": None}
    choice = prefill(sequences, volumes, {other.GetID(): "sag STIR_TI 180"})
    assert choice.volumes == {"T2w": t2, "STIR": other} and choice.reference_volume() is t2
    # a volume loaded later is matched alone (the selectors' nodeAdded): it names STIR, not T2w
    assert prefill(sequences, [other], {other.GetID(): "sag STIR"}).volumes == {"T2w": None, "STIR": other}


def test_a_choice_the_model_cannot_run_is_one_line(mrml_scene, exam) -> None:
    t2 = volume_node_from_image(mrml_scene, exam["t2"].image, "sub-01_T2w")
    strict = ModelSequences("m", ("T2w", "STIR"), 0, "refuse")
    with pytest.raises(InputError, match="^no volume chosen for STIR: model m needs every sequence$"):
        SequenceChoice(strict, {"T2w": t2, "STIR": None}).present()
    with pytest.raises(InputError, match="chosen for two sequences"):
        SequenceChoice(strict, {"T2w": t2, "STIR": t2}).present()
    namesake = volume_node_from_image(mrml_scene, exam["stir"].image, "sub-01_T2w")  # another volume, same name
    assert len(SequenceChoice(strict, {"T2w": t2, "STIR": namesake}).present()) == 2
    with pytest.raises(InputError, match="^no volume chosen for model m's sequences"):
        SequenceChoice(strict, {}).present()
    assert SequenceChoice(ModelSequences("m", ("T2w", "STIR"), 0, "zeros"), {"STIR": t2}).reference_volume() is t2


def _dice(p, truth: sitk.Image) -> float:
    """Dice of the result's lesion segment against the planted lesions, on the input volume's voxels (Slicer
    holds the phantom's left-handed grid right-handed: the same points, the voxels in another order)."""
    mask = segment_mask(p.segmentation, lesion_segment_id(p.segmentation), p.inputVolume)
    planted = sitk.Resample(truth, image_from_volume_node(p.inputVolume), sitk.Transform(), sitk.sitkNearestNeighbor)
    return evaluate(sitk.GetArrayFromImage(planted) > 0, mask > 0, float(np.prod(truth.GetSpacing()))).dice


def test_runs_on_two_grids_and_with_a_sequence_missing(mrml_scene, exam) -> None:
    t2 = volume_node_from_image(mrml_scene, exam["t2"].image, "sub-01_T2w")
    stir = volume_node_from_image(mrml_scene, exam["stir"].image, "sub-01_STIR")
    logic = PanelLogic(mrml_scene)
    try:
        p = _parameters(stir)  # the results go to the reference sequence's volume, whatever the input was
        logic.sequence_choice = prefill(model_sequences(MODEL), scalar_volumes(mrml_scene))
        job = logic.build_job(p)
        assert job.channels == ["T2w", "STIR"] and len(job.inputs) == 2 and p.inputVolume is t2
        logic.run(p)
        logic.load_results(p, logic.wait(300))
        assert p.segmentation.GetName() == "sub-01_T2w lesions" and _dice(p, exam["t2"].lesion) > 0.7

        logic.sequence_choice.volumes["T2w"] = None  # T2w missing: imputed; the results on the STIR's grid
        logic.run(p)
        logic.load_results(p, logic.wait(300))
        assert p.inputVolume is stir and p.segmentation.GetName() == "sub-01_STIR lesions"
        assert _dice(p, exam["stir"].lesion) > 0.65

        job = logic.build_job(_parameters(t2, model="demo"))  # the choice is demo_multisequence's, not demo's
        assert job.channels is None and len(job.inputs) == 1
    finally:
        logic.stop_worker()
