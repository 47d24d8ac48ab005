"""Export to DICOM from the panel, headless (scene and nodes passed in): the corrected lesion segment as DICOM SEG,
with the soft map as a fractional SEG, the TID 1500 structured report and the secondary-capture preview, all
referencing the series the input volume was loaded from.

Why not Slicer's own DICOM export: core 3D Slicer 5.10 has no DICOM SEG exporter (the SEG plugin,
``DICOMSegmentationPlugin``, comes with the QuantitativeReporting extension and its dcmqi), so the SEG is written
by the Lib like the other objects (:mod:`..dicom`, highdicom). And why in another process: highdicom needs pydicom 3,
while Slicer 5.10's DICOM module runs on the pydicom 2.4 it ships; the GUI process never imports highdicom. The
export is the ``spinal-lesion-seg dicom-export`` command (:mod:`..cli.dicom`), run by the panel's worker interpreter
(the "Python for inference" setting, else Slicer's own). Slicer's own Python gets pydicom 3 and highdicom from the
private folder "Install dependencies" fills (:func:`export_environment`; only this command's process sees it); a
Python without them says so in one line.

Steps: :func:`prepare_dicom_export` checks the nodes, puts the source series' files (found by the caller in the DICOM
database from the volume's ``DICOM.instanceUIDs``) into a work folder (hard links, else copies), writes the lesion
segment as the user left it, the soft map and the cord (``Spinal cord`` plus the lesions, :func:`.results.cord_mask`)
as NIfTI files on the volume's grid, and returns the command; the caller runs it in the background
(:class:`..inference.worker_client.BackgroundCommand`) and reads the outcome with :func:`read_export`. The lesion
segment is marked reviewed (SEMIAUTOMATIC) when it was edited or the review table was used.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer

from .. import safe_json
from ..errors import InputError
from ..image_io import array_to_image, write_image
from ..inference.worker_client import BackgroundCommand
from ..outputs import writable_folder
from ..slicer_requirements import dicom_environment
from .followup import current_scan
from .results import lesion_segment_id, segment_was_edited
from .review_state import read_review_state
from .review_steps import Parameters

#: The attribute Slicer's DICOM scalar volume plugin sets: the SOP Instance UIDs of the files, one per slice k.
INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"
#: Subfolder of the chosen output folder for the DICOM files; the command's manifest ends with this.
EXPORT_FOLDER, MANIFEST_SUFFIX = "dicom", "_dicom_export.json"


@dataclass(frozen=True)
class DicomExport:
    """A prepared export: the ``spinal-lesion-seg`` arguments, where the DICOM files go, the work folder."""

    args: list[str]
    output_dir: Path
    work_dir: Path
    reviewed: bool


@dataclass(frozen=True)
class ExportOutcome:
    """What the command wrote: the DICOM files (SEG first), the manifest, and the lesion totals of the SR."""

    files: list[Path]
    manifest: Path
    lesion_count: int
    volume_mm3: float

    def text(self) -> str:
        return (f"{len(self.files)} DICOM files in {self.manifest.parent} ({self.lesion_count} lesions, "
                f"{self.volume_mm3:.1f} mm3)")


def instance_uids(volume: slicer.vtkMRMLScalarVolumeNode | None) -> list[str]:
    """The SOP Instance UIDs of the files the volume was loaded from, slice by slice; InputError when it was not
    loaded from Slicer's DICOM database (a NIfTI file has no series to reference)."""
    if volume is None:
        raise InputError(None, "no input volume selected")
    uids = (volume.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) or "").split()
    if not uids or "Unknown" in uids:
        raise InputError(volume.GetName(), "was not loaded from Slicer's DICOM database: a DICOM SEG must reference "
                                           "the source images (load the series with the DICOM module)")
    return uids


