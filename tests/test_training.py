"""End to end, in process: train a tiny LM on real text, checkpoints, exact resume, eval-lm."""

import json
import math
import shutil

import pytest
import torch
from conftest import tiny_lm_overrides

from fairseq_lite.checkpoint import load_checkpoint_to_cpu
from fairseq_lite.errors import ConfigError, DataError
from fairseq_lite.options.compose import compose_config
from fairseq_lite.training import train


def run(data, save_dir, max_update=12, extra=()):
    cfg = compose_config(tiny_lm_overrides(data, save_dir, max_update, extra))
    return train(cfg)


def weights(path):
    return load_checkpoint_to_cpu(str(path))["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_training_lowers_loss_and_writes_fairseq_checkpoints(tiny_data_bin, tmp_path, caplog):
    caplog.set_level("INFO")
    best = run(tiny_data_bin, tmp_path, max_update=30, extra=["checkpoint.save_interval_updates=10"])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "checkpoint_last.pt" in names and "checkpoint_best.pt" in names
    # 20 updates per epoch: update 10 mid-epoch, epoch 1's end, and the stop at 30 mid-epoch 2.
    assert {"checkpoint_1_10.pt", "checkpoint1.pt", "checkpoint_2_30.pt"} <= set(names), names
    assert not [n for n in names if ".tmp" in n], names

    # Plain containers only: loading never runs code.
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)
    assert state["num_updates"] == 30
    assert state["cfg"]["model"]["decoder_layers"] == 1
    assert state["extra_state"]["train_iterator"]["iterations_in_epoch"] > 0

    lines = [json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith("{")]
    inner = [line for line in lines if "num_updates" in line and "loss" in line]
    for field in ("loss", "ppl", "wps", "ups", "wpb", "bsz", "num_updates", "lr", "gnorm", "train_wall", "wall"):
        assert field in inner[0], field
    assert float(inner[-1]["loss"]) < float(inner[0]["loss"]) - 1.0
    assert abs(float(inner[0]["ppl"]) - 2 ** float(inner[0]["loss"])) / float(inner[0]["ppl"]) < 0.01
    valid = [line for line in lines if "valid_loss" in line]
    assert valid and math.isclose(best, min(float(v["valid_loss"]) for v in valid), rel_tol=1e-3)


