#!/usr/bin/env bash
# Create (or reuse) the virtual environment .venv/ at the repository root and install SpinalLesionSeg into it
# with its test tools. Idempotent: a second run with unchanged requirements returns in a second.
#
#   PYTHON=python3.12 bash scripts/setup.sh    # choose the interpreter (default: python3.11, else python3)
#   TORCH_SPEC="torch==2.14.1 torchvision==0.29.1"   # the torch build to install first (default shown)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
torch_spec="${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
venv="$root/.venv"

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv with $("$python" --version 2>&1)" >&2
  "$python" -m venv "$venv"
fi

# The QC page's browser test drives Debian's Chromium (Playwright's own browser download is never used). Checked
# before the stamp, so an existing environment gets it too; never fails the setup (the test is then skipped).
if [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing Debian's chromium for the QC-page browser test" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq chromium >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } || true
  fi
  [ -x /usr/bin/chromium ] ||
    echo "setup: no /usr/bin/chromium (installing needs root and apt-get): the QC-page browser test will be skipped" >&2
fi

# The report's tests read its PDF back with poppler's pdftotext, pdfimages and pdftoppm (Debian's poppler-utils),
# installed the same way as Chromium; without it those tests are skipped.
if ! command -v pdftotext >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing Debian's poppler-utils for the report's PDF tests" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq poppler-utils >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq poppler-utils >/dev/null 2>&1; } || true
  fi
  command -v pdftotext >/dev/null 2>&1 ||
    echo "setup: no pdftotext (installing poppler-utils needs root and apt-get): the report's PDF tests will be skipped" >&2
fi

# Reinstall only when what we install changed: the stamp records the inputs of the last successful install.
stamp="$venv/.spinal-lesion-seg-setup"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1) $torch_spec"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "setup: installing dependencies into $venv (first run takes a few minutes)" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
# torch first, so nnunetv2's own torch requirement is already met by the build chosen here.
# shellcheck disable=SC2086
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check $torch_spec
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test]"
echo "$want" > "$stamp"
echo "setup: done ($("$venv/bin/spinal-lesion-seg" --version))" >&2
