#!/usr/bin/env bash
# Installs the real fairseq 0.12.2 (from PyPI) in a scratch virtualenv, OUTSIDE the project, so that
# fairseq-lite can be compared with it side by side (speed, data format, outputs). Never make it a
# dependency of the project. The benchmarks that use it (train_speed.py, inference_speed.py) take its python
# with --fairseq-python DIR/bin/python (default /tmp/fairseq-ref/bin/python, or $FAIRSEQ_PYTHON).
#
#   bash benchmarks/setup_fairseq_reference.sh   # venv at /tmp/fairseq-ref (override: FAIRSEQ_REF=DIR)
#   /tmp/fairseq-ref/bin/fairseq-train --help
#
# fairseq 0.12.2 does not import on Python 3.11 ("mutable default <class CommonConfig> for field common
# is not allowed: use default_factory"), and neither does the hydra-core 1.0.7 it pins. The patch below
# rewrites `name: XConf = XConf()` dataclass defaults as `field(default_factory=XConf)` in the installed
# copy, and one line of fairseq/dataclass/initialize.py that read those defaults. Takes ~3-5 minutes.
# Two more incompatibilities with torch 2.13 are worked around at run time by benchmarks/fairseq_ref_shim.py
# (the encoder's BetterTransformer fast path, and torch.load's weights_only default), not patched here.
set -euo pipefail
REF=${FAIRSEQ_REF:-/tmp/fairseq-ref}
PY=${PY:-python3}
if [[ -x "$REF/bin/fairseq-train" ]] && "$REF/bin/python" -c "import fairseq" 2>/dev/null; then
  echo "fairseq reference already at $REF"; exit 0
fi
rm -rf "$REF"; "$PY" -m venv "$REF"
CON="$REF/constraints.txt"
cat > "$CON" <<'C'
torch==2.13.0
numpy==2.4.6
Cython==3.3.1
hydra-core==1.0.7
omegaconf==2.0.6
antlr4-python3-runtime==4.8
torchaudio==2.11.0
bitarray==3.12.3
sacrebleu==2.6.0
cffi==2.1.1
regex==2026.11.15
tqdm==4.70.1
PyYAML==6.0.3
C
"$REF/bin/pip" install -q "torch==2.13.0"            # the local CPU wheel; never a CUDA torch
PIP_CONSTRAINT="$CON" "$REF/bin/pip" install -q -c "$CON" "fairseq==0.12.2"
SP=$("$REF/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
sed -i -E 's/^(\s+)(\w+): (\w+) = \3\(\)\s*$/\1\2: \3 = field(default_factory=\3)/' \
  "$SP/fairseq/dataclass/configs.py" "$SP/fairseq/models/transformer/transformer_config.py" \
  "$SP/hydra/conf/__init__.py"
sed -i -E 's/field\(default=QuantNoiseConfig\(\)\)/field(default_factory=QuantNoiseConfig)/' \
  "$SP/fairseq/models/transformer/transformer_config.py"
sed -i -E 's/^(\s+)v = FairseqConfig\.__dataclass_fields__\[k\]\.default$/\1_f = FairseqConfig.__dataclass_fields__[k]; v = _f.default_factory() if callable(_f.default_factory) else _f.default/' \
  "$SP/fairseq/dataclass/initialize.py"
"$REF/bin/python" -c "import fairseq, fairseq.models.transformer_lm, fairseq.models.transformer, fairseq.tasks.translation; print('fairseq', fairseq.__version__, 'ready at $REF')"
