"""Inference speed, side by side in one run on the same input: ours vs stock nnunetv2.

Configurations (each in its own process, so wall time includes what a user waits for and peak memory is per run):

* ``stock-cli``        -- ``nnUNetv2_predict_from_modelfolder`` (stock nnunetv2 command, run through its entry
  point), whole image;
* ``stock-predictor``  -- ``nnUNetPredictor.initialize_from_trained_model_folder`` + ``predict_from_files``;
* ``ours-cli``         -- ``spinal-lesion-seg predict``, whole image;
* ``ours-serve``       -- one persistent worker (``--serve``) given these jobs: whole image (first job: process
  start and model loading included), whole image again (model already loaded), the generous ROI, the cord + 10 mm
  ROI (the panel's default margin), then the same three in bf16 (``--precision bf16``; the panel's ``auto`` on a
  CPU with native bf16: its interactive default is the cord + 10 mm ROI in bf16), the cord + 10 mm ROI in bf16 with
  tiles centred on it (``--roi-tiles centred``), and the fast preset (the panel's *Fast*: first fold only,
  cord + 10 mm, bf16, centred tiles; it loads its model, so its network time is the figure to read); on a CUDA
  device also the whole image and the cord + 10 mm ROI in fp16 (``auto``'s choice on a GPU with tensor cores);
* ``ours-interactive`` -- the fast preset alone in a fresh worker process: its wall time and its own peak memory;
* ``ours-interactive-all-folds`` -- the same with every fold nnU-Net trains (five; for ``resenc-l`` the model
  folder is given all five, the other configurations still run ``--folds``): the whole ensemble on the
  interactive path, wall time and peak memory (one fold is in memory at a time on the CPU).

Each worker result is compared with the whole-image fp32 result of the same folds (``full-second``) inside its ROI:
soft-map difference (max, 99.99th percentile), mask Dice and whether the lesions agree (every lesion of each mask
overlaps one of the other's). The fast preset is compared with that all-folds result too.

All use the same folds, tile step 0.5, Gaussian weighting, no test-time mirroring, and the same device.
Models: ``demo`` (bundled) and ``resenc-l``, a network with the ``lesion_ms`` architecture (nnU-Net ResEnc-L,
1 mm isotropic, patch 192^3 as reported for lesion_ms) and random weights, built here (timing only).
Input: ``../shared/data/sct_tutorial_data/t2_ms/t2.nii.gz`` (320x256x19, 0.6875x0.6875x7.5 mm). ROIs, chosen by
eye around the cord (centre near voxel i 160, j 125; the cord is about 8 mm across): a generous 44 x 38 mm box
(voxels i 128-192, j 100-155, all slices) and the panel's default, the cord grown by 10 mm (28 x 28 mm:
i 140-180, j 105-145).

    .venv/bin/python bench/inference.py --model demo --device cpu
    .venv/bin/python bench/inference.py --model resenc-l --folds 0 --device cuda

Writes ``bench/results/inference_<model>_<device>.json``; figures go into docs/performance.md.
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
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DEFAULT_INPUT = ROOT.parent / "shared" / "data" / "sct_tutorial_data" / "t2_ms" / "t2.nii.gz"
T2MS_CORD_BOX_IJK = ((128, 100, 0), (192, 155, 18))
T2MS_CORD_10MM_BOX_IJK = ((140, 105, 0), (180, 145, 18))
RESENC_L_PATCH = [192, 192, 192]


#: The folds nnU-Net trains (5-fold cross-validation), as the published models ship them.
ALL_FOLDS = [0, 1, 2, 3, 4]


def resenc_l_folder(folder: Path, folds: list[int]) -> Path:
    """An nnU-Net results folder with the lesion_ms architecture and random weights (saved once, reused)."""
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    sys.path.insert(0, str(ROOT / "scripts"))
    from train_demo_model import DATASET_JSON, make_plans

    plans = make_plans(1)
    config = plans["configurations"]["3d_fullres"]
    config["patch_size"] = RESENC_L_PATCH
    config["batch_size"] = 2
    config["architecture"] = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
        "arch_kwargs": {
            "n_stages": 6, "features_per_stage": [32, 64, 128, 256, 320, 320],
            "conv_op": "torch.nn.modules.conv.Conv3d", "kernel_sizes": [[3, 3, 3]] * 6,
            "strides": [[1, 1, 1]] + [[2, 2, 2]] * 5, "n_blocks_per_stage": [1, 3, 4, 6, 6, 6],
            "n_conv_per_stage_decoder": [1] * 5, "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    plans["plans_name"] = "nnUNetResEncUNetLPlans"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps({**DATASET_JSON, "name": "resenc-l-random"}, indent=2))
    arch = config["architecture"]
    torch.manual_seed(0)
    for fold in folds:
        target = folder / f"fold_{fold}" / "checkpoint_final.pth"
        if target.exists():
            continue
        network = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"],
                                         arch["_kw_requires_import"], 1, 2, deep_supervision=False)
        target.parent.mkdir(exist_ok=True)
        torch.save({"network_weights": network.state_dict(), "trainer_name": "nnUNetTrainer",
                    "init_args": {"configuration": "3d_fullres"}, "inference_allowed_mirroring_axes": (0, 1, 2)},
                   target)
    return folder


def roi_box(image_path: Path, corners_ijk=T2MS_CORD_BOX_IJK):
    from SpinalLesionSegLib.geometry import ijk_to_ras_matrix, voxel_to_ras
    from SpinalLesionSegLib.inference.protocol import RoiBox

    ras = voxel_to_ras(ijk_to_ras_matrix(sitk.ReadImage(str(image_path))), np.array(corners_ijk, float))
    return RoiBox(tuple(ras.min(axis=0).tolist()), tuple(ras.max(axis=0).tolist()))


def timed_process(command: list[str], **kwargs) -> dict:
    """Run a command; wall time (s) and peak resident memory (MB) of it and its children."""
    started = time.perf_counter()
    process = subprocess.Popen(command, **kwargs)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} failed with {process.returncode}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def run_stock_cli(model: Path, image: Path, folds: list[int], device: str, work: Path) -> dict:
    inputs = work / "stock_in"
    inputs.mkdir(exist_ok=True)
    shutil.copy(image, inputs / "case_0000.nii.gz")
    entry = ("import sys; from nnunetv2.inference.predict_from_raw_data import predict_entry_point_modelfolder as m; "
             "sys.argv[0] = 'nnUNetv2_predict_from_modelfolder'; m()")
    command = [sys.executable, "-c", entry, "-i", str(inputs),
               "-o", str(work / "stock_cli_out"), "-m", str(model), "-f", *map(str, folds), "-step_size", "0.5",
               "--disable_tta", "-device", device, "-npp", "1", "-nps", "1"]
    return timed_process(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


STOCK_PREDICTOR = """
import sys, torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
model, image, out, device = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
folds = tuple(int(f) for f in sys.argv[5].split(","))
p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                    perform_everything_on_device=device == "cuda", device=torch.device(device), allow_tqdm=False)
p.initialize_from_trained_model_folder(model, use_folds=folds)
p.predict_from_files([[image]], [out], save_probabilities=False, overwrite=True,
                     num_processes_preprocessing=1, num_processes_segmentation_export=1)
