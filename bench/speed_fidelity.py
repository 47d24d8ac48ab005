"""Less arithmetic for the same answer on this CPU (issue 17, points 1-2): bf16 against fp32, and larger tile
steps against nnU-Net's 0.5, with the demo model.

For each input, the bundled ``demo`` model (both folds, the whole image, in-process, model loaded once) predicts in
fp32 and in bf16 (``--precision``, torch autocast); recorded per input: the network time of each, the soft-map
difference (max, 99.99th / 99.9th / 99th percentile and mean of |bf16 - fp32| over all voxels), the Dice of the
binary masks, their voxel counts, and whether the lesions agree (every lesion of each mask overlaps one of the
other, 18-connectivity as the project counts lesions). The gate (issue 17): the same lesions, Dice >= 0.98, the
99.99th percentile <= 0.02. Then the whole ``predict`` process, fp32 vs bf16, on the real axial T2w (wall time,
process start and model loading included; the issue asks for at least 1.25x). Then the tile step: 0.5 (nnU-Net's),
0.75 and 1 in fp32 on the whole axial T2w and on one phantom: network time and the same comparison against 0.5.

Inputs: the shared real images (``sct_testing_data/t2/t2.nii.gz``, sagittal; ``sct_tutorial_data/t2_ms/t2.nii.gz``,
axial, as a 192 x 192 in-plane crop and whole) and phantoms with known lesions (seeds 900000+, 1 mm).

    .venv/bin/python bench/speed_fidelity.py            # about 12 minutes on the 2-core machine

On a GPU (``--device cuda``, for a session lent one; ``--data`` where the two real images are, in the same
folders as under ``../shared/data``) the gate alone runs, for fp16 (``auto``'s choice there) and bf16 against fp32
(which cuDNN runs in TF32, torch's default; recorded), with checks of how the folds are held on the device: every
fold resident, shared tensors shared, no second copy in GPU memory, the network holding the last fold's tensors.

Writes ``bench/results/speed_fidelity_<device>.json``; figures in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SpinalLesionSeg"))
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"
PHANTOM_SEEDS = range(900_000, 900_004)
GATE = {"dice_min": 0.98, "p9999_max": 0.02}
#: The whole axial T2w (t2_ms) as the demo model's preprocessing resamples it (1 mm: z, y, x voxels).
T2MS_PREPROCESSED_SHAPE = (142, 176, 219)


def inputs(data: Path = DATA) -> dict[str, sitk.Image]:
    """The real images (under ``data``) and phantoms the gate runs on."""
    from SpinalLesionSegLib.phantom import make_phantom

    axial = sitk.ReadImage(str(data / "sct_tutorial_data" / "t2_ms" / "t2.nii.gz"))
    images = {"t2 (sagittal, real)": sitk.ReadImage(str(data / "sct_testing_data" / "t2" / "t2.nii.gz")),
              "t2_ms 192x192 crop (axial, real)": axial[64:256, 32:224, :], "t2_ms whole (axial, real)": axial}
    images.update({f"phantom {seed}": make_phantom(seed, "T2w", spacing=(1.0, 1.0, 1.0)).image
                   for seed in PHANTOM_SEEDS})
    return images


def lesions_agree(a: np.ndarray, b: np.ndarray) -> bool:
    """Every lesion (connected component) of each mask overlaps one of the other's."""
    from SpinalLesionSegLib.analysis.lesions import label_components
    from SpinalLesionSegLib.defaults import CONNECTIVITY

    for one, other in ((a, b), (b, a)):
        labels, count = label_components(one, CONNECTIVITY)
        if any(not other[labels == n].any() for n in range(1, count + 1)):
            return False
    return True


def compare(reference: object, other: object, name: str = "bf16") -> dict:
    """The soft-map difference and mask agreement of one input's two predictions (``voxels_fp32``: the
    reference's, ``voxels_<name>`` the other's)."""
    a, b = (sitk.GetArrayFromImage(p.soft).astype(np.float64) for p in (reference, other))
    diff = np.abs(a - b)
    ma, mb = sitk.GetArrayFromImage(reference.binary) > 0, sitk.GetArrayFromImage(other.binary) > 0
    dice = 1.0 if not (ma.any() or mb.any()) else 2 * (ma & mb).sum() / (ma.sum() + mb.sum())
    return {"soft_abs_diff": {"max": float(diff.max()), "p99.99": float(np.percentile(diff, 99.99)),
                              "p99.9": float(np.percentile(diff, 99.9)), "p99": float(np.percentile(diff, 99)),
                              "mean": float(diff.mean())},
            "dice": float(dice), "voxels_fp32": int(ma.sum()), f"voxels_{name}": int(mb.sum()),
            "same_lesions": lesions_agree(ma, mb)}


def in_process(model: object, low: str = "bf16", data: Path = DATA) -> dict:
    """fp32 and ``low`` (bf16 or fp16) on every input."""
    rows = {}
    for name, image in inputs(data).items():
        runs = {}
        for precision in ("fp32", low):
            prediction = model.predict(image, precision=precision)
            runs[precision] = (prediction, prediction.timings_s["predict_s"], prediction.precision.reason)
        row = compare(runs["fp32"][0], runs[low][0], low)
        row.update({"network_s": {p: round(r[1], 2) for p, r in runs.items()}, "size": list(image.GetSize()),
                    "speedup": round(runs["fp32"][1] / runs[low][1], 2)})
        row["gate_passed"] = row["same_lesions"] and row["dice"] >= GATE["dice_min"] and \
            row["soft_abs_diff"]["p99.99"] <= GATE["p9999_max"]
        rows[name] = row
        print(name, json.dumps(row), flush=True)
    return rows


