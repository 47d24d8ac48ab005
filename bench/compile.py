"""``--compile`` against the plain network, in one persistent worker on the same input (issue 17, point 3).

Four jobs, one after the other, to one ``--serve`` worker, all whole image in the precision ``auto`` picks (bf16 on
a CPU with native bf16, fp16 on a CUDA GPU with tensor cores): plain (first, with process start and model loading),
plain again, compiled (first: compilation included, its seconds read from the sidecar), compiled again. The
compiled result is compared with the plain one (soft-map difference, Dice, lesions): what compiling alone changes.
Peak memory is the worker's over all four jobs; compiled and plain share the network's weights.

    .venv/bin/python bench/compile.py --model demo --device cpu
    .venv/bin/python bench/compile.py --model resenc-l --folds 0 1 2 3 4 --device cuda   # on a GPU

Writes ``bench/results/compile_<model>_<device>.json``; figures in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from inference import DEFAULT_INPUT, RESULTS, ROOT, resenc_l_folder, serve_jobs
from speed_fidelity import lesions_agree

JOBS = ("plain-first", "plain-second", "compiled-first", "compiled-second")


def run(model: Path, image: Path, folds: list[int], device: str, work: Path) -> dict:
    from SpinalLesionSegLib.inference.protocol import Job

    jobs = [Job(inputs=[str(image)], model=str(model), device=device, folds=folds, precision="auto", id=name,
                output_dir=str(work / name), compile=name.startswith("compiled")) for name in JOBS]
    return serve_jobs(jobs, "plain-first")


def compare(work: Path) -> dict:
    """The compiled second job's soft map and mask against the plain second job's."""
    def read(name: str, role: str) -> np.ndarray:
        (path,) = (work / name).glob(f"*_lesion_{role}.nii.gz")
        return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))

    diff = np.abs(read("compiled-second", "soft").astype(np.float64) - read("plain-second", "soft"))
    a, b = read("plain-second", "seg") > 0, read("compiled-second", "seg") > 0
    return {"soft_abs_diff_max": float(diff.max()), "soft_abs_diff_p99.99": float(np.percentile(diff, 99.99)),
            "dice": 1.0 if not (a.any() or b.any()) else float(2 * (a & b).sum() / (a.sum() + b.sum())),
            "lesion_voxels": [int(a.sum()), int(b.sum())], "same_lesions": lesions_agree(a, b)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("demo", "resenc-l"), default="demo")
    parser.add_argument("--folds", type=int, nargs="+", help="default: the demo's folds 0 1; resenc-l: 0")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sls-compile-"))
    if args.model == "demo":
        model, folds = ROOT / "SpinalLesionSeg" / "Resources" / "Models" / "demo", args.folds or [0, 1]
    else:
        folds = args.folds or [0]
        model = resenc_l_folder(work / "resenc-l", folds)
    results = run(model, args.input, folds, args.device, work)
    import torch

    record = {"model": args.model, "folds": folds, "device": args.device, "input": str(args.input),
              "results": results, "compiled_vs_plain": compare(work),
              "speedup_compiled_second_vs_plain_second": round(
                  results["plain-second"]["wall_s"] / results["compiled-second"]["wall_s"], 2),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                          "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
              "date": time.strftime("%Y-%m-%d")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    target = RESULTS / f"compile_{args.model}_{args.device}.json"
    target.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({key: record[key] for key in ("compiled_vs_plain", "speedup_compiled_second_vs_plain_second")},
                     indent=2))
    print({job: (results[job]["wall_s"], results[job]["compile"]) for job in JOBS})
    print(f"wrote {target}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
