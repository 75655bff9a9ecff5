#!/usr/bin/env bash
# Set up ./.venv if needed, then run the language-model demo on the embedded Shakespeare plays.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
exec bash examples/language_model/demo.sh "$@"
