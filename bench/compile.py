"""``--compile`` against the plain network, in two persistent workers on the same input (issue 17, point 3).

Two ``--serve`` workers one after the other, each given two jobs, all whole image in the precision ``auto`` picks
(bf16 on a CPU with native bf16, fp16 on a CUDA GPU with tensor cores): the plain network (first job, with process
start and model loading; then again), then ``--compile`` (first job: compilation included, its seconds read from the
sidecar; then again). Each worker's peak memory is its own. The compiled result is compared with the plain one
(soft-map difference, Dice, lesions): what compiling alone changes. The compiling worker gets an empty inductor
cache, so its compile time is a first one (later processes reuse the cache). The record is written after each
worker, so a run cut off in the second still keeps the first; ``compiled`` says whether the network really ran
compiled (a failed compilation falls back to the plain network, and its speed-up would mean nothing).

    .venv/bin/python bench/compile.py --model demo --device cpu
    .venv/bin/python bench/compile.py --model resenc-l --folds 0 1 2 3 4 --device cuda   # on a GPU

Writes ``bench/results/compile_<model>_<device>.json``; figures in docs/performance.md.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from inference import ROOT, agreement, common_arguments, resenc_l_folder, serve_jobs, write_record


def jobs(kind: str, model: Path, image: Path, folds: list[int], device: str, work: Path) -> list:
    """A worker's two whole-image jobs in ``auto`` precision; ``kind`` "compiled" asks for ``--compile``."""
    from SpinalLesionSegLib.inference.protocol import Job

    return [Job(inputs=[str(image)], model=str(model), device=device, folds=folds, precision="auto",
                id=f"{kind}-{turn}", output_dir=str(work / f"{kind}-{turn}"), compile=kind == "compiled")
            for turn in ("first", "second")]


def compare(work: Path) -> dict:
    """The compiled second job's soft map and mask against the plain second job's."""
    def read(name: str, role: str) -> np.ndarray:
        (path,) = (work / name).glob(f"*_lesion_{role}.nii.gz")
        return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))

    diff = np.abs(read("compiled-second", "soft").astype(np.float64) - read("plain-second", "soft"))
    return agreement(diff, read("plain-second", "seg") > 0, read("compiled-second", "seg") > 0)


def summary(results: dict, work: Path) -> dict:
    """Whether both compiled jobs ran compiled, the speed-up of the second, and what compiling changed."""
    if "compiled" not in results:
        return {}
    compiled = all(results["compiled"][job]["compile"]["compiled"] for job in ("compiled-first", "compiled-second"))
    return {"compiled": compiled, "compiled_vs_plain": compare(work),
            "speedup_compiled_second_vs_plain_second": round(
                results["plain"]["plain-second"]["wall_s"] / results["compiled"]["compiled-second"]["wall_s"], 2)}


def main() -> None:
    parser = common_arguments(__doc__)
    parser.add_argument("--work", type=Path, help="work folder, kept (default: a temporary one); an existing "
                        "resenc-l model in it is reused")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="sls-compile-"))
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "inductor", ignore_errors=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(work / "inductor")  # the worker compiles cold, as on a new machine
    if args.model == "demo":
        model, folds = ROOT / "SpinalLesionSeg" / "Resources" / "Models" / "demo", args.folds or [0, 1]
    else:
        folds = args.folds or [0]
        model = resenc_l_folder(work / "resenc-l", folds)
    results: dict = {}
    for kind in ("plain", "compiled"):
        results[kind] = serve_jobs(jobs(kind, model, args.input, folds, args.device, work), f"{kind}-first")
        record, target = write_record("compile", args, folds, results=results, **summary(results, work))
    print(json.dumps({key: record[key] for key in ("compiled", "compiled_vs_plain",
                                                   "speedup_compiled_second_vs_plain_second")}, indent=2))
    if not record["compiled"]:
        print("WARNING: the network did not run compiled (see results.compiled.*.compile.failure)")
    print({kind: {job: (row["wall_s"], row["compile"]) if isinstance(row, dict) else row
                  for job, row in runs.items()} for kind, runs in results.items()})
    print(f"wrote {target}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
