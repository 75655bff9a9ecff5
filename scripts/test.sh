#!/usr/bin/env bash
# Set up ./.venv if needed, then run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
export PATH="$PWD/.venv/bin:$PATH"
exec python -m pytest -q tests "$@"
