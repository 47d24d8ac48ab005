"""Network part of nnU-Net inference on a GPU at different precisions (fp32, TF32, fp16/bf16 autocast, ...).

Measures, without nnunetv2 (only stdlib, numpy, torch and dynamic_network_architectures are imported; scipy is
used when present):

1. the environment (torch/CUDA versions, device, SM count, bf16 support);
2. the forward time of the ``lesion_ms`` ResEnc-L network (``ResidualEncoderUNet``, patch 192^3, random weights)
   over the work of one 320x320x64 image: nnU-Net's sliding window with step 0.5 (9 tiles) x 5 folds = 45 forwards,
   for fp32 with TF32 off / on, fp16 and bf16 autocast, bf16 + channels_last_3d, bf16 + torch.compile, bf16 with
   the tiles batched (3 and 9) and bf16 with the five folds run as one ``torch.vmap`` over stacked weights
   (autocast, and, as autocast may not reach convolutions under vmap, bf16 weights and input); per variant: median
   seconds (2 warm-ups, median of 3), peak GPU memory, achieved TFLOP/s (FLOPs counted once with
   ``FlopCounterMode``) as a fraction of the spec-sheet dense bf16 peak and of a measured 8192^3 bf16 matmul;
3. the precision fidelity of the real demo model (folds 0 and 1, ``PlainConvUNet``) on a real T2w scan: full
   sliding window with Gaussian weighting in fp32 (TF32 off), fp16 and bf16 autocast; differences of the lesion
   probability against fp32, Dice of the 0.5 masks, lesion components and the time of each precision.

The demo model and the prepared image are read from the repository's ``.gpubench/`` folder (git-ignored), which
``--prepare`` fills on a machine that has the repository's virtual environment (SimpleITK is imported there only).

Run from the repository root (``--quick``: tiny sizes, about 1.5 min on one CPU thread, for testing; fp16 is
skipped on a CPU, where conv3d has no fast fp16 kernel):

    python bench/gpu_network.py --out DIR [--quick] [--variants fp32_tf32_off,bf16_autocast] [--skip-fidelity]
                                [--skip-resenc] [--deadline-s 420]
    .venv/bin/python bench/gpu_network.py --prepare      # once, to fill .gpubench/

``.gpubench/`` is git-ignored: a run on another machine needs it copied along. On the lent GPU machine (no
package index there), with the dynamic_network_architectures wheel downloaded into ``.whl/`` (git-ignored too) and
both folders carried: ``pip install --no-index --no-deps --target /tmp/site .whl/*.whl; PYTHONPATH=/tmp/site python3
bench/gpu_network.py --out $OUT``. Results of the lent H200: ``bench/results/gpu_network_h200_run*.json``. The
fidelity part runs first, the ResEnc-L variants after it, torch.compile last; no variant starts after
``--deadline-s``.

Writes ``DIR/gpu_network.json`` (rewritten after every step, so a cut-off run keeps what it measured) and prints a
short summary.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import gc
import importlib
import json
import math
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from dynamic_network_architectures.architectures.unet import (
    PlainConvUNet,
    ResidualEncoderUNet,
)

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / ".gpubench"
DEMO_SRC = REPO / "SpinalLesionSeg" / "Resources" / "Models" / "demo"
T2_SRC = Path("/work/shared/data/sct_tutorial_data/t2_ms/t2.nii.gz")
IMAGE_FILE = "t2ms_zscore.npy"
DEMO_FOLDS = (0, 1)
# Spec-sheet dense (no sparsity) BF16 tensor-core peaks in TFLOP/s; first matching name fragment wins.
SPEC_BF16_PEAKS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H200", 989.0), ("H100", 989.0))
CPU_FP16_SKIP = "fp16 conv3d on CPU has no fast kernel (~100x slower than fp32): CUDA only"
AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}

VARIANTS: list[dict[str, Any]] = [
    {"name": "fp32_tf32_off", "amp": None, "tf32": False},
    {"name": "fp32_tf32_on", "amp": None, "tf32": True, "cuda_only": True},
    {"name": "fp16_autocast", "amp": "fp16"},
    {"name": "bf16_autocast", "amp": "bf16"},
    {"name": "bf16_channels_last_3d", "amp": "bf16", "channels_last": True},
    {"name": "bf16_batch3", "amp": "bf16", "batch": 3},
    {"name": "bf16_batch9", "amp": "bf16", "batch": 9},
    {"name": "bf16_vmap_folds", "amp": "bf16", "vmap": True},
    # autocast does not reach convolutions under torch.vmap (seen on CPU, torch 2.14): weights and input in bf16
    {"name": "bf16_vmap_folds_cast", "amp": None, "vmap": True, "cast": "bf16"},
    {"name": "bf16_compile", "amp": "bf16", "compile": True},
    {"name": "fp16_batch9", "amp": "fp16", "batch": 9},
    {"name": "fp16_compile", "amp": "fp16", "compile": True},
    {"name": "fp16_compile_batch9", "amp": "fp16", "compile": True, "batch": 9},
    {"name": "bf16_compile_batch9", "amp": "bf16", "compile": True, "batch": 9},
]


@dataclass
class Config:
    """Sizes of one run: the full GPU benchmark or the ``--quick`` CPU test."""

    quick: bool
    patch: tuple[int, int, int] = (192, 192, 192)
    image: tuple[int, int, int] = (320, 320, 64)
    n_folds: int = 5
    feature_div: int = 1
    warmups: int = 2
    repeats: int = 3
    matmul_n: int = 8192
    matmul_warmups: int = 3
    matmul_repeats: int = 10
    fidelity_crop: tuple[int, int, int] | None = None
    step: float = 0.5
    notes: list[str] = field(default_factory=list)

    @classmethod
    def make(cls, quick: bool) -> Config:
        if not quick:
            return cls(quick=False)
        return cls(quick=True, patch=(64, 64, 64), image=(128, 128, 32), n_folds=2, feature_div=4, warmups=1,
                   repeats=1, matmul_n=512, matmul_warmups=1, matmul_repeats=3, fidelity_crop=(64, 96, 96),
                   notes=["quick: tiny sizes, 1 warm-up + 1 timed run, for testing only"])


def log(message: str) -> None:
    print(message, flush=True)


def error_record(exc: BaseException) -> dict[str, str]:
    """``{"error": ...}`` for a failed step, with the last lines of its traceback."""
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return {"error": f"{type(exc).__name__}: {exc}"[:2000], "traceback_tail": "".join(tb)[-1500:]}


def save(report: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gpu_network.json").write_text(json.dumps(report, indent=1, default=str) + "\n")


# --------------------------------------------------------------------------------------------- device helpers


def is_cuda(device: torch.device) -> bool:
    return device.type == "cuda"


def sync(device: torch.device) -> None:
    if is_cuda(device):
        torch.cuda.synchronize(device)


def cleanup(device: torch.device) -> None:
    gc.collect()
    if is_cuda(device):
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def memory_allocated(device: torch.device) -> int | None:
    return torch.cuda.memory_allocated(device) if is_cuda(device) else None


def peak_memory(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if is_cuda(device) else None


def set_tf32(device: torch.device, enabled: bool | None) -> dict[str, Any]:
    """TF32 for cuDNN convolutions and CUDA matmuls; ``None`` restores torch's defaults (cuDNN on, matmul off)."""
    if not is_cuda(device):
        return {"tf32": "n/a (no CUDA)"}
    torch.backends.cudnn.allow_tf32 = True if enabled is None else enabled
    torch.backends.cuda.matmul.allow_tf32 = False if enabled is None else enabled
    return {"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
            "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32}


def amp_context(device: torch.device, amp: str | None) -> AbstractContextManager[Any]:
    """torch.autocast to fp16/bf16 on the device; for fp32 no autocast (explicitly disabled on CUDA)."""
    if amp is None:
        return torch.autocast(device.type, enabled=False) if is_cuda(device) else contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AMP_DTYPES[amp])


