#!/usr/bin/env bash
# Set up ./.venv if needed, then run the whole test suite (with the compiled kernels, then the parts that
# use them again on their PyTorch references). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
export PATH="$PWD/.venv/bin:$PATH"
# One style (pyproject.toml [tool.ruff]): lint and formatting are checked before anything runs.
ruff check .
ruff format --check .
# setup.sh builds the compiled kernels unless FAIRSEQ_LITE_BUILD_EXT=0: then a test checks that they load.
if [ "${FAIRSEQ_LITE_BUILD_EXT:-1}" != 0 ]; then export FAIRSEQ_LITE_REQUIRE_EXT=${FAIRSEQ_LITE_REQUIRE_EXT:-1}; fi
python -m pytest -q -m "not readme" tests "$@"
# The same behaviour on the PyTorch references of the compiled kernels: the kernel tests compare both
# paths already; these run training, batching and decoding end to end with the extension forced off.
FAIRSEQ_LITE_FORCE_REFERENCE=1 python -m pytest -q "$@" tests/test_training.py tests/test_criterion.py \
  tests/test_label_smoothed_ce.py tests/test_data_utils.py tests/test_token_block_dataset.py \
  tests/test_sequence_generator.py tests/test_generate_translation.py
# Second stage: fairseq 0.12.2's translation READMEs, their commands run as written (full-size models, one
# update each; the READMEs are read from fairseq's PyPI wheel, fetched once into ~/.cache/fairseq-lite).
python -m pytest -q -m readme "$@" tests