"""


def run_stock_predictor(model: Path, image: Path, folds: list[int], device: str, work: Path) -> dict:
    command = [sys.executable, "-c", STOCK_PREDICTOR, str(model), str(image), str(work / "stock_pred" / "case"),
               device, ",".join(map(str, folds))]
    return timed_process(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_ours_cli(model: Path, image: Path, folds: list[int], device: str, work: Path) -> dict:
    command = [sys.executable, "-m", "SpinalLesionSegLib", "predict", str(image), "-o",
               str(work / "ours_cli"), "--model", str(model), "--device", device, "--folds", *map(str, folds)]
    return timed_process(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def fast_job(model: Path, image: Path, folds: list[int], device: str, out: Path,
             job_id: str = "fast-roi-cord10-bf16-fold0") -> object:
    """The panel's fast preset with ``folds`` (the preset itself: the first fold only): cord + 10 mm, bf16, tiles
    centred on the ROI."""
    from SpinalLesionSegLib.inference.protocol import Job

    return Job(inputs=[str(image)], model=str(model), device=device, folds=folds, id=job_id, output_dir=str(out),
               precision="bf16", roi_tiles="centred", roi_box=roi_box(image, T2MS_CORD_10MM_BOX_IJK))


def fresh_worker(job: object, job_file: Path) -> dict:
    """One job in a fresh worker process (start and model loading included): wall time and peak memory."""
    job_file.write_text(job.to_json())
    return timed_process([sys.executable, "-m", "SpinalLesionSegLib.inference.worker", str(job_file)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_ours_interactive(model: Path, image: Path, folds: list[int], device: str, work: Path) -> dict:
    """The fast preset alone in a fresh worker process."""
    return fresh_worker(fast_job(model, image, folds[:1], device, work / "interactive"), work / "interactive.json")


def run_ours_interactive_all_folds(model: Path, image: Path, folds: list[int], device: str, work: Path) -> dict:
    """The fast preset's settings with every fold in ``model`` (its fold_* folders), in a fresh worker process."""
    every = sorted(int(path.name.removeprefix("fold_")) for path in model.glob("fold_*"))
    job = fast_job(model, image, every, device, work / "interactive_all_folds",
                   f"fast-roi-cord10-bf16-folds{len(every)}")
    return {**fresh_worker(job, work / "interactive_all_folds.json"), "folds": every}


