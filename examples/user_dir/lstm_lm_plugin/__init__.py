"""A fairseq-lite plugin: an LSTM language model, registered from outside the package.

Load it with `common.user_dir=examples/user_dir/lstm_lm_plugin` (fairseq-hydra-train) or
`--user-dir examples/user_dir/lstm_lm_plugin` (fairseq-train); then `model=toy_lstm_lm` / `--arch toy_lstm_lm_tiny`
work like the built-in models.
"""

from lstm_lm_plugin import lstm_lm  # noqa: F401  (importing registers the model)
