"""Runs one fairseq 0.12.2 command (`python fairseq_ref_shim.py generate ARGS...` = `fairseq-generate ARGS...`)
with the two runtime fixes it needs on torch 2.13. Used by the benchmarks with the reference's own python
(see fairseq_compare.py); never imported by fairseq-lite.

1. fairseq 0.12.2's encoder layers take a "BetterTransformer" fast path at inference once weights are loaded
   from a checkpoint: torch._transformer_encoder_layer_fwd called with torch 1.12's arguments, which torch
   2.13 rejects ("RuntimeError: Mask Type should be defined"). Keeping `load_to_BT` False leaves those layers
   on their regular forward, the code fairseq trains with.
2. fairseq 0.12.2 reads its checkpoints with a bare torch.load, and torch >= 2.6 defaults to
   weights_only=True, which refuses the argparse.Namespace that fairseq stores in them. The benchmarks only
   load checkpoints they have just written themselves, so TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 is set for the
   reference (in fairseq_compare.tool_env).
"""

import importlib
import sys


def disable_bettertransformer_fast_path() -> None:
    from fairseq.modules import transformer_layer

    layer_cls = transformer_layer.TransformerEncoderLayerBase
    load = layer_cls._load_from_state_dict

    def _load_from_state_dict(self, *args, **kwargs):
        load(self, *args, **kwargs)
        self.load_to_BT = False

    layer_cls._load_from_state_dict = _load_from_state_dict


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: fairseq_ref_shim.py COMMAND [ARGS...]   (COMMAND: train, generate, eval_lm, preprocess)")
    name = sys.argv.pop(1).replace("-", "_")
    sys.argv[0] = f"fairseq-{name.replace('_', '-')}"
    disable_bettertransformer_fast_path()
    importlib.import_module(f"fairseq_cli.{name}").cli_main()


if __name__ == "__main__":
    main()
