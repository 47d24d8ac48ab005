"""Speed of the live threshold in Slicer (issue 5): re-binarising the lesion segment from a 320x320x64 soft map
when the slider moves must feel instant (target: well under 100 ms), measured headless with slicer-core.

Times :func:`SpinalLesionSegLib.mrml.results.rethreshold_lesion_segment` (threshold, write into the segment,
fingerprint for edit detection) and, separately, :func:`segment_was_edited` (run before each update). The soft
map holds 40 blurred lesions on a 0.6 x 0.6 x 3 mm grid, so lesions cover a realistic few thousand voxels. Run
from the repository root:

    .venv/bin/python bench/rethreshold_speed.py [--repeat 15]

Writes ``bench/results/rethreshold_speed.json``; the figures go into docs/performance.md ("Live threshold").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer
from SpinalLesionSegLib.mrml.nodes import volume_node_from_image
from SpinalLesionSegLib.mrml.results import (
    create_lesion_segmentation,
    lesion_segment_id,
    rethreshold_lesion_segment,
    segment_was_edited,
    show_soft_map,
)

RESULTS = Path(__file__).resolve().parent / "results" / "rethreshold_speed.json"
SHAPE_KJI = (64, 320, 320)


def soft_map(seed: int = 0) -> sitk.Image:
    """40 random blurred ellipsoidal lesions, probabilities 0..1, on a 320x320x64 grid (0.6 x 0.6 x 3 mm)."""
    rng = np.random.default_rng(seed)
    array = np.zeros(SHAPE_KJI, np.float32)
    for _ in range(40):
        k, j, i = (rng.integers(2, n - 6) for n in SHAPE_KJI)
        array[k:k + 2, j:j + rng.integers(3, 9), i:i + rng.integers(3, 9)] = 1.0
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.6, 0.6, 3.0))
    return sitk.Clamp(sitk.SmoothingRecursiveGaussian(image, 1.0) * 1.5, sitk.sitkFloat32, 0.0, 1.0)


def timed(function, repeat: int) -> dict:
    """Median and best wall time (ms) of ``repeat`` calls after one warm-up call."""
    function(0)
    times = []
    for n in range(repeat):
        start = time.perf_counter()
        function(n + 1)
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(statistics.median(times), 2), "best_ms": round(min(times), 2), "repeat": repeat}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    app.GetColorLogic().SetMRMLScene(scene)
    app.GetColorLogic().AddDefaultColorNodes()
    soft = soft_map()
    volume = volume_node_from_image(scene, soft, "input")
    soft_node = show_soft_map(scene, soft, "soft")
    segmentation = create_lesion_segmentation(scene, soft >= 0.5, volume)
    segment_id = lesion_segment_id(segmentation)
    thresholds = np.linspace(0.1, 0.9, 17)
    voxels = []

    def rethreshold(n: int) -> None:
        voxels.append(rethreshold_lesion_segment(segmentation, segment_id, soft_node,
                                                 float(thresholds[n % len(thresholds)]), volume))

    results = {
        "grid_kji": list(SHAPE_KJI),
        "rethreshold": timed(rethreshold, args.repeat),
        "segment_was_edited": timed(lambda n: segment_was_edited(segmentation, segment_id), args.repeat),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "slicer_core": version("slicer-core")},
    }
    results["lesion_voxels_range"] = [min(voxels), max(voxels)]  # filled by the timed calls above
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
