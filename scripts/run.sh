#!/usr/bin/env bash
# Set up .venv/ if needed, then run the spinal-lesion-seg command with the given arguments.
#   bash scripts/run.sh demo              # the main job on the embedded default
#   bash scripts/run.sh info scan.nii.gz  # any other subcommand
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
exec "$root/.venv/bin/spinal-lesion-seg" "$@"
