"""The worker job protocol: every job and message kind round-trips; every malformed field gets a one-line reason."""

from __future__ import annotations

import json

import pytest
from SpinalLesionSegLib import defaults
from SpinalLesionSegLib.inference.protocol import (
    MESSAGE_TYPES,
    Error,
    Job,
    Log,
    Progress,
    ProtocolError,
    Result,
    RoiBox,
    message_from_json,
    message_to_json,
)

FULL_JOB = Job(inputs=["a_T2w.nii.gz", "b_STIR.nii.gz"], output_dir="out", id="7", model="lesion_ms", device="cuda",
               folds=[0, 3], tta=True, contrast="STIR", threshold=0.35, ensemble="majority",
               roi_mask="cord.nii.gz", roi_margin_mm=4.5, roi_box=RoiBox((-10.0, -20.0, -30.0), (10.0, 20.0, 30.0)))

MESSAGES = [
    Log("device: cpu (asked for)", id="7"),
    Progress("predict fold 0", 0.25, id="7", case=1, cases=2),
    Progress("load model", 0.0),
    Result(results=[{"outputs": {"lesion_seg": "x_lesion_seg.nii.gz"}, "timings_s": {"predict_s": 1.5}}],
           model_load_s=2.25, device={"name": "cpu", "reason": "asked for"}, id="7"),
    Error("x.nii.gz: not a 3D image", ["reading x.nii.gz"], id="7"),
    Error("the worker stopped unexpectedly (exit code 3)"),
]


def test_a_job_round_trips_through_json() -> None:
    assert Job.from_json(FULL_JOB.to_json()) == FULL_JOB
    minimal = Job.from_json('{"inputs": ["t2.nii.gz"], "output_dir": "out"}')
    assert (minimal.model, minimal.device, minimal.threshold, minimal.roi_margin_mm, minimal.contrast) == (
        defaults.MODEL, defaults.DEVICE, defaults.THRESHOLD, defaults.ROI_MARGIN_MM, defaults.CONTRAST)


def test_older_jobs_stay_valid() -> None:
    """Keys spelled as before the protocol module existed: ras_min/ras_max corners, nulls for defaults, int ids."""
    job = Job.from_dict({"id": 3, "inputs": ["t2.nii.gz"], "output_dir": "o", "folds": None, "roi_mask": None,
                         "threshold": None, "roi_box": {"ras_min": [0, 0, 0], "ras_max": [1, 2, 3]}})
    assert job.id == "3" and job.threshold == defaults.THRESHOLD
    assert job.roi_box == RoiBox((0.0, 0.0, 0.0), (1.0, 2.0, 3.0))


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: f"{m.kind}-{m.id}")
def test_every_message_kind_round_trips(message) -> None:
    line = message_to_json(message)
    assert "\n" not in line and json.loads(line)["type"] == message.kind
    assert message_from_json(line) == message


def test_the_four_kinds_are_the_documented_ones() -> None:
    assert set(MESSAGE_TYPES) == {"log", "progress", "result", "error"}


VALID = {"inputs": ["t2.nii.gz"], "output_dir": "out"}


@pytest.mark.parametrize("change, phrase", [
    ({"inputs": "t2.nii.gz"}, "'inputs' must be a list"),
    ({"inputs": [1]}, "'inputs' must be a list"),
    ({"output_dir": ""}, "'output_dir'"),
    ({"output_dir": 3}, "'output_dir'"),
    ({"id": ["x"]}, "'id' must be a string"),
    ({"model": ""}, "'model'"),
    ({"device": "tpu"}, "'device' must be one of"),
    ({"folds": "0"}, "'folds'"),
    ({"folds": [-1]}, "'folds'"),
    ({"folds": [True]}, "'folds'"),
    ({"tta": "yes"}, "'tta'"),
    ({"contrast": 5}, "'contrast'"),
    ({"contrast": "FLAIR"}, "unknown contrast"),
    ({"threshold": 1.5}, "'threshold'"),
    ({"threshold": "0.5"}, "'threshold'"),
    ({"threshold": True}, "'threshold'"),
    ({"ensemble": "max"}, "'ensemble' must be one of"),
    ({"roi_mask": 3}, "'roi_mask'"),
    ({"roi_margin_mm": -1}, "'roi_margin_mm'"),
    ({"roi_margin_mm": float("nan")}, "'roi_margin_mm'"),
    ({"roi_box": [0, 0, 0]}, "'roi_box' must be an object"),
    ({"roi_box": {"ras_min_mm": [0, 0, 0]}}, "no ras_max_mm"),
    ({"roi_box": {"ras_min_mm": [0, 0], "ras_max_mm": [1, 1, 1]}}, "three numbers"),
    ({"roi_box": {"ras_min_mm": [0, 0, 0], "ras_max_mm": [1, 1, 1], "colour": 1}}, "unknown 'roi_box' key"),
    ({"speed": "fast"}, "unknown job key"),
])
def test_each_malformed_job_field_is_refused_in_one_line(change: dict, phrase: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        Job.from_dict({**VALID, **change})
    assert phrase in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("raw, phrase", [
    ('{"inputs": ["x"]}', "no 'output_dir'"),
    ('["a list"]', "JSON object"),
    ("{not json", "malformed job"),
    ("[" * 100000, "malformed job"),
])
def test_broken_job_text_is_refused_in_one_line(raw: str, phrase: str) -> None:
    with pytest.raises(ProtocolError, match=phrase):
        Job.from_json(raw)


@pytest.mark.parametrize("raw, phrase", [
    ({"type": "shout", "message": "x"}, "unknown message type"),
    ({"message": "x"}, "unknown message type"),
    ({"type": "log"}, "log message has no 'message'"),
    ({"type": "log", "message": 3}, "'message' must be a string"),
    ({"type": "log", "message": "x", "id": 4}, "'id' must be a string"),
    ({"type": "log", "message": "x", "colour": "red"}, "unknown log message field"),
    ({"type": "progress", "fraction": 0.5}, "no 'stage'"),
    ({"type": "progress", "stage": "s", "fraction": 1.5}, "'fraction' must be a number from 0 to 1"),
    ({"type": "progress", "stage": "s", "fraction": 0.5, "case": 0}, "'case'"),
    ({"type": "progress", "stage": "s", "fraction": 0.5, "cases": "2"}, "'cases'"),
    ({"type": "result", "results": {}, "model_load_s": 0, "device": {}}, "'results' must be a list"),
    ({"type": "result", "results": [], "model_load_s": -1, "device": {}}, "'model_load_s'"),
    ({"type": "result", "results": [], "model_load_s": 0}, "no 'device'"),
    ({"type": "error", "message": "x", "log": "one line"}, "'log' must be a list of strings"),
    ({"type": "error"}, "no 'message'"),
])
def test_each_malformed_message_field_is_refused_in_one_line(raw: dict, phrase: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        message_from_json(json.dumps(raw))
    assert phrase in str(caught.value) and "\n" not in str(caught.value)
