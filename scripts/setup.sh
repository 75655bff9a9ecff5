#!/usr/bin/env bash
# Create ./.venv (once) and install fairseq-lite into it, editable.
#   bash scripts/setup.sh          # what the commands need
#   bash scripts/setup.sh test     # plus the test dependencies (pytest, the Hydra launcher/sweeper plugins)
# torch is installed first and pinned, and the package is built without build isolation, so pip
# never resolves a different (multi-GB CUDA) torch; the compiled kernels (fairseq_lite/csrc) are built
# against that torch. FAIRSEQ_LITE_BUILD_EXT=0 skips them. Reruns are fast: nothing is reinstalled unless
# setup.py or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
EXTRAS=${1:-}

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.fairseq-lite-installed"
want=$( (cat setup.py pyproject.toml scripts/setup.sh fairseq_lite/csrc/*; echo "extras=$EXTRAS") | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "import fairseq_lite, torch" 2>/dev/null; then
  exit 0
fi
echo "setup: installing torch==$TORCH_VERSION and fairseq-lite into $VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "setuptools>=70" wheel ninja
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "torch==$TORCH_VERSION"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation -e ".${EXTRAS:+[$EXTRAS]}"
echo "$want" > "$stamp"