def time_runs(work: Callable[[], Any], device: torch.device, warmups: int,
              repeats: int) -> tuple[dict[str, Any], Any]:
    """Wall time of ``warmups`` + ``repeats`` calls of ``work`` (synchronised): median of the timed ones, and the
    last call's result."""
    last: list[Any] = [None]

    def once() -> float:
        last[0] = None
        sync(device)
        start = time.perf_counter()
        last[0] = work()
        sync(device)
        return time.perf_counter() - start

    warm = [once() for _ in range(warmups)]
    times = [once() for _ in range(max(1, repeats))]
    return {"median_s": statistics.median(times), "times_s": times, "warmup_s": warm}, last[0]


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__,
        "numpy": np.__version__, "cuda_version": torch.version.cuda, "device": str(device),
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
    with contextlib.suppress(Exception):
        from importlib import metadata
        env["dynamic_network_architectures"] = metadata.version("dynamic_network_architectures")
    if is_cuda(device):
        props = torch.cuda.get_device_properties(device)
        env.update(device_name=props.name, sm_count=props.multi_processor_count,
                   total_memory_bytes=props.total_memory, capability=f"{props.major}.{props.minor}",
                   bf16_supported=torch.cuda.is_bf16_supported())
    else:
        env.update(device_name=platform.processor() or "cpu", cpu_threads=torch.get_num_threads())
    return env


def spec_peak(device: torch.device) -> dict[str, Any]:
    if not is_cuda(device):
        return {"tflops": None, "source": "no CUDA device"}
    name = torch.cuda.get_device_name(device)
    for fragment, tflops in SPEC_BF16_PEAKS:
        if fragment in name:
            return {"tflops": tflops, "source": f"spec-sheet dense BF16 for '{fragment}' (device '{name}')"}
    return {"tflops": None, "source": f"no spec figure for '{name}'"}


