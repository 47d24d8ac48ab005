#!/usr/bin/env bash
# The GPU checks of issue 17, in one call on a lent GPU machine, after scripts/device_site.sh ran here:
#
#   run(command="bash scripts/device_run.sh", carry=[".gpusite"], timeout_s=600)
#
# 1. bench/speed_fidelity.py --device cuda: the precision gate on the GPU (fp16 and bf16 against fp32, demo
#    model, the two real images and four phantoms) and how the folds are held in GPU memory (about 1 minute);
# 2. bench/inference.py on the lesion_ms architecture, five folds: stock nnunetv2 against our worker (fp32,
#    bf16, fp16, ROIs, centred tiles), each worker result compared with the fp32 one inside its ROI (about
#    5 minutes);
# 3. bench/compile.py on the lesion_ms architecture, five folds (the model step 2 made, reused): --compile against
#    the plain network, two workers (fp16, the whole pipeline; about 2 minutes, cut off at 170 s so that the call
#    returns in its 600 s; the record is written after each worker, so a cut-off run keeps the plain one).
# Results and the figure go to $OUT as each step ends; copy them into bench/results/ and docs/figures/.
set -euo pipefail
site=/tmp/site
mkdir -p "$site" && tar -xJf .gpusite/site.tar.xz -C "$site"
export PYTHONPATH="$site:$PWD/SpinalLesionSeg" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 bench/speed_fidelity.py --device cuda --data .gpusite/data
cp bench/results/speed_fidelity_cuda.json "$OUT"/
python3 bench/inference.py --model resenc-l --folds 0 1 2 3 4 --device cuda \
    --input .gpusite/data/sct_tutorial_data/t2_ms/t2.nii.gz --configs stock-predictor ours-serve --work /tmp/bench
cp bench/results/inference_resenc-l_cuda.json docs/figures/inference_resenc-l_cuda.png "$OUT"/
timeout 170 python3 bench/compile.py --model resenc-l --folds 0 1 2 3 4 --device cuda \
    --input .gpusite/data/sct_tutorial_data/t2_ms/t2.nii.gz --work /tmp/bench || echo "bench/compile.py stopped: $?"
cp bench/results/compile_resenc-l_cuda.json "$OUT"/ || true
