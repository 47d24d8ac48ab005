"""``--levels auto``: TotalSpineSeg's labels of a scan as its level source and cord, cached beside our outputs.

One run of TotalSpineSeg (:mod:`.totalspineseg_tool`) on the scan gives its step-2 label map (cord 1, canal 2,
vertebrae C1..C7 = 11..17, T1..T12 = 21..32, L1..L5 = 41..45, sacrum 50, discs C2C3..L5S = 63..100). It is kept in
the output folder as a result set (:class:`..result_set.ResultSet`, published atomically, the manifest last):

* ``<stem>_totalspineseg_levels.nii.gz``: the step-2 label map, as TotalSpineSeg wrote it, on the scan's grid;
* ``<stem>_totalspineseg_discs.mrk.json``: its discs as a Slicer point list (LPS, labels ``C2-C3``...), each at
  the centroid of its disc label (present when it has at least two discs);
* ``<stem>_totalspineseg_cord.nii.gz``: its cord (label 1) as a mask (present when it found a cord);
* ``<stem>_totalspineseg.json``: the manifest: tool version, weights release, the command, the image's sha256 and
  each file's sha256.

A later ``--levels auto`` on the same image (same sha256) reuses the set without finding or running the tool, so
a batch re-run or a report after ``stats`` costs nothing; a changed image runs it again. A new TotalSpineSeg
release does not invalidate the cache: delete the ``<stem>_totalspineseg*`` files to re-run.

Which levels rule applies (:meth:`AutoLevels.level_source`): with a cord (the user's ``--cord``, else
TotalSpineSeg's) the discs label the cord along its centreline (:mod:`..analysis.disc_levels`: 0.99-1.00
agreement with SCT's labelled cords); without one the vertebrae label what lies within the nearest-label distance.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import safe_json
from ..errors import InputError
from ..geometry import ijk_to_ras_matrix, lps_to_ras_points, voxel_to_ras
from ..image_io import (
    array_to_image,
    image_to_array,
    input_digest,
    input_stem,
    read_image,
    resample_to_grid,
    sha256_file,
    write_image,
)
from ..outputs import writable_folder
from ..result_set import ResultSet, recover
from . import totalspineseg_tool as tool_module

#: Manifest format; a manifest of another format is not trusted as a cache.
CACHE_FORMAT = 1
#: TotalSpineSeg's cord label (``inference.py``: ``cord_output_label=1``).
CORD_LABEL = 1
_SUFFIXES = {"levels": "_totalspineseg_levels.nii.gz", "discs": "_totalspineseg_discs.mrk.json",
             "cord": "_totalspineseg_cord.nii.gz"}
_MANIFEST_SUFFIX = "_totalspineseg.json"
_MARKUPS_SCHEMA = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/"
                   "Schema/markups-schema-v1.0.3.json#")


@dataclass(frozen=True)
class AutoLevels:
    """The cached TotalSpineSeg outputs of one scan (paths; ``discs``/``cord`` None when it found too few discs
    or no cord), its manifest, and whether they were reused (True) or made by running the tool now."""

    levels: Path
    discs: Path | None
    cord: Path | None
    manifest: Path
    version: str
    reused: bool

    def level_source(self, cord_known: bool) -> tuple[Path, str]:
        """(levels file, its ``--levels-kind``): the discs (markups) when a cord is known, else the label map."""
        if cord_known and self.discs is not None:
            return self.discs, "markups"
        return self.levels, "totalspineseg"


def cache_paths(image: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                series_uids: Sequence[str] = ()) -> tuple[dict[str, Path], Path]:
    """({role: path} of the cached files, the manifest path) for ``image`` in ``out_dir``."""
    stem = input_stem(image, series_uids)
    folder = Path(out_dir)
    roles = {role: folder / f"{stem}{suffix}" for role, suffix in _SUFFIXES.items()}
    return roles, folder / f"{stem}{_MANIFEST_SUFFIX}"


def auto_levels(image: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, tool: str | None = None,
                device: str | None = None, series_uids: Sequence[str] = (),
                timeout_s: float = tool_module.DEFAULT_TIMEOUT_S,
                progress: Callable[[str], None] | None = tool_module.stderr_progress) -> AutoLevels:
    """TotalSpineSeg's outputs for ``image``: the cache in ``out_dir`` when it is for this image, else a new run
    (tool found, weights checked, run in a work folder inside ``out_dir``, outputs published). Every failure is
    a one-line InputError (tool missing, weights missing, the tool's own last line, a timeout)."""
    folder = writable_folder(out_dir)
    digest = input_digest(image, series_uids)
    cached = read_cache(image, folder, digest, series_uids)
    if cached is not None:
        return cached
    found = tool_module.find_tool(tool)
    data_dir = found.data_dir()
    tool_module.require_weights(found, data_dir)
    work = Path(tempfile.mkdtemp(prefix=".tmp-totalspineseg-", dir=folder))
    try:
        name = f"{input_stem(image, series_uids)}.nii.gz"
        _nifti_input(image, work / name, series_uids)
        argv = tool_module.build_command(found, work / name, work / "out", data_dir, device)
        if progress is not None:
            progress(f"running TotalSpineSeg {found.version} (weights {found.release}): {' '.join(argv)}")
        tool_module.run_tool(argv, timeout_s=timeout_s, progress=progress)
        result = work / "out" / "step2_output" / name
        if not result.is_file():
            raise InputError(result, "TotalSpineSeg finished without writing its step-2 label map")
        return publish_outputs(result, image, folder, version=found.version, release=found.release, command=argv,
                               digest=digest, series_uids=series_uids)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _nifti_input(image: str | os.PathLike[str], target: Path, series_uids: Sequence[str]) -> None:
    """The scan as TotalSpineSeg reads it (``.nii.gz`` only): a NIfTI copied as is, anything else converted."""
    source = Path(image)
    if source.is_file() and source.name.lower().endswith(".nii.gz"):
        shutil.copyfile(source, target)
    else:
        write_image(read_image(source, series_uids), target)


def publish_outputs(step2_map: str | os.PathLike[str], image: str | os.PathLike[str], out_dir: Path, *,
                    version: str, release: str, command: Sequence[str], digest: str | None = None,
                    series_uids: Sequence[str] = ()) -> AutoLevels:
    """Cache TotalSpineSeg's step-2 label map of ``image`` in ``out_dir`` (module docstring): the map on the
    image's grid, its discs as points, its cord as a mask, and the manifest, published together."""
    reference = read_image(image, series_uids)
    labels = resample_to_grid(_read_labels(step2_map), reference, step2_map, "the image", allow=True)
    values = image_to_array(labels).astype(np.int16)
    paths, manifest = cache_paths(image, out_dir, series_uids)
    discs = disc_points(values, reference)
    with ResultSet(manifest, paths, overwrite=True) as result_set:
        result_set.stage_image("levels", array_to_image(values, reference))
        if len(discs) >= 2:
            result_set.stage_text("discs", markups_text(discs))
        if np.any(values == CORD_LABEL):
            result_set.stage_image("cord", array_to_image((values == CORD_LABEL).astype(np.uint8), reference))
        record = {"format": CACHE_FORMAT, "tool": "totalspineseg", "tool_version": version, "weights": release,
                  "command": list(command), "image": str(image),
                  "image_sha256": digest or input_digest(image, series_uids),
                  "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "files": {role: {"name": paths[role].name, "sha256": sha}
                            for role, sha in result_set.sha256().items()}}
        published = result_set.publish(json.dumps(record, indent=2) + "\n")
    return AutoLevels(levels=published["levels"], discs=published.get("discs"), cord=published.get("cord"),
                      manifest=manifest, version=version, reused=False)


