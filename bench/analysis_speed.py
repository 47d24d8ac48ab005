"""Speed of the lesion analysis (issue 4): targets are
* statistics of a 512x512x200 mask with 200 lesions, with vertebral levels: under 1 s;
* re-threshold + lesion count of a 320x320x64 soft map: under 50 ms.

Also times the two connected-component implementations (cc3d, scipy.ndimage) that ``lesions.py`` chose between,
and a full 19-threshold sweep of one soft map. Run from the repository root:

    .venv/bin/python bench/analysis_speed.py [--repeat 7]

Writes ``bench/results/analysis_speed.json``; the figures go into docs/performance.md ("Lesion analysis").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from SpinalLesionSegLib.analysis.lesions import analyze_lesions, label_components
from SpinalLesionSegLib.analysis.levels import LevelSource
from SpinalLesionSegLib.analysis.sweep import sweep_case

RESULTS = Path(__file__).resolve().parent / "results" / "analysis_speed.json"


def timed(function, repeat: int) -> dict:
    """Median and best wall time (ms) of ``repeat`` calls after one warm-up call."""
    function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(statistics.median(times), 2), "best_ms": round(min(times), 2), "runs": repeat}


def lesion_mask(rng: np.random.Generator, shape: tuple[int, int, int], count: int) -> np.ndarray:
    """``count`` separate ellipsoid-ish lesions of 2-7 voxels radius (a heavy MS case), in ``[k, j, i]``."""
    mask = np.zeros(shape, dtype=bool)
    grid = np.stack(np.meshgrid(*(np.arange(-7, 8),) * 3, indexing="ij"))
    placed = 0
    while placed < count:
        centre = rng.integers(8, np.array(shape) - 8)
        radii = rng.uniform(2, 7, size=3)
        blob = (((grid / radii[:, None, None, None]) ** 2).sum(axis=0) <= 1)
        box = tuple(slice(c - 7, c + 8) for c in centre)
        if np.any(mask[tuple(slice(c - 8, c + 9) for c in centre)]):
            continue  # keep lesions apart so the count is known
        mask[box] |= blob
        placed += 1
    return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    # 512x512x200 (i, j, k) at 0.5 x 0.5 x 1 mm, 200 lesions, levels from a labelled image of 20 slabs along k.
    shape = (200, 512, 512)
    mask = lesion_mask(rng, shape, 200)
    reference = sitk.Image([512, 512, 200], sitk.sitkUInt8)
    reference.SetSpacing((0.5, 0.5, 1.0))
    regions = np.repeat(np.arange(1, 21, dtype=np.int16), 10)[:, None, None] * np.ones((1, 512, 512), np.int16)
    regions_image = sitk.GetImageFromArray(regions)
    regions_image.CopyInformation(reference)
    source = LevelSource("cord-labels", Path("synthetic"), regions=regions_image)
    soft_big = np.where(mask, 0.8, 0.0)
    analysis = analyze_lesions(mask, reference, levels=source)
    assert len(analysis.lesions) == 200
    results = {
        "stats_512x512x200_200_lesions": {
            "lesion_voxels": int(mask.sum()),
            "with_levels": timed(lambda: analyze_lesions(mask, reference, levels=source), args.repeat),
            "with_levels_and_soft": timed(lambda: analyze_lesions(mask, reference, soft=soft_big, levels=source),
                                          args.repeat),
            "target_ms": 1000,
        },
        "components_512x512x200_18conn": {
            "cc3d": timed(lambda: label_components(mask, 18), args.repeat),
            "scipy_ndimage_label": timed(lambda: __import__("scipy.ndimage").ndimage.label(
                mask, np.ones((3, 3, 3), bool) ^ _corners()), args.repeat),
        },
    }

    # A 320x320x64 soft map: 40 lesions of high probability, low-probability noise elsewhere.
    soft_shape = (64, 320, 320)
    lesions_small = lesion_mask(rng, soft_shape, 40)
    soft = (rng.random(soft_shape, dtype=np.float32) ** 12 * 0.45).astype(np.float32)  # noise below 0.45
    soft[lesions_small] = rng.uniform(0.5, 1.0, size=int(lesions_small.sum())).astype(np.float32)
    results["rethreshold_count_320x320x64"] = {
        "lesions_at_0.5": label_components(soft > 0.5, 6)[1],
        "cc3d_6conn": timed(lambda: label_components(soft > 0.5, 6)[1], args.repeat),
        "target_ms": 50,
    }
    results["sweep_19_thresholds_320x320x64"] = timed(lambda: sweep_case(soft, lesions_small, 1.0), 3)

    results["machine"] = {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                          "numpy": np.__version__, "platform": platform.platform(),
                          "note": "shared 2-core machine; other jobs may have been running"}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def _corners() -> np.ndarray:
    """The 8 corners of a 3x3x3 cube: removing them from a full cube gives the 18-connectivity structure."""
    corners = np.zeros((3, 3, 3), dtype=bool)
    corners[::2, ::2, ::2] = True
    return corners


if __name__ == "__main__":
    main()