def tile_steps(model: object) -> dict:
    """fp32 at tile steps 0.5 (the reference), 0.75 and 1 on the whole axial T2w and on one phantom."""
    from SpinalLesionSegLib.phantom import make_phantom

    images = {"t2_ms whole (axial, real)": sitk.ReadImage(str(DATA / "sct_tutorial_data" / "t2_ms" / "t2.nii.gz")),
              "phantom 900000": make_phantom(900_000, "T2w", spacing=(1.0, 1.0, 1.0)).image}
    rows: dict = {}
    for name, image in images.items():
        runs = {step: model.predict(image, tile_step=step) for step in (0.5, 0.75, 1.0)}
        rows[name] = {str(step): {"network_s": round(p.timings_s["predict_s"], 2),
                                  **({} if step == 0.5 else compare(runs[0.5], p))} for step, p in runs.items()}
        print(name, json.dumps(rows[name]), flush=True)
    return rows


def throughput(model: object) -> dict:
    """This CPU's measured matrix-product throughput (GFLOP/s, 2048^3, fp32 and bf16) and the demo network's
    GFLOP per forward (one patch, FlopCounterMode), to state what fraction of the hardware each path reaches."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    def matmul(dtype: object, n: int = 2048, repeats: int = 5) -> float:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        for _ in range(2):
            a @ b
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        return 2 * n ** 3 * repeats / (time.perf_counter() - started) / 1e9

    patch = model.configuration_manager.patch_size
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.predictor.network(torch.randn(1, 1, *patch))
    tiles = model.predictor._internal_get_sliding_window_slicers
    return {"patch": list(patch), "gflop_per_forward": counter.get_total_flops() / 1e9,
            "matmul_gflops": {"fp32": matmul(torch.float32), "bf16": matmul(torch.bfloat16)},
            "tiles_per_fold_t2_ms_whole": len(tiles(T2MS_PREPROCESSED_SHAPE))}


def whole_process(image: Path) -> dict:
    """``spinal-lesion-seg predict`` wall time (s), fp32 then bf16, each a fresh process."""
    times = {}
    with tempfile.TemporaryDirectory() as out:
        for precision in ("fp32", "bf16"):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "SpinalLesionSegLib", "predict", str(image), "-o",
                            f"{out}/{precision}", "--model", "demo", "--device", "cpu", "--precision", precision],
                           check=True, capture_output=True, cwd=ROOT / "SpinalLesionSeg")
            times[precision] = round(time.perf_counter() - started, 1)
    return {"image": str(image.relative_to(DATA)), "wall_s": times, "speedup": round(times["fp32"] / times["bf16"], 2)}


def folds_on_device(model: object) -> dict:
    """How a model's folds are held on its device (a GPU keeps every fold resident): each fold's tensors on the
    device, names that share a tensor still sharing it, GPU memory against the folds' distinct bytes, and whether
    the network's tensors are the last fold's own (no copy)."""
    import torch

    held = model.fold_parameters.held
    distinct = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for w in held.values() for t in w.values()}
    last, devices = held[model.folds[-1]], {str(t.device) for w in held.values() for t in w.values()}
    network = model.predictor.network.state_dict()
    return {"folds_resident": sorted(held), "devices": sorted(devices),
            "shared_kept": all(w[name] is w[f"decoder.{name}"] for w in held.values() for name in w
                               if f"decoder.{name}" in w),
            "fold_bytes_mb": round(sum(distinct.values()) / 2**20, 1),
            "gpu_allocated_mb": round(torch.cuda.memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None,
            "network_holds_last_fold": all(t.data_ptr() == last[name].data_ptr() for name, t in network.items())}


def gpu_gate(device: str, data: Path) -> dict:
    """The gate on a GPU: fp16 and bf16 against fp32 on every input, and how the folds are held."""
    import torch

    from SpinalLesionSegLib.inference.predictor import LoadedModel

    model = LoadedModel("demo", device=device)
    record = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "fp32_convolutions_in_tf32": torch.backends.cudnn.allow_tf32, "date": time.strftime("%Y-%m-%d"),
              "model": "demo (folds 0, 1)", "gate": GATE, "inputs": {}}
    for low in ("fp16", "bf16"):
        record["inputs"][low] = in_process(model, low, data)
        record[f"gate_passed_everywhere_{low}"] = all(row["gate_passed"] for row in record["inputs"][low].values())
    record["folds_on_device"] = folds_on_device(model)
    return record


def cpu_record() -> dict:
    """The CPU run: throughput, the bf16 gate, tile steps and the whole predict process."""
    import torch

    from SpinalLesionSegLib.inference.precision import cpu_has_native_bf16
    from SpinalLesionSegLib.inference.predictor import LoadedModel

    model = LoadedModel("demo", device="cpu")
    record = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
              "native_bf16": cpu_has_native_bf16(), "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d"), "model": "demo (folds 0, 1)", "gate": GATE,
              "throughput": throughput(model), "inputs": in_process(model), "tile_steps": tile_steps(model),
              "predict_process": whole_process(DATA / "sct_tutorial_data" / "t2_ms" / "t2.nii.gz")}
    record["gate_passed_everywhere"] = all(row["gate_passed"] for row in record["inputs"].values())
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu (the whole run) or cuda (the gate alone)")
    parser.add_argument("--data", type=Path, default=DATA, help="where the real images are (GPU run)")
    args = parser.parse_args()
    record = cpu_record() if args.device == "cpu" else gpu_gate(args.device, args.data)
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / f"speed_fidelity_{args.device}.json"
    target.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k not in ("inputs", "tile_steps")}, indent=2))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
