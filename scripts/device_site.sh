#!/usr/bin/env bash
# Pack what a lent GPU machine lacks to run the whole pipeline, for bench/inference.py on a GPU (issue 17).
#
# The device image has Python 3.12 with torch, scipy, scikit-image, pandas, tifffile, timm and einops, but not
# SimpleITK, nnunetv2 and their small dependencies (blosc2's ndindex and numexpr too), and a call carries at most
# 64 MiB. SimpleITK's wheel alone is 53 MB; unpacked and packed again with xz, everything needed is about 40 MB.
# This script downloads the cp312 wheels from PyPI (acvl-utils ships no wheel: built here from its sdist),
# installs them into a folder without their dependencies, packs that folder as .gpusite/site.tar.xz and adds the
# two real images the benchmarks read, in the folders they have under ../shared/data. .gpusite/ is ignored by
# git; nothing of it is committed. Run here once (about 2 minutes), then, in one device call carrying .gpusite
# (with the tracked tree, about 55 MB), scripts/device_run.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$root/.venv/bin/python"
out="$root/.gpusite"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
grep -qx '/.gpusite/' "$root/.git/info/exclude" 2>/dev/null || echo '/.gpusite/' >> "$root/.git/info/exclude"

wheels=(SimpleITK==2.5.3 nnunetv2==2.8.1 dynamic-network-architectures==0.4.4 batchgenerators==0.25.5
        batchgeneratorsv2==0.3.6 blosc2 ndindex numexpr nibabel pydicom connected-components-3d yacs graphviz
        future unittest2)
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d "$work/wheels" "${wheels[@]}"
"$python" -m pip wheel -q --no-deps acvl-utils==0.2.6 -w "$work/wheels"
"$python" -m pip install -q --no-deps --no-compile --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" --target "$work/site" "$work"/wheels/*.whl
mkdir -p "$out"
tar -cJf "$out/site.tar.xz" -C "$work/site" .
for image in sct_tutorial_data/t2_ms/t2.nii.gz sct_testing_data/t2/t2.nii.gz; do
    install -D -m 644 "$root/../shared/data/$image" "$out/data/$image"
done
du -sh "$out"/* "$out"/data/*/*