def run_ours_serve(model: Path, image: Path, folds: list[int], device: str, work: Path) -> dict:
    """Jobs to one persistent worker; wall time of each job as the client sees it."""
    from SpinalLesionSegLib.inference.protocol import Job

    base = {"inputs": [str(image)], "model": str(model), "device": device, "folds": folds}
    jobs = [Job(**base, id="full-first", output_dir=str(work / "serve1")),
            Job(**base, id="full-second", output_dir=str(work / "serve2")),
            Job(**base, id="roi-second", output_dir=str(work / "serve3"), roi_box=roi_box(image)),
            Job(**base, id="roi-cord10-second", output_dir=str(work / "serve4"),
                roi_box=roi_box(image, T2MS_CORD_10MM_BOX_IJK)),
            Job(**base, id="full-bf16-second", output_dir=str(work / "serve5"), precision="bf16"),
            Job(**base, id="roi-bf16-second", output_dir=str(work / "serve6"), precision="bf16",
                roi_box=roi_box(image)),
            Job(**base, id="roi-cord10-bf16-second", output_dir=str(work / "serve7"), precision="bf16",
                roi_box=roi_box(image, T2MS_CORD_10MM_BOX_IJK)),
            Job(**base, id="roi-cord10-bf16-centred-second", output_dir=str(work / "serve9"), precision="bf16",
                roi_tiles="centred", roi_box=roi_box(image, T2MS_CORD_10MM_BOX_IJK)),
            fast_job(model, image, folds[:1], device, work / "serve8")]
    if device == "cuda":  # fp16 is auto's choice on a GPU with tensor cores: its fidelity through the pipeline
        jobs[-1:-1] = [Job(**base, id="full-fp16-second", output_dir=str(work / "serve10"), precision="fp16"),
                       Job(**base, id="roi-cord10-fp16-second", output_dir=str(work / "serve11"), precision="fp16",
                           roi_box=roi_box(image, T2MS_CORD_10MM_BOX_IJK))]
    return serve_jobs(jobs, "full-first")