def prepare_dicom_export(p: Parameters, source_files: Sequence[str | os.PathLike[str] | None],
                         out_dir: str | os.PathLike[str] | None, work_dir: str | os.PathLike[str], *,
                         uid_root: str | None = None) -> DicomExport:
    """Check the nodes and write the command's inputs (see the module docstring). ``source_files``: the file of
    each of :func:`instance_uids` (None or "" where the database has none). InputError (one line) for a volume not
    from DICOM, missing files, no lesion segment or no output folder."""
    uids = instance_uids(p.inputVolume)
    if not out_dir:
        raise InputError(None, "no output folder chosen for the DICOM files")
    missing = [uid for uid, path in itertools.zip_longest(uids, source_files) if not path or not Path(path).is_file()]
    if missing or len(source_files) != len(uids):
        raise InputError(p.inputVolume.GetName(), f"{len(missing) or 'some'} of its {len(uids)} DICOM files are not "
                                                  "in the DICOM database any more: import the series again")
    image, lesion, soft, cord = current_scan(p)  # checks the volume and the lesion segment, as Create report does
    folder = writable_folder(Path(out_dir) / EXPORT_FOLDER)
    work = _new_folder(Path(work_dir))
    series = _link_files(source_files, work / "source")
    args = ["dicom-export", "--series", str(series), "--model", str(p.model),
            "--lesion", str(write_image(_mask(lesion, image), work / "lesion.nii.gz"))]
    if soft is not None:
        soft_path = write_image(array_to_image(soft.astype(np.float32), image), work / "soft.nii.gz")
        args += ["--soft", str(soft_path)]
    if cord is not None:
        args += ["--cord", str(write_image(_mask(cord, image), work / "cord.nii.gz"))]
    if uid_root:
        args += ["--uid-root", uid_root]
    reviewed = was_reviewed(p)
    return DicomExport([*args, *(["--reviewed"] if reviewed else []), "-o", str(folder)], folder, work, reviewed)


def was_reviewed(p: Parameters) -> bool:
    """True when the lesion segment was edited (Segment Editor, threshold kept) or the review table was used."""
    segmentation = p.segmentation
    state = read_review_state(segmentation)
    return segment_was_edited(segmentation, lesion_segment_id(segmentation)) or bool(
        state.accepted or state.rejected or state.added)


def export_environment(python: str, default_python: str, external_env: dict[str, str] | None,
                       packages_folder: str | os.PathLike[str] | None) -> dict[str, str] | None:
    """The environment of the export command's process: for Slicer's own interpreter (``default_python``), this
    process's environment with the private DICOM folder ``packages_folder`` first (None: this environment as it
    is); for another interpreter, ``external_env`` (its own pydicom 3; the folder's compiled parts are Slicer's)."""
    if python != default_python:
        return external_env
    return dicom_environment(os.environ, packages_folder) if packages_folder else None


def start_dicom_export(export: DicomExport, python: str | None = None,
                       env: dict[str, str] | None = None) -> BackgroundCommand:
    """Run the export command in the background with ``python`` (this interpreter by default)."""
    return BackgroundCommand(python, export.args, env)


def run_dicom_export(export: DicomExport, python: str | None = None, env: dict[str, str] | None = None,
                     timeout_s: float = 300.0, on_idle: Callable[[], object] = lambda: time.sleep(0.05)
                     ) -> ExportOutcome:
    """Run the export and wait (scripts and tests; the panel polls :func:`start_dicom_export` from a timer)."""
    command, output, code = start_dicom_export(export, python, env), [], None
    deadline = time.monotonic() + timeout_s
    while code is None:
        if time.monotonic() > deadline:
            command.cancel()
            raise TimeoutError(f"the DICOM export gave no result within {timeout_s:g} s")
        lines, code = command.poll()
        output += lines
        on_idle()
    return read_export(export, code, output)


def read_export(export: DicomExport, code: int, output: Sequence[str]) -> ExportOutcome:
    """The outcome of the finished command (exit ``code``, its ``output`` lines); InputError with the command's
    own error line when it failed."""
    if code != 0:
        errors = [line for line in output if ": error: " in line] or list(output[-1:]) or [f"exit code {code}"]
        raise InputError(None, f"DICOM export failed: {errors[-1].split(': error: ', 1)[-1]}")
    manifests = sorted(export.output_dir.glob(f"*{MANIFEST_SUFFIX}"), key=lambda path: path.stat().st_mtime)
    if not manifests:
        raise InputError(export.output_dir, "holds no DICOM export manifest after the export")
    record = safe_json.load_file(manifests[-1])
    files = [Path(path) for role, path in record["outputs"].items() if role.startswith("dicom_")]
    return ExportOutcome(files, manifests[-1], int(record["lesions"]["count"]), float(record["lesions"]["volume_mm3"]))


def _mask(mask: np.ndarray, reference: sitk.Image) -> sitk.Image:
    return sitk.Cast(array_to_image(mask.astype(np.uint8), reference), sitk.sitkUInt8)


def _new_folder(parent: Path) -> Path:
    """A new numbered ``dicom-export-N`` folder under ``parent`` (one per export: inputs never mixed)."""
    parent.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        folder = parent / f"dicom-export-{n}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


def _link_files(files: Sequence[str | os.PathLike[str] | None], folder: Path) -> Path:
    """The series' files in one folder: hard links (no copy of the pixels), else copies."""
    folder.mkdir()
    for n, path in enumerate(files):
        target = folder / f"{n + 1:05d}.dcm"
        try:
            os.link(str(path), target)
        except OSError:
            shutil.copyfile(str(path), target)
    return folder