def test_resume_from_mid_epoch_checkpoint_gives_identical_weights(tiny_data_bin, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    run(tiny_data_bin, full, max_update=12)
    # A run stopped right after its update-4 checkpoint (as if killed there), then rerun.
    run(tiny_data_bin, part, max_update=8, extra=["checkpoint.save_interval_updates=4"])
    shutil.copyfile(part / "checkpoint_1_4.pt", part / "checkpoint_last.pt")
    run(tiny_data_bin, part, max_update=12, extra=["checkpoint.save_interval_updates=4"])
    assert_same_weights(weights(full / "checkpoint_last.pt"), weights(part / "checkpoint_last.pt"))


def test_resume_across_epoch_boundary_and_update_freq(tiny_data_bin, tmp_path):
    # ~20 updates per epoch with update_freq 2: stop in epoch 2 and resume.
    extra = ["optimization.update_freq=[2]", "dataset.max_tokens=128"]
    full, part = tmp_path / "full", tmp_path / "part"
    run(tiny_data_bin, full, max_update=30, extra=extra)
    run(tiny_data_bin, part, max_update=25, extra=extra)
    run(tiny_data_bin, part, max_update=30, extra=extra)
    state = load_checkpoint_to_cpu(str(part / "checkpoint_last.pt"))
    assert state["extra_state"]["epoch"] >= 2
    assert_same_weights(weights(full / "checkpoint_last.pt"), state["model"])


def test_update_freq_equals_one_batch_of_the_same_samples(tiny_data_bin, tmp_path):
    """Gradients of k micro-batches are normalized by the tokens of the whole update, so
    update_freq=2 on two halves takes the same step as one batch of both halves."""
    from fairseq_lite.training import build_trainer

    cfg = compose_config(
        tiny_lm_overrides(
            tiny_data_bin,
            tmp_path,
            extra=[
                "model.dropout=0",
                "model.attention_dropout=0",
                "optimizer=sgd",
                "optimization.lr=[1.0]",
                "lr_scheduler=fixed",
            ],
        )
    )

    def one_update(micro_batches):
        trainer = build_trainer(cfg)  # the same initial weights each time: they depend on common.seed only
        task = trainer.task
        task.load_dataset("train")
        before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        dataset = task.dataset("train")
        samples = [dataset[i] for i in range(8)]
        trainer.train_step([dataset.collater(samples[i:j]) for i, j in micro_batches])
        return before, trainer.model.state_dict()

    before, split = one_update([(0, 3), (3, 8)])
    _, whole = one_update([(0, 8)])
    changed = [k for k in before if not torch.equal(before[k], whole[k])]
    assert changed, "the update changed no weight"
    for key in whole:
        torch.testing.assert_close(split[key], whole[key], rtol=1e-5, atol=1e-6)


def test_missing_data_dir_is_a_clear_error(tmp_path):
    cfg = compose_config(tiny_lm_overrides(tmp_path / "nope", tmp_path / "ckpt"))
    with pytest.raises(DataError, match="does not exist"):
        train(cfg)


def test_no_batch_size_is_a_clear_error(tiny_data_bin, tmp_path):
    cfg = compose_config(tiny_lm_overrides(tiny_data_bin, tmp_path, extra=["dataset.max_tokens=null"]))
    with pytest.raises(ConfigError, match="max_tokens"):
        train(cfg)


def test_eval_lm_scores_the_trained_model(tiny_data_bin, tmp_path, caplog):
    from fairseq_cli.eval_lm import main as eval_lm

    run(tiny_data_bin, tmp_path, max_update=30)
    caplog.set_level("INFO")
    result = eval_lm(
        [
            str(tiny_data_bin),
            "--path",
            str(tmp_path / "checkpoint_best.pt"),
            "--gen-subset",
            "test",
            "--num-workers",
            "0",
        ]
    )
    test_lines = [line for line in (tiny_data_bin / "preprocess.log").read_text().splitlines() if "test" in line]
    assert result["ntokens"] > 500, test_lines
    assert math.isclose(result["ppl"], 2 ** result["loss"], rel_tol=1e-9)
    assert any("Loss (base 2):" in r.getMessage() for r in caplog.records)

    # A context window scores the same tokens, each with more history: perplexity must not be worse.
    windowed = eval_lm(
        [
            str(tiny_data_bin),
            "--path",
            str(tmp_path / "checkpoint_best.pt"),
            "--gen-subset",
            "test",
            "--context-window",
            "16",
            "--num-workers",
            "0",
        ]
    )
    assert windowed["ntokens"] == result["ntokens"]
    assert windowed["loss"] <= result["loss"] + 0.05


def test_bf16_training_reaches_the_fp32_loss(tiny_data_bin, tmp_path):
    """bf16 autocast (CPU here) trains to within a few percent of fp32 on the same run."""
    fp32 = run(tiny_data_bin, tmp_path / "fp32", max_update=40)
    bf16 = run(tiny_data_bin, tmp_path / "bf16", max_update=40, extra=["common.bf16=true"])
    bf16_state = load_checkpoint_to_cpu(str(tmp_path / "bf16" / "checkpoint_last.pt"))
    fp32_state = load_checkpoint_to_cpu(str(tmp_path / "fp32" / "checkpoint_last.pt"))
    assert bf16_state["cfg"]["common"]["bf16"] is True
    # The bf16 run really computed in bf16 (its logged loss is rounded to 3 digits, as fairseq's: compare weights).
    assert any(not torch.equal(v, fp32_state["model"][k]) for k, v in bf16_state["model"].items())
    assert abs(bf16 - fp32) / fp32 < 0.05, (fp32, bf16)


def test_asynchronous_checkpoints_hold_the_same_state(tiny_data_bin, tmp_path):
    run(tiny_data_bin, tmp_path / "sync", max_update=12, extra=["checkpoint.save_interval_updates=4"])
    run(
        tiny_data_bin,
        tmp_path / "async",
        max_update=12,
        extra=["checkpoint.save_interval_updates=4", "checkpoint.write_checkpoints_asynchronously=true"],
    )
    for name in ("checkpoint_1_4.pt", "checkpoint_1_8.pt", "checkpoint_last.pt", "checkpoint_best.pt"):
        assert_same_weights(weights(tmp_path / "sync" / name), weights(tmp_path / "async" / name))
    assert not [p for p in (tmp_path / "async").iterdir() if ".tmp" in p.name]


def test_a_crash_while_writing_a_checkpoint_leaves_the_previous_one(tiny_data_bin, tmp_path, monkeypatch):
    import fairseq_lite.checkpoint.io as checkpoint

    run(tiny_data_bin, tmp_path, max_update=4)
    good = weights(tmp_path / "checkpoint_last.pt")
    real_save = torch.save

    def dies_halfway(obj, f):
        real_save({"partial": torch.zeros(1000)}, f)  # some bytes reach the temp file...
        raise KeyboardInterrupt  # ...and the process is stopped before the rename

    monkeypatch.setattr(checkpoint.torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_data_bin, tmp_path, max_update=8)
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    assert_same_weights(good, weights(tmp_path / "checkpoint_last.pt"))
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    run(tiny_data_bin, tmp_path, max_update=8)  # and the run resumes from it
    assert load_checkpoint_to_cpu(str(tmp_path / "checkpoint_last.pt"))["num_updates"] == 8


def test_compiled_model_trains_like_the_eager_one(tiny_data_bin, tmp_path):
    """common.compile: torch.compile'd training steps give the eager weights (to float rounding), and
    the checkpoint keeps the model's own parameter names."""
    pytest.importorskip("torch._inductor")
    no_dropout = ["model.dropout=0", "model.attention_dropout=0"]
    run(tiny_data_bin, tmp_path / "eager", max_update=4, extra=no_dropout)
    run(tiny_data_bin, tmp_path / "compiled", max_update=4, extra=no_dropout + ["common.compile=true"])
    eager, compiled = (
        weights(tmp_path / "eager" / "checkpoint_last.pt"),
        weights(tmp_path / "compiled" / "checkpoint_last.pt"),
    )
    assert eager.keys() == compiled.keys() and not any("_orig_mod" in k for k in compiled)
    for key in eager:
        if "k_proj.bias" in key:
            # Softmax ignores a bias shared by all keys: its true gradient is 0, so Adam turns the
            # rounding noise of either run into full-size steps of arbitrary sign.
            continue
        torch.testing.assert_close(compiled[key], eager[key], rtol=1e-4, atol=1e-5, msg=key)


def test_out_of_memory_skips_the_update_a_bounded_number_of_times(tiny_data_bin, tmp_path, monkeypatch, caplog):
    """A step that runs out of GPU memory is skipped and logged, as in fairseq; past
    optimization.max_oom_skips the run stops with advice."""
    from fairseq_lite.errors import OutOfMemoryError
    from fairseq_lite.tasks.fairseq_task import FairseqTask

    real_step = FairseqTask.train_step
    calls = {"n": 0}

    def step_that_runs_out_of_memory(self, sample, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] in (2, 3):  # the second and third batches "do not fit"
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(self, sample, *args, **kwargs)

    monkeypatch.setattr(FairseqTask, "train_step", step_that_runs_out_of_memory)
    caplog.set_level("WARNING")
    run(tiny_data_bin, tmp_path / "skips", max_update=6, extra=["optimization.max_oom_skips=2"])
    assert load_checkpoint_to_cpu(str(tmp_path / "skips" / "checkpoint_last.pt"))["num_updates"] == 6
    assert "out of GPU memory at update 2: skipped this update (2 of at most 2)" in caplog.text

    calls["n"] = 0
    with pytest.raises(
        OutOfMemoryError, match=r"out of GPU memory at update 2, 2 times .*max_oom_skips=1.*dataset\.max_tokens"
    ):
        run(tiny_data_bin, tmp_path / "stops", max_update=6, extra=["optimization.max_oom_skips=1"])
