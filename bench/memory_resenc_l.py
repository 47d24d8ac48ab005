"""Where the memory of one ``lesion_ms`` forward pass goes on this CPU (issue 17: at most 4 GB asked for).

Builds the ``lesion_ms`` architecture (nnU-Net ResEnc-L, random weights) with ``dynamic_network_architectures``,
runs one 192^3 tile in bf16 (torch.autocast, as ``--precision bf16``) and in fp32, and records the process's
resident memory (MB) before and after every layer, from ``/proc/self/statm``, and its peak (``ru_maxrss``): the
layers where the peak rises, and the resident memory before the forward pass (Python, torch, the weights, the
tile). Each precision runs twice: as the network is, and "lean", with the rules ``inference/lean_memory.py`` adds
(encoder outputs let go once concatenated; under bf16, convolution weights held in bf16), the output's hash proving
the values identical. Each run is its own process, so that one does not inherit another's peak.

    .venv/bin/python bench/memory_resenc_l.py            # about 4 minutes on the 2-core machine

Writes ``bench/results/memory_resenc-l_cpu.json``; figures in docs/performance.md.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def resident_mb() -> int:
    """Current resident memory of this process (MB)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20


def peak_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def network() -> object:
    """ResEnc-L as ``lesion_ms`` plans it (6 stages, 32-320 features, 1-3-4-6-6-6 blocks), random weights."""
    import torch
    from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet

    torch.manual_seed(0)
    return ResidualEncoderUNet(
        1, 6, [32, 64, 128, 256, 320, 320], torch.nn.Conv3d, 3, [1, 2, 2, 2, 2, 2], [1, 3, 4, 6, 6, 6], 2,
        [1] * 5, conv_bias=True, norm_op=torch.nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True},
        nonlin=torch.nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=False).eval()


def make_lean(net: object, precision: str) -> None:
    """The library's rules (:mod:`SpinalLesionSegLib.inference.lean_memory`), as the predictor applies them."""
    import torch

    sys.path.insert(0, str(ROOT / "SpinalLesionSeg"))
    from SpinalLesionSegLib.inference.checkpoint import convert_shared
    from SpinalLesionSegLib.inference.lean_memory import convolution_weight_names, release_consumed_skips

    release_consumed_skips(net)
    if precision == "bf16":
        lowerable = convolution_weight_names(net)
        net.load_state_dict(convert_shared(net.state_dict(), lambda name, tensor: tensor.to(torch.bfloat16)
                                           if name in lowerable else tensor), assign=True)


def trace(precision: str, lean: bool) -> dict:
    """One forward pass of a 192^3 tile; the layers where the peak rose by more than 50 MB."""
    import contextlib
    import hashlib

    import torch

    net = network()
    if lean:
        make_lean(net, precision)
    tile = torch.randn(1, 1, 192, 192, 192)
    names = {module: name for name, module in net.named_modules()}
    rises, last = [], [peak_mb()]

    def record(module: object, *_: object) -> None:
        if peak_mb() > last[0] + 50:
            rises.append({"layer": names[module], "resident_mb": resident_mb(), "peak_mb": peak_mb()})
        last[0] = max(last[0], peak_mb())

    for module in net.modules():
        if not list(module.children()):
            module.register_forward_hook(record)
    before = resident_mb()
    context = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    started = time.perf_counter()
    with torch.inference_mode(), context:
        output = net(tile)
    return {"before_forward_mb": before, "peak_mb": peak_mb(), "forward_mb": peak_mb() - before,
            "seconds": round(time.perf_counter() - started, 1), "peak_rises": rises,
            "weights_mb": round(sum(p.numel() * p.element_size() for p in net.parameters()) / 2**20),
            "output_sha1": hashlib.sha1(output.float().numpy().tobytes()).hexdigest()}


def main() -> None:
    if len(sys.argv) == 3:  # the child: one precision, as is or lean
        print(json.dumps(trace(sys.argv[1], sys.argv[2] == "lean")))
        return
    record: dict = {"date": time.strftime("%Y-%m-%d"), "tile": [192, 192, 192]}
    for precision in ("bf16", "fp32"):
        for variant in ("as-is", "lean"):
            done = subprocess.run([sys.executable, __file__, precision, variant], capture_output=True, text=True,
                                  check=True)
            key = precision if variant == "as-is" else f"{precision}_lean"
            record[key] = json.loads(done.stdout)
            print(key, json.dumps(record[key]), flush=True)
        record[f"{precision}_lean"]["same_output"] = (record[precision]["output_sha1"]
                                                      == record[f"{precision}_lean"]["output_sha1"])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory_resenc-l_cpu.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
