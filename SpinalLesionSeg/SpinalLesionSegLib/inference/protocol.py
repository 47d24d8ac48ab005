"""The worker job protocol, in one place: a job goes in, JSON lines come out.

The Slicer panel, the background worker (:mod:`.worker`) and its client (:mod:`.worker_client`) all build and read
these types, so a key is spelled once. On the wire a job is one JSON object (a file, stdin, or one line per job in
``--serve`` mode)::

    {"id": "1", "inputs": ["t2.nii.gz"], "output_dir": "out", "model": "demo", "device": "auto",
     "folds": null, "tta": false, "contrast": "auto", "threshold": 0.5, "ensemble": "mean",
     "roi_mask": null, "roi_margin_mm": 10, "roi_box": {"ras_min_mm": [x, y, z], "ras_max_mm": [x, y, z]},
     "overwrite": false, "series_uids": [], "dicom_out": null, "uid_root": null,
     "drop_outside_cord": false, "outside_cord_margin_mm": 3, "roi_auto": false, "cord_model": null}

(``overwrite``: replace existing outputs even when they differ from what the last run wrote, see
:mod:`..outputs`; an input may be a folder of DICOM files, ``series_uids`` choosing its series
(:mod:`..dicom_series`); ``dicom_out``: also write DICOM SEG, SR and preview (null: when the input is DICOM),
their UIDs under ``uid_root``; ``drop_outside_cord``: drop the lesions that do not touch the cord dilated by
``outside_cord_margin_mm``, which are only flagged otherwise, :mod:`..analysis.outside_cord`; ``roi_auto``:
"Crop to cord: automatic", the cord found first (the model's own cord output, else the cord model ``cord_model``,
null: ``cord_contrast_agnostic``) and used as the cord mask, :mod:`.cord_stage`; not with ``roi_mask`` or
``roi_box``)

and the worker answers with one JSON object per line, of four kinds (``"type"``), each carrying the job's ``"id"``:

* ``log``      -- ``message``: a line for the user's log;
* ``progress`` -- ``stage``, ``fraction`` (0..1), ``case`` and ``cases`` (1-based case number, number of cases);
* ``result``   -- ``results`` (per case: inputs, outputs, timings_s, device, warnings, lesion_voxels),
  ``model_load_s`` (s, 0 when the model was already loaded), ``device`` (``name``, ``reason``);
* ``error``    -- ``message`` (one line) and ``log`` (recent log lines, for support).

Decoding validates every field and raises :class:`ProtocolError` with a one-line reason. Older jobs stay valid:
``roi_box`` corners may also be spelled ``ras_min``/``ras_max``, and every key but ``inputs`` and ``output_dir``
has a default (:mod:`..defaults`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Union

from .. import defaults
from ..contrasts import resolve_contrast
from ..errors import InputError


class ProtocolError(InputError):
    """A malformed job or message: one line saying which field is wrong and why."""

    def __init__(self, problem: str) -> None:
        super().__init__(None, problem)


def _check(condition: bool, problem: str) -> None:
    if not condition:
        raise ProtocolError(problem)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _point(value: Any, name: str) -> tuple[float, float, float]:
    _check(isinstance(value, list) and len(value) == 3 and all(map(_is_number, value)),
           f"'roi_box' {name} must be three numbers (RAS mm), got {value!r}")
    return tuple(float(v) for v in value)  # type: ignore[return-value]


@dataclass(frozen=True)
class RoiBox:
    """A region of interest as two opposite corners in RAS mm (Slicer's coordinates)."""

    ras_min_mm: tuple[float, float, float]
    ras_max_mm: tuple[float, float, float]

    @classmethod
    def from_dict(cls, raw: Any) -> RoiBox:
        _check(isinstance(raw, dict), f"'roi_box' must be an object with ras_min_mm and ras_max_mm, got {raw!r}")
        corners = []
        for side in ("min", "max"):
            key = next((k for k in (f"ras_{side}_mm", f"ras_{side}") if k in raw), None)
            _check(key is not None, f"'roi_box' has no ras_{side}_mm")
            corners.append(_point(raw[key], f"ras_{side}_mm"))
        unknown = set(raw) - {"ras_min_mm", "ras_max_mm", "ras_min", "ras_max", "source"}
        _check(not unknown, f"unknown 'roi_box' key(s): {', '.join(sorted(unknown))}")
        return cls(corners[0], corners[1])

    def to_dict(self) -> dict[str, list[float]]:
        return {"ras_min_mm": list(self.ras_min_mm), "ras_max_mm": list(self.ras_max_mm)}


@dataclass(frozen=True)
class Job:
    """One prediction request: input files (one per model channel, cases in order) and how to run them."""

    inputs: list[str]
    output_dir: str
    id: str | None = None
    model: str = defaults.MODEL
    device: str = defaults.DEVICE
    folds: list[int] | None = None
    tta: bool = False
    contrast: str = defaults.CONTRAST
    threshold: float = defaults.THRESHOLD
    ensemble: str = defaults.ENSEMBLE
    roi_mask: str | None = None
    roi_margin_mm: float = defaults.ROI_MARGIN_MM
    roi_box: RoiBox | None = None
    overwrite: bool = False
    series_uids: list[str] = field(default_factory=list)
    dicom_out: bool | None = None
    uid_root: str | None = None
    drop_outside_cord: bool = False
    outside_cord_margin_mm: float = defaults.OUTSIDE_CORD_MARGIN_MM
    roi_auto: bool = False
    cord_model: str | None = None
    #: The sequence (model channel) of each input, e.g. ["T2w", "STIR"]: one case, put in the model's channel order
    #: (:mod:`.channels`); None: the inputs are in channel order, cases consecutive.
    channels: list[str] | None = None
    #: Register the sequences of a multi-channel model to the reference sequence (:mod:`.sequences`); False:
    #: taken as aligned in scanner space, only resampled.
    register: bool = True
    #: The network's arithmetic (:mod:`.precision`): auto, fp32, bf16 or fp16.
    precision: str = defaults.PRECISION
    #: Sliding-window tile step (fraction of the patch; :data:`..defaults.TILE_STEP`).
    tile_step: float = defaults.TILE_STEP
    #: Tiles run inside a region of interest (:mod:`.tiles`): exact or centred.
    roi_tiles: str = defaults.ROI_TILES
    #: Run the network through torch.compile (:mod:`.compiled`).
    compile: bool = False

    def __post_init__(self) -> None:
        _check(isinstance(self.inputs, list) and all(isinstance(p, str) for p in self.inputs),
               "'inputs' must be a list of file paths")
        _check(isinstance(self.output_dir, str) and bool(self.output_dir), "'output_dir' must be a folder path")
        _check(self.id is None or isinstance(self.id, str), f"'id' must be a string, got {self.id!r}")
        _check(isinstance(self.model, str) and bool(self.model), "'model' must be a model name or folder")
        for name, choices in (("device", defaults.DEVICE_CHOICES), ("ensemble", defaults.ENSEMBLE_RULES),
                              ("precision", defaults.PRECISION_CHOICES), ("roi_tiles", defaults.ROI_TILES_CHOICES)):
            _check(getattr(self, name) in choices,
                   f"'{name}' must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        _check(self.folds is None or (isinstance(self.folds, list) and all(
            isinstance(f, int) and not isinstance(f, bool) and f >= 0 for f in self.folds)),
            f"'folds' must be null or a list of fold numbers, got {self.folds!r}")
        _check(isinstance(self.tta, bool), f"'tta' must be true or false, got {self.tta!r}")
        _check(isinstance(self.overwrite, bool), f"'overwrite' must be true or false, got {self.overwrite!r}")
        _check(isinstance(self.drop_outside_cord, bool),
               f"'drop_outside_cord' must be true or false, got {self.drop_outside_cord!r}")
        _check(_is_number(self.outside_cord_margin_mm) and self.outside_cord_margin_mm >= 0,
               f"'outside_cord_margin_mm' must be a number >= 0 (mm), got {self.outside_cord_margin_mm!r}")
        _check(isinstance(self.contrast, str), f"'contrast' must be a string, got {self.contrast!r}")
        if self.contrast != defaults.CONTRAST:
            try:
                resolve_contrast(self.contrast, "")
            except InputError as error:
                raise ProtocolError(f"'contrast': {error.problem}") from None
        _check(_is_number(self.threshold) and 0 < self.threshold < 1,
               f"'threshold' must be a number between 0 and 1, got {self.threshold!r}")
        _check(self.roi_mask is None or isinstance(self.roi_mask, str), "'roi_mask' must be a file path")
        _check(isinstance(self.roi_auto, bool), f"'roi_auto' must be true or false, got {self.roi_auto!r}")
        low, high = defaults.TILE_STEP_RANGE
        _check(_is_number(self.tile_step) and low <= self.tile_step <= high,
               f"'tile_step' must be a number from {low:g} to {high:g}, got {self.tile_step!r}")
        _check(isinstance(self.register, bool), f"'register' must be true or false, got {self.register!r}")
        _check(isinstance(self.compile, bool), f"'compile' must be true or false, got {self.compile!r}")
        _check(not (self.roi_auto and (self.roi_mask or self.roi_box)),
               "'roi_auto' finds the cord itself: give it without 'roi_mask' or 'roi_box'")
        _check(self.cord_model is None or (isinstance(self.cord_model, str) and bool(self.cord_model)),
               "'cord_model' must be a model name or folder")
        _check(self.channels is None or (isinstance(self.channels, list) and len(self.channels) == len(self.inputs)
                                         and all(isinstance(c, str) and c for c in self.channels)),
               "'channels' must be null or one channel name per input")
        _check(isinstance(self.series_uids, list) and all(isinstance(u, str) for u in self.series_uids),
               "'series_uids' must be a list of DICOM series UIDs")
        _check(self.dicom_out is None or isinstance(self.dicom_out, bool),
               f"'dicom_out' must be true, false or null, got {self.dicom_out!r}")
        _check(self.uid_root is None or isinstance(self.uid_root, str), "'uid_root' must be a UID root text")
        _check(_is_number(self.roi_margin_mm) and self.roi_margin_mm >= 0,
               f"'roi_margin_mm' must be a number >= 0 (mm), got {self.roi_margin_mm!r}")

    @classmethod
    def from_dict(cls, raw: Any) -> Job:
        """Validate a decoded JSON job (see the module docstring)."""
        _check(isinstance(raw, dict), "a job must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        _check(not unknown, f"unknown job key(s): {', '.join(sorted(unknown))}")
        for key in ("inputs", "output_dir"):
            _check(key in raw, f"job has no {key!r}")
        # null means "the default" for every optional key (older jobs spell unset keys that way).
        values = {k: v for k, v in raw.items() if v is not None or k in ("inputs", "output_dir")}
        if "id" in values and isinstance(values["id"], int) and not isinstance(values["id"], bool):
            values["id"] = str(values["id"])
        if values.get("roi_box") is not None:
            values["roi_box"] = RoiBox.from_dict(values["roi_box"])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> Job:
        return cls.from_dict(decode_json(text, "malformed job"))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["roi_box"] = self.roi_box.to_dict() if self.roi_box else None
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


@dataclass(frozen=True)
class Log:
    message: str
    id: str | None = None
    kind: ClassVar[str] = "log"


@dataclass(frozen=True)
class Progress:
    stage: str
    fraction: float
    id: str | None = None
    case: int | None = None
    cases: int | None = None
    kind: ClassVar[str] = "progress"


@dataclass(frozen=True)
class Result:
    results: list[dict[str, Any]]
    model_load_s: float
    device: dict[str, str]
    id: str | None = None
    kind: ClassVar[str] = "result"


@dataclass(frozen=True)
class Error:
    message: str
    log: list[str] = field(default_factory=list)
    id: str | None = None
    kind: ClassVar[str] = "error"


Message = Union[Log, Progress, Result, Error]
MESSAGE_TYPES: dict[str, type] = {cls.kind: cls for cls in (Log, Progress, Result, Error)}

#: Field checks per message kind: (field, test, what it must be).
_MESSAGE_CHECKS: dict[str, tuple[tuple[str, Any, str], ...]] = {
    "log": (("message", lambda v: isinstance(v, str), "a string"),),
    "progress": (("stage", lambda v: isinstance(v, str), "a string"),
                 ("fraction", lambda v: _is_number(v) and 0 <= v <= 1, "a number from 0 to 1"),
                 ("case", lambda v: v is None or (isinstance(v, int) and v >= 1), "a case number from 1"),
                 ("cases", lambda v: v is None or (isinstance(v, int) and v >= 1), "a number of cases")),
    "result": (("results", lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v),
                "a list of objects"),
               ("model_load_s", lambda v: _is_number(v) and v >= 0, "a number of seconds >= 0"),
               ("device", lambda v: isinstance(v, dict), "an object with name and reason")),
    "error": (("message", lambda v: isinstance(v, str), "a string"),
              ("log", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings")),
}


def message_from_dict(raw: Any) -> Message:
    """Validate a decoded worker line into its message type; raise :class:`ProtocolError` when malformed."""
    _check(isinstance(raw, dict), "a worker message must be a JSON object")
    kind = raw.get("type")
    _check(kind in MESSAGE_TYPES, f"unknown message type {kind!r}; expected one of {', '.join(MESSAGE_TYPES)}")
    cls = MESSAGE_TYPES[kind]
    values = {k: v for k, v in raw.items() if k != "type"}
    unknown = set(values) - {f.name for f in fields(cls)}
    _check(not unknown, f"unknown {kind} message field(s): {', '.join(sorted(unknown))}")
    _check(values.get("id") is None or isinstance(values["id"], str), f"{kind} message 'id' must be a string")
    for name, test, what in _MESSAGE_CHECKS[kind]:
        if name in values or name not in ("case", "cases", "log"):
            _check(name in values, f"{kind} message has no {name!r}")
            _check(test(values[name]), f"{kind} message {name!r} must be {what}, got {values[name]!r}")
    return cls(**values)


def message_from_json(line: str) -> Message:
    return message_from_dict(decode_json(line, "malformed worker message"))


def message_to_dict(message: Message) -> dict[str, Any]:
    """The wire form: ``{"type": kind, ...fields}``, without ``id``/``case``/``cases`` when they are unset."""
    data = {k: v for k, v in asdict(message).items() if v is not None or k not in ("id", "case", "cases")}
    return {"type": message.kind, **data}


def message_to_json(message: Message) -> str:
    return json.dumps(message_to_dict(message))


def decode_json(text: str, what: str) -> Any:
    """Parse a job or message with :func:`..safe_json.loads` (size and nesting checked before the parser recurses);
    a one-line :class:`ProtocolError` starting with ``what`` for text that is not acceptable JSON."""
    from ..safe_json import loads  # here, so that this change stays inside the function

    try:
        return loads(text)
    except InputError as error:
        raise ProtocolError(f"{what}: {error.problem}") from None
