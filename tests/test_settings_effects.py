"""Settings fairseq has that only act on a GPU or only warn: each does what its help says or is refused in
one line, never accepted and ignored (common.empty_cache_freq, common.profile,
distributed_training.distributed_backend, generation.no_early_stop)."""

import logging

import pytest
import torch
from conftest import tiny_lm_overrides

from fairseq_lite.errors import ConfigError
from fairseq_lite.generation import build_generator
from fairseq_lite.options.compose import compose_config
from fairseq_lite.training.build import build_trainer
from fairseq_lite.training.checks import check_training_config


def test_empty_cache_freq_empties_the_cuda_cache_on_fairseqs_schedule(tiny_data_bin, tmp_path, monkeypatch):
    cfg = compose_config(tiny_lm_overrides(tiny_data_bin, tmp_path, extra=["common.empty_cache_freq=3"]))
    trainer = build_trainer(cfg)
    emptied = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(trainer.num_updates))
    for device in ("cpu", "cuda"):  # a CPU run has no CUDA cache to empty
        trainer.device = torch.device(device)
        for n in range(1, 9):
            trainer.num_updates = n
            trainer._maybe_empty_cache()
    assert emptied == [1, 4, 7]  # after updates 1, 1 + f, 1 + 2f, as fairseq's trainer


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_profile_needs_a_gpu(tiny_data_bin, tmp_path):
    cfg = compose_config(tiny_lm_overrides(tiny_data_bin, tmp_path, extra=["common.profile=true"]))
    with pytest.raises(ConfigError, match=r"common.profile.*NVTX.*needs a GPU"):
        check_training_config(cfg)


@pytest.mark.parametrize(
    "backend,world_size,message",
    [
        ("tcp", 1, r"distributed_backend=tcp is invalid: it must be one of: nccl, gloo, mpi, ucc"),
        ("nccl", 2, r"distributed_backend=nccl needs CUDA GPUs; on CPU use gloo"),
    ],
)
def test_distributed_backend_is_checked(tiny_data_bin, tmp_path, backend, world_size, message):
    if backend == "nccl" and torch.cuda.is_available():
        pytest.skip("checks the CPU refusal")
    extra = [f"distributed_training.distributed_backend={backend}"]
    extra += [f"distributed_training.distributed_world_size={world_size}"]
    cfg = compose_config(tiny_lm_overrides(tiny_data_bin, tmp_path, extra=extra))
    with pytest.raises(ConfigError, match=message):
        check_training_config(cfg)


def test_distributed_backend_is_what_the_process_group_uses():
    from types import SimpleNamespace

    from fairseq_lite.distributed.utils import _backend

    def cfg(backend, cpu=True):
        return SimpleNamespace(
            distributed_training=SimpleNamespace(distributed_backend=backend), common=SimpleNamespace(cpu=cpu)
        )

    assert _backend(cfg(None)) == "gloo" and _backend(cfg("mpi")) == "mpi"


def test_no_early_stop_says_it_does_nothing(caplog):
    from types import SimpleNamespace

    from test_sequence_generator import D, TinyModel

    with caplog.at_level(logging.WARNING):
        build_generator(SimpleNamespace(target_dictionary=D), [TinyModel(D, encoder=True)], {"no_early_stop": True})
    assert any("--no-early-stop is deprecated and has no effect" in r.getMessage() for r in caplog.records)


def test_retain_dropout_keeps_dropout_on_while_generating():
    from test_transformer import LONG, tiny_model

    from fairseq_lite.generation import retain_dropout

    model = tiny_model(dropout=0.3)
    model.decoder.layerdrop = 0.5
    src, lengths, prev = torch.LongTensor([LONG]), torch.LongTensor([len(LONG)]), torch.LongTensor([[2, 5, 9]])
    with torch.no_grad():
        assert torch.equal(model(src, lengths, prev)[0], model(src, lengths, prev)[0])  # eval: deterministic
        retain_dropout([model])
        assert not torch.equal(model(src, lengths, prev)[0], model(src, lengths, prev)[0])
    assert model.decoder.layerdrop == 0.0  # LayerDrop is no dropout module in fairseq: it stays off

    model = tiny_model(dropout=0.3).eval()
    retain_dropout([model], ["TransformerDecoderLayer"])
    assert all(layer.training for layer in model.decoder.layers) and not model.encoder.training
    with pytest.raises(ConfigError, match="has no module of class Foo"):
        retain_dropout([model], ["Foo"])


@pytest.mark.parametrize(
    "options,message",
    [
        ({"sampling": True, "diverse_beam_groups": 2}, "--sampling and --diverse-beam-groups choose different"),
        ({"diversity_rate": 0.5, "match_source_len": True}, "--match-source-len and --diversity-rate choose"),
        ({"beam": 5, "diverse_beam_groups": 2}, "--beam 5 must be divisible by --diverse-beam-groups 2"),
    ],
)
def test_searches_that_cannot_go_together_are_one_line(options, message):
    from types import SimpleNamespace

    from test_sequence_generator import D, TinyModel

    with pytest.raises(ConfigError, match=message):
        build_generator(SimpleNamespace(target_dictionary=D), [TinyModel(D, encoder=True)], options)