def serve_jobs(jobs: list, first: str) -> dict:
    """``jobs`` one after the other to one persistent worker: each job's wall time as the client sees it, its
    stage timings and the sidecar's ``compile`` record; the worker's peak memory (MB)."""
    from SpinalLesionSegLib.inference.protocol import Error, Result, message_from_json

    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "SpinalLesionSegLib.inference.worker", "--serve"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    results = {}
    for job in jobs:
        job_started = time.perf_counter()
        process.stdin.write(job.to_json() + "\n")
        process.stdin.flush()
        for line in process.stdout:
            message = message_from_json(line)
            if isinstance(message, Error):
                raise RuntimeError(message.message)
            if isinstance(message, Result):
                sidecar = json.loads(Path(message.results[0]["outputs"]["sidecar"]).read_text())
                results[job.id] = {"wall_s": round(time.perf_counter() - job_started, 2),
                                   "model_load_s": message.model_load_s,
                                   "timings_s": message.results[0]["timings_s"], "compile": sidecar.get("compile")}
                break
    process.stdin.close()
    _, _, usage = os.wait4(process.pid, 0)
    results["first_job_includes_process_start_s"] = round(results[first]["wall_s"], 2)
    results["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    results["total_s"] = round(time.perf_counter() - started, 2)
    return results


SERVE_LABELS = {"full-second": "ours, worker, whole image, fp32", "roi-second": "ours, worker, generous ROI, fp32",
                "roi-cord10-second": "ours, worker, cord + 10 mm, fp32",
                "full-bf16-second": "ours, worker, whole image, bf16",
                "roi-bf16-second": "ours, worker, generous ROI, bf16",
                "roi-cord10-bf16-second": "ours, worker, cord + 10 mm, bf16 (panel default)",
                "roi-cord10-bf16-centred-second": "ours, worker, cord + 10 mm, bf16, centred tiles",
                "fast-roi-cord10-bf16-fold0": "ours, worker, fast preset: fold 0, cord + 10 mm, bf16, centred",
                "full-fp16-second": "ours, worker, whole image, fp16 (GPU)",
                "roi-cord10-fp16-second": "ours, worker, cord + 10 mm, fp16 (GPU)"}
SERVE_DIRS = {"full-second": "serve2", "roi-second": "serve3", "roi-cord10-second": "serve4",
              "full-bf16-second": "serve5", "roi-bf16-second": "serve6", "roi-cord10-bf16-second": "serve7",
              "fast-roi-cord10-bf16-fold0": "serve8", "roi-cord10-bf16-centred-second": "serve9",
              "full-fp16-second": "serve10", "roi-cord10-fp16-second": "serve11"}


def fidelity(work: Path, image: Path) -> dict:
    """Each worker job's soft map and mask against the whole-image fp32 job's, inside the job's ROI."""
    from SpinalLesionSegLib.inference.roi import box_from_corners, roi_mask

    def read(folder: str, role: str) -> np.ndarray:
        (path,) = (work / folder).glob(f"*_lesion_{role}.nii.gz")
        return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))

    reference = sitk.ReadImage(str(image))
    soft_ref, mask_ref = read("serve2", "soft").astype(np.float64), read("serve2", "seg") > 0
    rows = {}
    for job, folder in ((job, folder) for job, folder in SERVE_DIRS.items() if (work / folder).is_dir()):
        box = {"roi": T2MS_CORD_BOX_IJK, "cord10": T2MS_CORD_10MM_BOX_IJK}.get(
            "cord10" if "cord10" in job else "roi" if "roi" in job else "", None)
        ras = roi_box(image, box) if box else None
        inside = (roi_mask(reference, box_from_corners(ras.ras_min_mm, ras.ras_max_mm)) if ras
                  else np.ones(soft_ref.shape, bool))
        rows[job] = agreement(np.abs(read(folder, "soft") - soft_ref)[inside], mask_ref & inside,
                              (read(folder, "seg") > 0) & inside)
    return rows


