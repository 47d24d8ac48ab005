"""Where bf16's difference from fp32 comes from, and the `lesion_ms` architecture in bf16 on this CPU (issue 17).

1. **Per layer** (the bundled ``demo`` model, fold 0, one patch at the centre of the real axial T2w as nnU-Net
   preprocesses it): every convolution, normalisation and activation's output under torch.autocast(bf16) against
   fp32 (relative L2 error, ||bf16 - fp32|| / ||fp32||), then the logits and the lesion probability; and the same
   with the last layer (the segmentation head, a 1x1x1 convolution) kept in fp32, to see whether the head or the
   body makes the difference.
2. **ResEnc-L** (the ``lesion_ms`` architecture, random weights, fold 0, built as ``bench/inference.py`` builds it):
   the whole real axial T2w (two 192^3 tiles) in fp32 and in bf16, each in its own process: network time, peak
   resident memory, and the distribution of |bf16 - fp32| over the soft map (random weights: the arithmetic's
   effect, not a clinical result).

    .venv/bin/python bench/bf16_origin.py          # about 6 minutes on the 2-core machine

Writes ``bench/results/bf16_origin_cpu.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sct_tutorial_data" / "t2_ms" / "t2.nii.gz"
RESULTS = ROOT / "bench" / "results"
LEAVES = (torch.nn.Conv3d, torch.nn.ConvTranspose3d, torch.nn.InstanceNorm3d, torch.nn.LeakyReLU)


def centre_patch(model: object) -> torch.Tensor:
    """One patch at the centre of the real axial T2w, preprocessed as the predictor does (1 x C x patch)."""
    image = sitk.ReadImage(str(DATA))
    _, _, model_space = model._to_model_space([sitk.Cast(image, sitk.sitkFloat32)], None)
    data = np.stack([sitk.GetArrayFromImage(img) for img in model_space])
    tensor, _ = model._preprocess(data, list(model_space[0].GetSpacing())[::-1])
    patch = model.configuration_manager.patch_size
    start = [max(0, (size - p) // 2) for size, p in zip(tensor.shape[1:], patch)]
    window = tuple(slice(s, s + p) for s, p in zip(start, patch))
    return tensor[(slice(None), *window)][None].float()


def layer_outputs(network: torch.nn.Module, x: torch.Tensor, bf16: bool, head_fp32: bool = False) -> dict:
    """Every leaf layer's output (float32 copies, by module name) and the logits, in fp32 or under bf16 autocast."""
    outputs: dict[str, torch.Tensor] = {}
    def keep(name: str) -> object:  # a copy: the in-place LeakyReLU would overwrite the normalisation's output
        return lambda module, inputs, output: outputs.__setitem__(name, output.detach().float().clone())

    hooks = [module.register_forward_hook(keep(name)) for name, module in network.named_modules()
             if isinstance(module, LEAVES)]
    head = network.decoder.seg_layers[-1]
    original = head.forward
    if head_fp32:
        head.forward = lambda t: _fp32_call(original, t)
    try:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            outputs["logits"] = network(x).float()
    finally:
        head.forward = original
        for hook in hooks:
            hook.remove()
    return outputs


def _fp32_call(forward: object, tensor: torch.Tensor) -> torch.Tensor:
    with torch.autocast("cpu", enabled=False):
        return forward(tensor.float())


def per_layer(model: object) -> dict:
    """Relative error per layer of bf16 against fp32, and the probability difference with and without the head in
    fp32."""
    network = model.predictor.network
    network.load_state_dict(next(iter(model.fold_parameters.values())))
    x = centre_patch(model)
    reference = layer_outputs(network, x, bf16=False)
    runs = {"bf16": layer_outputs(network, x, bf16=True),
            "bf16, head in fp32": layer_outputs(network, x, bf16=True, head_fp32=True)}
    lesion = model.lesion_channel
    record = {"patch": list(x.shape[2:]), "layers": {}, "probability": {}}
    for name, ref in reference.items():
        error = (runs["bf16"][name] - ref).norm() / ref.norm().clamp_min(1e-12)
        record["layers"][name] = round(float(error), 5)
    for label, run in runs.items():
        prob = (torch.sigmoid if model.region_based else lambda t: torch.softmax(t, 1))
        diff = (prob(run["logits"])[0, lesion] - prob(reference["logits"])[0, lesion]).abs()
        record["probability"][label] = {"max": float(diff.max()), "p99.99": float(torch.quantile(diff.flatten(),
                                                                                              0.9999)),
                                        "mean": float(diff.mean())}
    return record


RESENC_RUN = """
import json, resource, sys, time
import SimpleITK as sitk
sys.path.insert(0, sys.argv[3])
from SpinalLesionSegLib.inference.predictor import LoadedModel
model = LoadedModel(sys.argv[1], folds=[0], device="cpu")
started = time.perf_counter()
prediction = model.predict(sitk.ReadImage(sys.argv[2]), precision=sys.argv[4])
sitk.WriteImage(prediction.soft, sys.argv[5])
print(json.dumps({"network_s": round(prediction.timings_s["predict_s"], 1),
                  "total_s": round(time.perf_counter() - started, 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def resenc_l() -> dict:
    """ResEnc-L, fold 0, random weights, the whole real axial T2w: fp32 and bf16, each in its own process."""
    sys.path.insert(0, str(ROOT / "bench"))
    from inference import resenc_l_folder

    record: dict = {}
    with tempfile.TemporaryDirectory() as work:
        folder = resenc_l_folder(Path(work) / "resenc-l", [0])
        for precision in ("fp32", "bf16"):
            done = subprocess.run([sys.executable, "-c", RESENC_RUN, str(folder), str(DATA), str(ROOT / "bench"),
                                   precision, f"{work}/{precision}.nii.gz"], capture_output=True, text=True,
                                  check=True)
            record[precision] = json.loads(done.stdout.strip().splitlines()[-1])
            print("resenc-l", precision, record[precision], flush=True)
        a, b = (sitk.GetArrayFromImage(sitk.ReadImage(f"{work}/{p}.nii.gz")).astype(np.float64)
                for p in ("fp32", "bf16"))
    diff = np.abs(a - b)
    record["soft_abs_diff"] = {q: float(np.percentile(diff, float(q))) for q in ("50", "99", "99.9", "99.99")}
    record["soft_abs_diff"]["max"] = float(diff.max())
    record["voxels_at_0.5"] = {"fp32": int((a >= 0.5).sum()), "bf16": int((b >= 0.5).sum())}
    return record


def main() -> None:
    from SpinalLesionSegLib.inference.predictor import LoadedModel

    record = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "per_layer": per_layer(LoadedModel("demo", folds=[0], device="cpu"))}
    print(json.dumps(record["per_layer"]["probability"]), flush=True)
    record["resenc_l"] = resenc_l()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bf16_origin_cpu.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["resenc_l"], indent=2))


if __name__ == "__main__":
    main()
