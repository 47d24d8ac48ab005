"""Dataset throughput in images per hour, in one run: ``batch --jobs 1``, ``batch --jobs 2``, a re-run (everything
up to date), and stock nnU-Net over the same images (``nnUNetv2_predict_from_modelfolder`` on a folder: nnU-Net's
own way to run a dataset, with its preprocessing and export worker processes).

Dataset: ``--images`` real scans from ``../shared/data`` laid out as BIDS (alternately the sagittal T2w, 60x55x52 at
1 mm, flipped or not, and a 96x96x19 crop of the axial T2w at 0.6875x0.6875x7.5 mm), one subject each. Each
configuration starts from a fresh copy, so nothing is cached between them; wall times include process start and
model loading, as a user waits for them.

    .venv/bin/python bench/batch.py --images 8 --folds 0

Writes ``bench/results/batch_cpu.json``; figures go into docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference import timed_process  # noqa: E402  (the benchmark's one timing rule)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DEMO = ROOT / "SpinalLesionSeg" / "Resources" / "Models" / "demo"
RESULTS = ROOT / "bench" / "results"


def build_dataset(root: Path, count: int) -> list[Path]:
    """``count`` subjects with one real T2w each (see the module docstring); returns the image paths."""
    sagittal = sitk.ReadImage(str(DATA / "sct_testing_data" / "t2" / "t2.nii.gz"))
    axial = sitk.ReadImage(str(DATA / "sct_tutorial_data" / "t2_ms" / "t2.nii.gz"))[112:208, 80:176, :]
    images = []
    for n in range(count):
        image = axial if n % 2 else sitk.Flip(sagittal, [False, False, n % 4 == 2])
        path = root / f"sub-{n + 1:02d}" / "anat" / f"sub-{n + 1:02d}_T2w.nii.gz"
        path.parent.mkdir(parents=True)
        sitk.WriteImage(image, str(path), useCompression=True)
        images.append(path)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "bench", "BIDSVersion": "1.9.0"}))
    return images


def run_batch(root: Path, jobs: int, folds: list[str]) -> dict:
    command = [sys.executable, "-m", "SpinalLesionSegLib", "batch", str(root), "--model", str(DEMO), "--device",
               "cpu", "--folds", *folds, "--jobs", str(jobs)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "SpinalLesionSeg")}
    return timed_process(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def run_stock(images: list[Path], work: Path, folds: list[str]) -> dict:
    flat = work / "stock_in"
    flat.mkdir()
    for image in images:
        shutil.copy(image, flat / image.name.replace("_T2w.nii.gz", "_0000.nii.gz"))
    entry = ("import sys; from nnunetv2.inference.predict_from_raw_data import predict_entry_point_modelfolder as m; "
             "sys.argv[0] = 'nnUNetv2_predict_from_modelfolder'; m()")
    command = [sys.executable, "-c", entry, "-i", str(flat), "-o", str(work / "stock_out"), "-m", str(DEMO),
               "-f", *folds, "-step_size", "0.5", "--disable_tta", "-device", "cpu", "-npp", "2", "-nps", "2"]
    return timed_process(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def per_hour(result: dict, count: int) -> dict:
    return {**result, "images": count, "images_per_hour": round(count / result["wall_s"] * 3600, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--folds", nargs="+", default=["0"])
    args = parser.parse_args()
    results: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                 "python": platform.python_version()},
                     "model": "demo", "folds": args.folds, "device": "cpu", "configurations": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, jobs in (("ours, batch --jobs 1", 1), ("ours, batch --jobs 2", 2)):
            root = Path(tmp) / f"jobs{jobs}"
            build_dataset(root, args.images)
            results["configurations"][name] = per_hour(run_batch(root, jobs, args.folds), args.images)
            print(name, results["configurations"][name], flush=True)
        rerun = per_hour(run_batch(Path(tmp) / "jobs2", 2, args.folds), args.images)
        results["configurations"]["ours, re-run, everything up to date"] = rerun
        images = build_dataset(Path(tmp) / "stock", args.images)
        stock = per_hour(run_stock(images, Path(tmp), args.folds), args.images)
        results["configurations"]["stock nnUNetv2_predict_from_modelfolder (-npp 2 -nps 2)"] = stock
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "batch_cpu.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
