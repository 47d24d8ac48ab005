"""``batch --levels auto``: the per-level lesion table of every image of a batch, levels from TotalSpineSeg.

For each image that has a lesion mask (the annotator's correction when there is one, else the prediction: the
rule of :func:`.pairs.scan_files`), after the predictions:

* TotalSpineSeg's outputs are cached beside the image's outputs (``S_totalspineseg_*``,
  :mod:`..anatomy.totalspineseg`): run once per image, reused while the image is unchanged, so a re-run or a
  corrected mask costs only the statistics (about a second);
* ``stats``' files go to ``S_stats/`` in the image's output folder (``lesions.csv``, ``levels.csv``,
  ``summary.json``, the lesion label image), made by the function ``stats --levels auto`` uses
  (:func:`..analysis.report.run_stats`). The cord that carries the discs' levels is the ``--roi-label`` mask when
  it exists (a person drew it), else TotalSpineSeg's, else the model's;
* ``levels.tsv`` in the pipeline folder gathers every image's per-level rows, rebuilt from the ``S_stats/summary
  .json`` files on disk.

:func:`require_tool` runs before any prediction: when some image has no cached TotalSpineSeg outputs, the tool and
its weights must be there, so a missing install costs one line instead of a batch of predictions and then failures.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import safe_json
from ..analysis.report import run_stats
from ..anatomy import totalspineseg_tool as tool_module
from ..anatomy.totalspineseg import auto_levels, read_cache
from ..bids import MANUAL_LESION, BidsImage, pipeline_dir
from ..errors import InputError
from ..image_io import input_digest, write_text
from ..inference.case import output_paths
from .pairs import MANUAL, PREDICTED, scan_files
from .records import tsv_cell

#: The folder of an image's statistics, beside its other outputs.
STATS_SUFFIX = "_stats"
LEVELS_TSV = "levels.tsv"
TSV_COLUMNS = ("image", "mask", "level", "lesion_count", "lesions_touching", "volume_mm3", "lesion_load_pct",
               "levels_from")
#: ``levels_from`` of a row, by the level source's kind: the discs carry levels along a cord, else the vertebrae do.
LEVELS_FROM = {"markups": "TotalSpineSeg discs along the cord", "totalspineseg": "TotalSpineSeg vertebrae"}


@dataclass(frozen=True)
class LevelRecord:
    """The outcome for one image: ``done`` (``folder`` holds its statistics), ``failed`` (``error``: one line) or
    ``waiting`` (no lesion mask yet: its prediction failed, or another part of a split batch runs it)."""

    image: str
    status: str
    folder: Path | None = None
    error: str | None = None


def stats_folder(image: BidsImage) -> Path:
    """``<output folder>/<stem>_stats``: where the image's per-level statistics go."""
    return image.output_dir() / f"{image.stem}{STATS_SUFFIX}"


def images_to_run(images: Sequence[BidsImage]) -> list[BidsImage]:
    """The images whose TotalSpineSeg outputs are not cached yet (an image changed since counts as not cached)."""
    return [image for image in images
            if read_cache(image.path, image.output_dir(), input_digest(image.path, image.series_uids),
                          image.series_uids) is None]


def require_tool(images: Sequence[BidsImage], tool: str | None) -> int:
    """How many of ``images`` TotalSpineSeg must run on; when any, InputError (one line) unless the tool and its
    weights are installed."""
    missing = images_to_run(images)
    if missing:
        found = tool_module.find_tool(tool)
        tool_module.require_weights(found, found.data_dir())
    return len(missing)


def image_level_stats(image: BidsImage, roi_label: str | None, tool: str | None,
                      device: str | None) -> LevelRecord:
    """TotalSpineSeg (cached) then ``stats`` for one image; every failure is the record's one-line error."""
    name = image.relative.as_posix()
    found_files = scan_files(image, None)
    if found_files is None:
        return LevelRecord(name, "waiting", error="no lesion mask yet")
    files, _ = found_files
    try:
        found = auto_levels(image.path, image.output_dir(), tool=tool, device=device,
                            series_uids=image.series_uids, progress=None)
        drawn = image.label(roi_label) if roi_label else None
        cords = [drawn, found.cord, output_paths(image.output_dir(), image.stem)["sc_seg"]]
        cord = next((path for path in cords if path is not None and path.is_file()), None)
        levels, kind = found.level_source(cord is not None)
        folder = stats_folder(image)
        run_stats(files.lesion, folder, soft_path=files.soft, levels_path=levels, levels_kind=kind, cord_path=cord)
    except (InputError, OSError, ValueError) as error:
        return LevelRecord(name, "failed", error=str(error))
    return LevelRecord(name, "done", folder=folder)


def write_levels_tsv(root: str | Path) -> Path | None:
    """``levels.tsv``: one row per image and level (lesion count by primary level, lesions touching, volume mm3,
    lesion load % of the cord's volume at that level when a cord is known) from every ``S_stats/summary.json``
    under the pipeline folder; None when there is none."""
    pipeline = pipeline_dir(root)
    summaries = sorted(pipeline.rglob(f"*{STATS_SUFFIX}/summary.json"))
    if not summaries:
        return None
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(TSV_COLUMNS)
    for path in summaries:
        writer.writerows(_rows(path, pipeline))
    return write_text(buffer.getvalue(), pipeline / LEVELS_TSV)


def _rows(summary_path: Path, pipeline: Path) -> list[list[str]]:
    """The TSV rows of one image's summary (none when it is unreadable)."""
    try:
        summary = safe_json.load_file(summary_path)
        per_level = summary["per_level"]
        lesion = Path(summary["inputs"]["lesion"]["path"])
    except (InputError, KeyError, TypeError):
        return []
    image = summary_path.parent.relative_to(pipeline).as_posix().removesuffix(STATS_SUFFIX)
    mask = MANUAL if lesion.name.endswith(f"_{MANUAL_LESION}.nii.gz") else PREDICTED
    levels_from = LEVELS_FROM.get((summary.get("levels_source") or {}).get("kind"), "")
    return [[image, mask, level, str(row["lesion_count"]), str(row["lesions_touching"]), tsv_cell(row["volume_mm3"]),
             tsv_cell(row.get("lesion_load_pct")), levels_from] for level, row in per_level.items()]