def agreement(diff: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict:
    """Soft-map differences ``diff`` (max, 99.99th percentile) and the agreement of masks ``a`` and ``b`` (Dice,
    voxel counts, every lesion of one overlapping one of the other)."""
    from speed_fidelity import lesions_agree

    return {"soft_abs_diff_max": float(diff.max()), "soft_abs_diff_p99.99": float(np.percentile(diff, 99.99)),
            "dice": 1.0 if not (a.any() or b.any()) else float(2 * (a & b).sum() / (a.sum() + b.sum())),
            "lesion_voxels": [int(a.sum()), int(b.sum())], "same_lesions": lesions_agree(a, b)}


def plot(record: dict, target: Path) -> Path:
    """Horizontal bars: wall time (s) of each configuration, with its ratio to the stock predictor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = record["results"]
    bars = [(label, results[key]["wall_s"]) for key, label in (
        ("stock-cli", "stock nnUNetv2_predict_from_modelfolder"), ("stock-predictor", "stock nnUNetPredictor"),
        ("ours-cli", "ours, spinal-lesion-seg predict"),
        ("ours-interactive", "ours, fast preset, fresh worker process")) if key in results]
    if "ours-interactive-all-folds" in results:  # its own folds, not the record's
        every = results["ours-interactive-all-folds"]
        bars.append((f"ours, fast preset with folds {every['folds']}, fresh worker process", every["wall_s"]))
    bars += [(label, results["ours-serve"][key]["wall_s"]) for key, label in SERVE_LABELS.items()
             if key in results.get("ours-serve", {})]
    stock = results.get("stock-predictor", {}).get("wall_s")
    figure, axes = plt.subplots(figsize=(9, 0.45 * len(bars) + 1.2))
    axes.barh([label for label, _ in bars][::-1], [s for _, s in bars][::-1], color="#4c72b0")
    for index, (_, seconds) in enumerate(bars[::-1]):
        axes.text(seconds, index, f" {seconds:.1f} s" + (f" ({stock / seconds:.1f}x)" if stock else ""),
                  va="center", fontsize=8)
    axes.set_xlabel("wall time (s), lower is better")
    axes.set_title(f"{record['model']} model, folds {record['folds']}, {record['device']} "
                   f"({record['machine']['cpus']} cores)\nt2_ms, whole image unless an ROI is named", fontsize=9)
    axes.set_xlim(0, max(s for _, s in bars) * 1.35)
    figure.tight_layout()
    figure.savefig(target, dpi=110)
    plt.close(figure)
    return target


def common_arguments(description: str) -> argparse.ArgumentParser:
    """The options every inference benchmark takes: model, folds, device, input image."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("demo", "resenc-l"), default="demo")
    parser.add_argument("--folds", type=int, nargs="+", help="default: all folds of the demo (resenc-l: 0)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    return parser


def write_record(name: str, args: argparse.Namespace, folds: list[int], **fields: object) -> tuple[dict, Path]:
    """``bench/results/<name>_<model>_<device>.json``: the run's settings, ``fields``, the machine and the date."""
    import torch

    record = {"model": args.model, "folds": folds, "device": args.device, "input": str(args.input), **fields,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                          "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
              "date": time.strftime("%Y-%m-%d")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    target = RESULTS / f"{name}_{args.model}_{args.device}.json"
    target.write_text(json.dumps(record, indent=2) + "\n")
    return record, target


def main() -> None:
    parser = common_arguments(__doc__)
    parser.add_argument("--work", type=Path, help="keep outputs here (default: a temporary folder)")
    parser.add_argument("--configs", nargs="+",
                        default=["stock-cli", "stock-predictor", "ours-cli", "ours-serve", "ours-interactive"])
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="sls-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.model == "demo":
        model, folds = ROOT / "SpinalLesionSeg" / "Resources" / "Models" / "demo", args.folds or [0, 1]
    else:
        folds = args.folds or [0]
        every = sorted(set(folds) | set(ALL_FOLDS)) if "ours-interactive-all-folds" in args.configs else folds
        model = resenc_l_folder(work / "resenc-l", every)
    runners = {"stock-cli": run_stock_cli, "stock-predictor": run_stock_predictor, "ours-cli": run_ours_cli,
               "ours-serve": run_ours_serve, "ours-interactive": run_ours_interactive,
               "ours-interactive-all-folds": run_ours_interactive_all_folds}
    results = {}
    for name in args.configs:
        print(f"{name} ...", flush=True)
        results[name] = runners[name](model, args.input, folds, args.device, work)
        print(f"  {json.dumps(results[name])}", flush=True)

    summary = {}
    if "stock-predictor" in results and "ours-serve" in results:
        stock = results["stock-predictor"]["wall_s"]
        summary = {
            "interactive_path": "generous ROI, fp32, persistent worker, model loaded (speedup_vs_stock_predictor); "
                                "the panel's default is roi-cord10-bf16-second",
            "speedup_vs_stock_predictor": round(stock / results["ours-serve"]["roi-second"]["wall_s"], 2),
            "speedup_full_image_second_job": round(stock / results["ours-serve"]["full-second"]["wall_s"], 2),
            "speedup_roi_cord_plus_10mm": round(stock / results["ours-serve"]["roi-cord10-second"]["wall_s"], 2),
            **{f"speedup_{job}": round(stock / results["ours-serve"][job]["wall_s"], 2) for job in (
                "full-bf16-second", "roi-bf16-second", "roi-cord10-bf16-second", "roi-cord10-bf16-centred-second",
                "full-fp16-second", "roi-cord10-fp16-second") if job in results["ours-serve"]},
            "speedup_fast_preset": round(stock / results["ours-serve"]["fast-roi-cord10-bf16-fold0"]["wall_s"], 2),
        }
        if "stock-cli" in results:
            summary["speedup_vs_stock_cli"] = round(
                results["stock-cli"]["wall_s"] / results["ours-serve"]["roi-second"]["wall_s"], 2)
    if "ours-serve" in results:
        results["fidelity_vs_whole_image_fp32"] = fidelity(work, args.input)
    if "stock-predictor" in results and "ours-interactive" in results:
        summary["speedup_fast_preset_fresh_process"] = round(
            results["stock-predictor"]["wall_s"] / results["ours-interactive"]["wall_s"], 2)
    record, target = write_record("inference", args, folds, roi_box_ijk=T2MS_CORD_BOX_IJK,
                                  roi_cord_10mm_box_ijk=T2MS_CORD_10MM_BOX_IJK, results=results, summary=summary)
    print(f"figure {plot(record, ROOT / 'docs' / 'figures' / f'inference_{args.model}_{args.device}.png')}")
    print(json.dumps(summary, indent=2))
    print(f"wrote {target}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
