"""Training on one CUDA GPU in every precision: it trains, logs its loss scale, and resumes from a
checkpoint to the weights of an uninterrupted run. Skipped without a GPU (run on the lent H100)."""

import math

import pytest
import torch
from conftest import tiny_lm_overrides

from fairseq_lite.checkpoint import load_checkpoint_to_cpu
from fairseq_lite.options.compose import compose_config
from fairseq_lite.training import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

PRECISIONS = {
    "fp16": ["common.fp16=true"],
    "memory_efficient_fp16": ["common.memory_efficient_fp16=true"],
    "amp": ["common.amp=true"],
    "bf16": ["common.bf16=true"],
    "fp32": [],
}


def run(data, save_dir, max_update, extra):
    return train(compose_config(tiny_lm_overrides(data, save_dir, max_update, extra)))


@pytest.mark.parametrize("precision", sorted(PRECISIONS))
def test_trains_and_resumes_on_the_gpu(tiny_data_bin, tmp_path, caplog, precision):
    caplog.set_level("INFO")
    extra = PRECISIONS[precision] + ["checkpoint.save_interval_updates=5"]
    best = run(tiny_data_bin, tmp_path / "whole", 10, extra)
    state = load_checkpoint_to_cpu(str(tmp_path / "whole" / "checkpoint_last.pt"))
    assert best is not None and math.isfinite(best)
    assert all(torch.isfinite(v.float()).all() for v in state["model"].values())
    assert state["num_updates"] == 10
    if precision in ("fp16", "memory_efficient_fp16"):
        # The model itself trains in fp16; the optimizer's fp32 state is saved with it.
        assert state["model"]["decoder.embed_tokens.weight"].dtype == torch.float16
        assert '"loss_scale"' in caplog.text
    if precision == "amp":
        assert '"loss_scale"' in caplog.text

    # Stop after 5 updates, then resume to 10: the same weights as the uninterrupted run.
    run(tiny_data_bin, tmp_path / "split", 5, extra)
    run(tiny_data_bin, tmp_path / "split", 10, extra)
    whole = state["model"]
    resumed = load_checkpoint_to_cpu(str(tmp_path / "split" / "checkpoint_last.pt"))["model"]
    for key in whole:
        if "k_proj.bias" in key:  # no true gradient (softmax ignores it): Adam amplifies rounding noise
            continue
        torch.testing.assert_close(resumed[key].float(), whole[key].float(), rtol=1e-3, atol=1e-3, msg=key)