def matmul_throughput(device: torch.device, cfg: Config) -> dict[str, Any]:
    """Measured bf16 matmul throughput (n x n x n) on the device."""
    n = cfg.matmul_n
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    timing, _ = time_runs(lambda: torch.matmul(a, b), device, cfg.matmul_warmups, cfg.matmul_repeats)
    flops = 2 * n ** 3
    return {"n": n, "dtype": "bfloat16", **timing, "tflops": flops / timing["median_s"] / 1e12}


# --------------------------------------------------------------------------------------------- sliding window


def compute_steps(image_size: tuple[int, ...], tile_size: tuple[int, ...], step: float) -> list[list[int]]:
    """nnU-Net's tile offsets: ceil((size - patch) / (patch * step)) + 1 steps spread evenly, rounded."""
    steps = []
    for size, tile in zip(image_size, tile_size):
        n_steps = math.ceil((size - tile) / (tile * step)) + 1
        actual = (size - tile) / (n_steps - 1) if n_steps > 1 else 0.0
        steps.append([round(actual * i) for i in range(n_steps)])
    return steps


def tile_slices(image_size: tuple[int, ...], tile_size: tuple[int, ...], step: float) -> list[tuple[slice, ...]]:
    steps = compute_steps(image_size, tile_size, step)
    return [tuple(slice(o, o + t) for o, t in zip(offsets, tile_size))
            for offsets in np.array(np.meshgrid(*steps, indexing="ij")).reshape(len(steps), -1).T.tolist()]