def _read_labels(path: str | os.PathLike[str]) -> sitk.Image:
    """TotalSpineSeg's label map, refused in one line when it holds no integer labels."""
    image = read_image(path)
    values = image_to_array(image)
    if np.issubdtype(values.dtype, np.floating) and np.any(values != np.round(values)):
        raise InputError(path, "has non-integer values; it is not a TotalSpineSeg label map")
    return sitk.Cast(image, sitk.sitkInt16)


def read_cache(image: str | os.PathLike[str], out_dir: Path, digest: str,
               series_uids: Sequence[str] = ()) -> AutoLevels | None:
    """The cached set when its manifest is for an image with sha256 ``digest`` and every file it lists is intact;
    None otherwise (no cache, another image, a file edited or missing)."""
    paths, manifest = cache_paths(image, out_dir, series_uids)
    recover(manifest)
    if not manifest.is_file():
        return None
    try:
        record = safe_json.load_file(manifest)
    except InputError:
        return None
    if not isinstance(record, dict) or record.get("format") != CACHE_FORMAT or record.get("image_sha256") != digest:
        return None
    files = record.get("files")
    if not isinstance(files, dict) or "levels" not in files:
        return None
    for role, entry in files.items():
        if role not in paths or not paths[role].is_file() or not isinstance(entry, dict) \
                or sha256_file(paths[role]) != entry.get("sha256"):
            return None
    return AutoLevels(levels=paths["levels"], discs=paths["discs"] if "discs" in files else None,
                      cord=paths["cord"] if "cord" in files else None, manifest=manifest,
                      version=str(record.get("tool_version")), reused=True)


def disc_points(values: np.ndarray, reference: sitk.Image) -> dict[int, np.ndarray]:
    """SCT disc number -> RAS position (mm, the centroid of the disc's label) of every TotalSpineSeg disc label
    (63..100) in a ``[k, j, i]`` label array on ``reference``'s grid."""
    from ..analysis.level_sources import _TSS_DISCS  # the one TotalSpineSeg disc table

    matrix = ijk_to_ras_matrix(reference)
    discs = {}
    for label in sorted(set(np.unique(values).tolist()) & set(_TSS_DISCS)):
        kji = np.argwhere(values == label)
        discs[_TSS_DISCS[label]] = voxel_to_ras(matrix, kji[:, ::-1].mean(axis=0))[0]
    return discs


def disc_name(number: int) -> str:
    """The markups label of SCT disc ``number``: the vertebrae above and below (``3`` -> ``"C2-C3"``)."""
    from ..analysis.levels import level_name

    return f"{level_name(number - 1)}-{level_name(number)}"


def markups_text(discs: dict[int, np.ndarray]) -> str:
    """A Slicer point list (``.mrk.json``, LPS as Slicer writes files) of disc positions given in RAS mm."""
    points = [{"id": str(n), "label": disc_name(number),
               "position": [round(float(v), 4) for v in lps_to_ras_points(position)],  # RAS -> LPS: the same flip
               "positionStatus": "defined"}
              for n, (number, position) in enumerate(sorted(discs.items()), start=1)]
    document = {"@schema": _MARKUPS_SCHEMA, "markups": [{
        "type": "Fiducial", "coordinateSystem": "LPS", "coordinateUnits": "mm", "controlPoints": points}]}
    return json.dumps(document, indent=2) + "\n"