def padded_shape(image: tuple[int, ...], patch: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(max(i, p) for i, p in zip(image, patch))


# --------------------------------------------------------------------------------------------- ResEnc-L timing


def resenc_kwargs(feature_div: int) -> dict[str, Any]:
    """The ``lesion_ms`` ResEnc-L architecture (features divided by ``feature_div`` for --quick)."""
    return {
        "input_channels": 1, "n_stages": 6,
        "features_per_stage": [f // feature_div for f in (32, 64, 128, 256, 320, 320)],
        "conv_op": torch.nn.Conv3d, "kernel_sizes": [[3, 3, 3]] * 6, "strides": [[1, 1, 1]] + [[2, 2, 2]] * 5,
        "n_blocks_per_stage": [1, 3, 4, 6, 6, 6], "num_classes": 2, "n_conv_per_stage_decoder": [1] * 5,
        "conv_bias": True, "norm_op": torch.nn.InstanceNorm3d, "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None, "nonlin": torch.nn.LeakyReLU, "nonlin_kwargs": {"inplace": True},
        "deep_supervision": False}


def build_resenc_folds(cfg: Config, device: torch.device) -> list[torch.nn.Module]:
    models = []
    for fold in range(cfg.n_folds):
        torch.manual_seed(fold)
        models.append(ResidualEncoderUNet(**resenc_kwargs(cfg.feature_div)).to(device).eval())
    return models


def make_tiles(cfg: Config, device: torch.device) -> list[torch.Tensor]:
    """The padded random image cut into the sliding-window tiles (contiguous, each (1, 1, *patch))."""
    generator = torch.Generator().manual_seed(1234)
    shape = padded_shape(cfg.image, cfg.patch)
    image = torch.randn((1, 1, *cfg.image), generator=generator)
    padded = torch.zeros((1, 1, *shape))
    padded[(slice(None), slice(None), *(slice(0, s) for s in cfg.image))] = image
    slices = tile_slices(shape, cfg.patch, cfg.step)
    return [padded[(slice(None), slice(None), *sl)].contiguous().to(device) for sl in slices]


def count_flops(model: torch.nn.Module, tile: torch.Tensor, device: torch.device) -> tuple[int, torch.Tensor]:
    """FLOPs of one fp32 forward (TF32 off) counted by FlopCounterMode, and its output (the reference logits)."""
    from torch.utils.flop_counter import FlopCounterMode

    set_tf32(device, False)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), amp_context(device, None), counter:
        out = model(tile).float()
    set_tf32(device, None)
    return int(counter.get_total_flops()), out


def prepare_nets(models: list[torch.nn.Module], spec: dict[str, Any]) -> list[Any]:
    if spec.get("channels_last"):
        return [copy.deepcopy(m).to(memory_format=torch.channels_last_3d) for m in models]
    if spec.get("compile"):
        return [torch.compile(m) for m in models]
    return list(models)


def batch_inputs(tiles: list[torch.Tensor], spec: dict[str, Any]) -> list[torch.Tensor]:
    size = spec.get("batch", 1)
    inputs = [torch.cat(tiles[i:i + size]) for i in range(0, len(tiles), size)] if size > 1 else list(tiles)
    if spec.get("channels_last"):
        inputs = [x.contiguous(memory_format=torch.channels_last_3d) for x in inputs]
    return inputs


Runner = tuple[Callable[[], None], Callable[[], torch.Tensor]]


def loop_runner(models: list[torch.nn.Module], tiles: list[torch.Tensor], spec: dict[str, Any],
                device: torch.device) -> Runner:
    """All folds x all (batched) tiles, one forward each; the probe returns fold 0's logits of tile 0."""
    nets, inputs = prepare_nets(models, spec), batch_inputs(tiles, spec)

    def work() -> None:
        with torch.inference_mode(), amp_context(device, spec["amp"]):
            for net in nets:
                for x in inputs:
                    net(x)

    def probe() -> torch.Tensor:
        with torch.inference_mode(), amp_context(device, spec["amp"]):
            return nets[0](inputs[0])[:1]

    return work, probe


def vmap_runner(models: list[torch.nn.Module], tiles: list[torch.Tensor], spec: dict[str, Any],
                device: torch.device) -> Runner:
    """The folds batched in one pass: stacked weights, functional_call, vmap over the fold dimension (with
    ``cast``: weights and tiles converted to that dtype instead of autocast)."""
    params, buffers = torch.func.stack_module_state(models)
    if spec.get("cast"):
        dtype = AMP_DTYPES[spec["cast"]]
        params = {k: v.to(dtype) if v.is_floating_point() else v for k, v in params.items()}
        buffers = {k: v.to(dtype) if v.is_floating_point() else v for k, v in buffers.items()}
        tiles = [t.to(dtype) for t in tiles]
    base = copy.deepcopy(models[0]).to("meta")

    def call(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(base, (p, b), (x,))

    folds = torch.vmap(call, in_dims=(0, 0, None))

    def work() -> None:
        with torch.inference_mode(), amp_context(device, spec["amp"]):
            for x in tiles:
                folds(params, buffers, x)

    def probe() -> torch.Tensor:
        with torch.inference_mode(), amp_context(device, spec["amp"]):
            return folds(params, buffers, tiles[0])[0]

    return work, probe


def throughput(result: dict[str, Any], total_flops: int, peak: dict[str, Any], matmul: dict[str, Any]) -> None:
    tflops = total_flops / result["median_s"] / 1e12
    result["tflops"] = tflops
    result["fraction_of_spec_bf16_peak"] = tflops / peak["tflops"] if peak.get("tflops") else None
    result["fraction_of_measured_bf16_matmul"] = tflops / matmul["tflops"] if matmul.get("tflops") else None


def bench_variant(spec: dict[str, Any], models: list[torch.nn.Module], tiles: list[torch.Tensor],
                  ctx: dict[str, Any], cfg: Config, device: torch.device) -> dict[str, Any]:
    """Time one variant; any failure becomes ``{"error": ...}``."""
    result: dict[str, Any] = {"spec": {k: v for k, v in spec.items() if k != "name"}}
    if spec.get("cuda_only") and not is_cuda(device):
        return {**result, "skipped": "needs CUDA (TF32 toggle)"}
    if spec["amp"] == "fp16" and not is_cuda(device):
        return {**result, "skipped": CPU_FP16_SKIP}
    runner: Runner | None = None
    try:
        result["flags"] = set_tf32(device, spec.get("tf32"))
        cleanup(device)
        result["allocated_before_bytes"] = memory_allocated(device)
        runner = (vmap_runner if spec.get("vmap") else loop_runner)(models, tiles, spec, device)
        result.update(time_runs(runner[0], device, cfg.warmups, cfg.repeats)[0])
        result["peak_memory_bytes"] = peak_memory(device)
        throughput(result, ctx["total_flops"], ctx["spec_peak"], ctx["matmul"])
        probe = runner[1]()
        result["probe_output_dtype"] = str(probe.dtype)
        if spec["amp"] is not None and probe.dtype != AMP_DTYPES[spec["amp"]]:
            result["warning"] = f"autocast to {spec['amp']} did not take effect (output {probe.dtype})"
        result["probe_max_abs_diff_vs_fp32"] = (probe.float() - ctx["reference"]).abs().max().item()
    except Exception as exc:  # noqa: BLE001 - one failing variant must not stop the benchmark
        result.update(error_record(exc))
    finally:
        del runner
        if spec.get("compile"):
            with contextlib.suppress(Exception):
                torch._dynamo.reset()  # drop the compiled graphs before the next step
        set_tf32(device, None)
        cleanup(device)
    return result


def resenc_setup(cfg: Config, device: torch.device, report: dict[str, Any]) -> dict[str, Any]:
    """Models, tiles, FLOP count, reference logits and the throughput yardsticks."""
    section = report["resenc"]
    models = build_resenc_folds(cfg, device)
    tiles = make_tiles(cfg, device)
    shape = padded_shape(cfg.image, cfg.patch)
    section["workload"] = {
        "patch": cfg.patch, "image": cfg.image, "padded_image": shape, "step": cfg.step,
        "tile_offsets": compute_steps(shape, cfg.patch, cfg.step), "n_tiles": len(tiles), "n_folds": len(models),
        "forwards": len(tiles) * len(models), "params_per_fold": sum(p.numel() for p in models[0].parameters()),
        "architecture": {k: (v.__name__ if isinstance(v, type) else v) for k, v in resenc_kwargs(cfg.feature_div)
                         .items()}}
    flops, reference = count_flops(models[0], tiles[0], device)
    section["flops_per_forward"] = flops
    section["total_flops"] = flops * len(tiles) * len(models)
    log(f"  {len(models)} folds x {len(tiles)} tiles, {flops / 1e12:.3f} TFLOP per forward")
    report["spec_bf16_peak"] = spec_peak(device)
    try:
        report["matmul_bf16"] = matmul_throughput(device, cfg)
        log(f"  bf16 matmul {cfg.matmul_n}^3: {report['matmul_bf16']['tflops']:.1f} TFLOP/s")
    except Exception as exc:  # noqa: BLE001
        report["matmul_bf16"] = error_record(exc)
    return {"models": models, "tiles": tiles, "reference": reference, "total_flops": section["total_flops"],
            "spec_peak": report["spec_bf16_peak"], "matmul": report["matmul_bf16"]}


def resenc_section(cfg: Config, device: torch.device, report: dict[str, Any], out: Path,
                   selected: list[str] | None, deadline: float) -> None:
    report["resenc"] = {"variants": {}}
    if is_cuda(device):
        torch.backends.cudnn.benchmark = True  # as nnU-Net's predictor does on CUDA
    report["resenc"]["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    ctx = resenc_setup(cfg, device, report)
    save(report, out)
    for spec in VARIANTS:
        if selected is not None and spec["name"] not in selected:
            continue
        log(f"  variant {spec['name']} ...")
        if time.perf_counter() > deadline:
            result = {"skipped": "deadline (--deadline-s) passed before this variant"}
        else:
            result = bench_variant(spec, ctx["models"], ctx["tiles"], ctx, cfg, device)
        report["resenc"]["variants"][spec["name"]] = result
        log("    " + variant_line(spec["name"], result))
        save(report, out)


def variant_line(name: str, r: dict[str, Any]) -> str:
    if "median_s" not in r:
        return f"{name:24s} {r.get('skipped') or r.get('error', '?')[:150]}"
    frac = r.get("fraction_of_spec_bf16_peak")
    mm = r.get("fraction_of_measured_bf16_matmul")
    mem = r.get("peak_memory_bytes")
    return (f"{name:24s} {r['median_s']:8.3f} s {r['tflops']:7.1f} TFLOP/s "
            f"{'' if frac is None else f'{100 * frac:5.1f}% spec '}{'' if mm is None else f'{100 * mm:5.1f}% mm '}"
            f"{'' if mem is None else f'peak {mem / 2**30:6.2f} GiB '}diff {r.get('probe_max_abs_diff_vs_fp32')}"
            f"{' WARNING ' + r['warning'] if 'warning' in r else ''}")


# --------------------------------------------------------------------------------------------- demo-model fidelity


def resolve(dotted: str | None) -> Any:
    if dotted is None:
        return None
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def label_layout(dataset: dict[str, Any]) -> dict[str, Any]:
    """Heads and the lesion channel: sigmoid per foreground region when labels are lists, else softmax."""
    labels = dataset["labels"]
    regions = any(isinstance(v, (list, tuple)) for v in labels.values())
    if regions:
        foreground = [k for k, v in labels.items() if v != 0 and k != "background"]
        return {"regions": True, "num_classes": len(foreground), "channel_names": foreground,
                "lesion_channel": foreground.index("lesion"), "nonlin": "sigmoid"}
    return {"regions": False, "num_classes": len(labels), "lesion_channel": int(labels["lesion"]),
            "channel_names": sorted(labels, key=lambda k: labels[k]), "nonlin": "softmax"}


def load_weights(fold: int) -> tuple[dict[str, torch.Tensor], str]:
    checkpoint = DATA_DIR / "demo" / f"fold_{fold}" / "checkpoint_final.pth"
    try:
        return torch.load(checkpoint, map_location="cpu", weights_only=True)["network_weights"], str(checkpoint)
    except Exception:  # noqa: BLE001 - fall back to the plain state dict prepared ahead of time
        fallback = DATA_DIR / f"demo_fold{fold}.pt"
        return torch.load(fallback, map_location="cpu", weights_only=True), str(fallback)


def build_demo_nets(device: torch.device) -> tuple[list[torch.nn.Module], dict[str, Any]]:
    plans = json.loads((DATA_DIR / "demo" / "plans.json").read_text())
    dataset = json.loads((DATA_DIR / "demo" / "dataset.json").read_text())
    config = plans["configurations"]["3d_fullres"]
    arch = config["architecture"]
    kwargs = dict(arch["arch_kwargs"])
    for key in arch.get("_kw_requires_import", []):
        kwargs[key] = resolve(kwargs.get(key))
    layout = label_layout(dataset)
    nets, sources = [], []
    for fold in DEMO_FOLDS:
        net = PlainConvUNet(input_channels=1, num_classes=layout["num_classes"], deep_supervision=False, **kwargs)
        weights, source = load_weights(fold)
        net.load_state_dict(weights)
        nets.append(net.to(device).eval())
        sources.append(source)
    info = {"network_class": arch["network_class_name"], "patch_size": config["patch_size"],
            "weights": sources, **layout}
    return nets, info


def gaussian_map(patch: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """nnU-Net's importance map: sigma = patch / 8 around patch // 2, max 1, zeros -> smallest non-zero."""
    try:
        from scipy.ndimage import gaussian_filter

        delta = np.zeros(patch)
        delta[tuple(p // 2 for p in patch)] = 1
        gauss = gaussian_filter(delta, [p / 8 for p in patch], 0, mode="constant", cval=0)
    except ImportError:
        axes = [np.exp(-((np.arange(p) - p // 2) ** 2) / (2 * (p / 8) ** 2)) for p in patch]
        gauss = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    gauss = torch.from_numpy(gauss / gauss.max()).float().to(device)
    gauss[gauss == 0] = gauss[gauss > 0].min()
    return gauss


def sliding_window(nets: list[torch.nn.Module], image: torch.Tensor, patch: tuple[int, ...], amp: str | None,
                   device: torch.device) -> torch.Tensor:
    """Fold-averaged logits (C, *image) of a Gaussian-weighted sliding window, accumulated in float32."""
    shape = tuple(image.shape)
    gauss = gaussian_map(patch, device)
    slices = tile_slices(shape, patch, 0.5)
    weights = torch.zeros(shape, device=device)
    for sl in slices:
        weights[sl] += gauss
    total = None
    for net in nets:
        logits = None
        with torch.inference_mode(), amp_context(device, amp):
            for sl in slices:
                out = net(image[sl][None, None])[0].float()
                logits = torch.zeros((out.shape[0], *shape), device=device) if logits is None else logits
                logits[(slice(None), *sl)] += out * gauss
        total = logits / weights if total is None else total + logits / weights
    return total / len(nets)


def probabilities(logits: torch.Tensor, layout: dict[str, Any]) -> np.ndarray:
    probs = torch.sigmoid(logits) if layout["regions"] else torch.softmax(logits, 0)
    return probs.cpu().numpy()


def load_image(cfg: Config, patch: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, dict[str, Any]]:
    """The prepared z-scored image (z, y, x), centre-cropped for --quick, zero-padded up to the patch size."""
    array = np.load(DATA_DIR / IMAGE_FILE)
    info: dict[str, Any] = {"file": IMAGE_FILE, "stored_dtype": str(array.dtype), "full_shape": array.shape}
    array = array.astype(np.float32)
    if cfg.fidelity_crop is not None:
        starts = [max(0, (s - c) // 2) for s, c in zip(array.shape, cfg.fidelity_crop)]
        array = array[tuple(slice(b, b + c) for b, c in zip(starts, cfg.fidelity_crop))]
        info["crop_start"] = starts
    shape = padded_shape(array.shape, patch)
    padded = np.zeros(shape, np.float32)
    padded[tuple(slice(0, s) for s in array.shape)] = array
    info["shape"] = shape
    return torch.from_numpy(padded).to(device), info


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """26-connected components (scipy.ndimage.label, or label propagation by 3x3x3 max-pooling without scipy)."""
    try:
        from scipy import ndimage

        labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
        return labels, int(count)
    except ImportError:
        fg = torch.from_numpy(mask)[None, None]
        labels = torch.where(fg, torch.arange(1, mask.size + 1, dtype=torch.float64).reshape(fg.shape), 0.0)
        while True:
            grown = torch.where(fg, torch.nn.functional.max_pool3d(labels, 3, 1, 1), 0.0)
            if torch.equal(grown, labels):
                break
            labels = grown
        values, inverse = np.unique(labels[0, 0].numpy(), return_inverse=True)
        return inverse.reshape(mask.shape), len(values) - int(values[0] == 0)


def lesion_overlap(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Components of each mask and how many of them touch no voxel of the other mask."""
    labels_a, n_a = label_components(a)
    labels_b, n_b = label_components(b)
    hit_a = set(np.unique(labels_a[b]).tolist()) - {0}
    hit_b = set(np.unique(labels_b[a]).tolist()) - {0}
    return {"components_ref": n_a, "components_other": n_b, "ref_without_overlap": n_a - len(hit_a),
            "other_without_overlap": n_b - len(hit_b), "all_overlap": n_a == len(hit_a) and n_b == len(hit_b)}


def dice(a: np.ndarray, b: np.ndarray) -> float | None:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int(np.logical_and(a, b).sum()) / total if total else None


def compare_probs(ref: np.ndarray, other: np.ndarray, layout: dict[str, Any]) -> dict[str, Any]:
    """Lesion probability differences, 0.5-mask Dice, voxel counts and components; per-channel max diff/Dice."""
    ch = layout["lesion_channel"]
    diff = np.abs(other[ch].astype(np.float64) - ref[ch])
    q9999, q999, q99 = np.percentile(diff, [99.99, 99.9, 99.0]).tolist()
    mask_ref, mask_other = ref[ch] > 0.5, other[ch] > 0.5
    result = {"lesion_prob_abs_diff": {"max": float(diff.max()), "p99.99": q9999, "p99.9": q999, "p99": q99,
                                       "mean": float(diff.mean())},
              "lesion_mask_dice": dice(mask_ref, mask_other), "lesion_voxels_ref": int(mask_ref.sum()),
              "lesion_voxels_other": int(mask_other.sum()),
              "lesion_voxels_differing": int((mask_ref != mask_other).sum()),
              "lesion_components": lesion_overlap(mask_ref, mask_other)}
    result["per_channel"] = {name: {"max_abs_diff": float(np.abs(other[i] - ref[i]).max()),
                                    "mask_dice": dice(ref[i] > 0.5, other[i] > 0.5)}
                             for i, name in enumerate(layout["channel_names"])}
    return result


def fidelity_run(nets: list[torch.nn.Module], image: torch.Tensor, info: dict[str, Any], amp: str | None,
                 cfg: Config, device: torch.device) -> tuple[np.ndarray, dict[str, Any]]:
    """Probabilities of one precision (fp32 with TF32 off) and the time of its whole 2-fold sliding window."""
    patch = tuple(info["patch_size"])
    set_tf32(device, False if amp is None else None)
    try:
        cleanup(device)
        timing, logits = time_runs(lambda: sliding_window(nets, image, patch, amp, device), device, cfg.warmups,
                                   cfg.repeats)
        return probabilities(logits, info), {**timing, "peak_memory_bytes": peak_memory(device)}
    finally:
        set_tf32(device, None)


def fidelity_section(cfg: Config, device: torch.device, report: dict[str, Any], out: Path) -> None:
    section: dict[str, Any] = {"precisions": {}}
    report["fidelity"] = section
    nets, info = build_demo_nets(device)
    patch = tuple(info["patch_size"])
    image, section["image"] = load_image(cfg, patch, device)
    section["model"] = info
    section["n_tiles"] = len(tile_slices(tuple(image.shape), patch, 0.5))
    section["notes"] = "fp32 with TF32 off; fp16/bf16 under torch.autocast; logits accumulated in float32; " \
                       "no mirroring; folds averaged on logits like nnU-Net"
    log(f"  demo model, image {tuple(image.shape)}, {section['n_tiles']} tiles x {len(nets)} folds")
    ref = None
    for amp in (None, "fp16", "bf16"):
        name = amp or "fp32"
        if amp == "fp16" and not is_cuda(device):
            section["precisions"][name] = {"skipped": CPU_FP16_SKIP}
            continue
        try:
            probs, timing = fidelity_run(nets, image, info, amp, cfg, device)
            entry: dict[str, Any] = {"timing": timing}
            if ref is None:
                ref = probs
                entry["lesion_voxels"] = int((probs[info["lesion_channel"]] > 0.5).sum())
            else:
                entry["vs_fp32"] = compare_probs(ref, probs, info)
        except Exception as exc:  # noqa: BLE001
            entry = error_record(exc)
        section["precisions"][name] = entry
        log("    " + fidelity_line(name, entry))
        save(report, out)


def fidelity_line(name: str, e: dict[str, Any]) -> str:
    if "timing" not in e:
        return f"{name:5s} {e.get('skipped') or e.get('error', '?')[:150]}"
    text = f"{name:5s} {e['timing']['median_s']:.3f} s"
    if "lesion_voxels" in e:
        text += f"  lesion voxels {e['lesion_voxels']}"
    if "vs_fp32" in e:
        v = e["vs_fp32"]
        d = v["lesion_prob_abs_diff"]
        text += (f"  max|dp| {d['max']:.2e} p99.9 {d['p99.9']:.2e}  Dice {v['lesion_mask_dice']}  "
                 f"voxels {v['lesion_voxels_ref']}->{v['lesion_voxels_other']}  "
                 f"lesions all overlap: {v['lesion_components']['all_overlap']}")
    return text


# --------------------------------------------------------------------------------------------- data preparation


def prepare_data() -> None:
    """Fill .gpubench/ (run here, with the repository's venv): the demo model and the 1 mm z-scored T2w image.

    The image is stored as float16 (the float32 array would be 22 MB, over the folder's 20 MB budget); the script
    reads it back as float32, and every precision compared sees the same input.
    """
    import shutil

    import SimpleITK as sitk  # only needed here, never on the GPU machine

    (DATA_DIR / "demo").mkdir(parents=True, exist_ok=True)
    for name in ("plans.json", "dataset.json"):
        shutil.copy2(DEMO_SRC / name, DATA_DIR / "demo" / name)
    for fold in DEMO_FOLDS:
        target = DATA_DIR / "demo" / f"fold_{fold}" / "checkpoint_final.pth"
        target.parent.mkdir(exist_ok=True)
        shutil.copy2(DEMO_SRC / f"fold_{fold}" / "checkpoint_final.pth", target)
        try:
            torch.load(target, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - keep plain tensors the GPU machine can read with weights_only
            weights = torch.load(target, map_location="cpu", weights_only=False)["network_weights"]
            torch.save({k: v.clone() for k, v in weights.items()}, DATA_DIR / f"demo_fold{fold}.pt")
    image = sitk.Cast(sitk.ReadImage(str(T2_SRC)), sitk.sitkFloat32)
    size = [round(n * s) for n, s in zip(image.GetSize(), image.GetSpacing())]
    resampled = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), (1.0, 1.0, 1.0),
                              image.GetDirection(), 0.0, sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(resampled).astype(np.float64)
    array = (array - array.mean()) / max(array.std(), 1e-8)
    np.save(DATA_DIR / IMAGE_FILE, array.astype(np.float16))
    total = sum(p.stat().st_size for p in DATA_DIR.rglob("*") if p.is_file())
    log(f"prepared {DATA_DIR}: image {array.shape} (z, y, x), {total / 1e6:.1f} MB in all")


# --------------------------------------------------------------------------------------------- main


def summary(report: dict[str, Any]) -> Iterator[str]:
    env = report.get("environment", {})
    yield f"device {env.get('device_name')} | torch {env.get('torch')} | CUDA {env.get('cuda_version')}"
    for name, entry in report.get("fidelity", {}).get("precisions", {}).items():
        yield "  demo " + fidelity_line(name, entry)
    resenc = report.get("resenc", {})
    if "flops_per_forward" in resenc:
        yield (f"ResEnc-L: {resenc['workload']['forwards']} forwards of {resenc['workload']['patch']}, "
               f"{resenc['total_flops'] / 1e12:.1f} TFLOP in all; spec peak {report['spec_bf16_peak']['tflops']}, "
               f"matmul {report.get('matmul_bf16', {}).get('tflops')}")
    for name, result in resenc.get("variants", {}).items():
        yield "  " + variant_line(name, result)


def run_section(name: str, function: Callable[[], None], report: dict[str, Any], out: Path) -> None:
    log(f"[{name}]")
    try:
        function()
    except Exception as exc:  # noqa: BLE001 - a failed section is recorded, the others still run
        report.setdefault(name, {}).update(error_record(exc))
        log(f"  {name} failed: {report[name]['error'][:300]}")
    save(report, out)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for gpu_network.json")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CPU test)")
    parser.add_argument("--variants", help="comma-separated subset of: " + ",".join(v["name"] for v in VARIANTS))
    parser.add_argument("--skip-resenc", action="store_true")
    parser.add_argument("--skip-fidelity", action="store_true")
    parser.add_argument("--deadline-s", type=float, default=420.0,
                        help="start no further ResEnc-L variant after this many seconds (default 420)")
    parser.add_argument("--prepare", action="store_true", help="fill .gpubench/ (needs SimpleITK) and exit")
    args = parser.parse_args()
    if not args.prepare and args.out is None:
        parser.error("--out is required")
    unknown = set((args.variants or "").split(",")) - {v["name"] for v in VARIANTS} - {""}
    if unknown:
        parser.error(f"unknown variants: {sorted(unknown)}")
    return args


def main() -> None:
    args = parse_args()
    if args.prepare:
        prepare_data()
        return
    cfg = Config.make(args.quick)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    report: dict[str, Any] = {"config": asdict(cfg), "environment": environment(device)}
    log(f"gpu_network: {report['environment'].get('device_name')} ({device}), quick={cfg.quick}")
    save(report, args.out)
    selected = args.variants.split(",") if args.variants else None
    deadline = start + args.deadline_s
    # the short fidelity part first, the ResEnc-L variants after it (torch.compile, the longest, comes last)
    if not args.skip_fidelity:
        run_section("fidelity", lambda: fidelity_section(cfg, device, report, args.out), report, args.out)
    if not args.skip_resenc:
        run_section("resenc", lambda: resenc_section(cfg, device, report, args.out, selected, deadline), report,
                    args.out)
    report["total_seconds"] = time.perf_counter() - start
    save(report, args.out)
    log("\n".join(summary(report)))
    log(f"total {report['total_seconds']:.1f} s -> {args.out / 'gpu_network.json'}")


if __name__ == "__main__":
    main()
