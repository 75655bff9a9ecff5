"""fairseq's LSTM models (`--arch lstm*`, `--arch lstm_lm`): parameter counts and names equal fairseq 0.12.2's,
incremental decoding == the full forward pass, beams followed by reorder_*, beam search with and without the
cache, fairseq's own hypotheses on a checkpoint it trained, alignments over the source as given, and
fairseq-train runs of both models."""

import json

import pytest
import torch
from omegaconf import OmegaConf
from test_fairseq_checkpoints import CHECKPOINTS, FIXTURES
from test_generate_cli import parse
from test_transformer import LONG, SHORT, Task, left_pad, make_dict
from test_translation_task import bilingual_bin  # noqa: F401  (a fixture)

from fairseq_lite.checkpoint import load_checkpoint_to_cpu
from fairseq_lite.errors import ConfigError
from fairseq_lite.generation import SequenceGenerator
from fairseq_lite.models.lstm import LSTMConfig, LSTMModel
from fairseq_lite.models.lstm_lm import LSTMLanguageModel, LSTMLanguageModelConfig
from fairseq_lite.registry import get_architecture

SRC, LENGTHS = left_pad([LONG, SHORT]), torch.LongTensor([len(LONG), len(SHORT)])
PREV = torch.LongTensor([[2, 4, 9, 13, 25, 6], [2, 7, 7, 20, 3, 31]])


def lstm_cfg(arch: str = "lstm", **values):
    """The config `--arch ARCH` builds: the architecture's values over the dataclass's defaults."""
    values = get_architecture(arch).values(values)
    if arch == "lstm_lm":
        values = {"tokens_per_sample": 1024, "max_target_positions": None, **values}  # the LM task's
        return OmegaConf.merge(OmegaConf.structured(LSTMLanguageModelConfig), values)
    return OmegaConf.merge(OmegaConf.structured(LSTMConfig), values)


def build(arch: str = "lstm", task=None, seed: int = 0, **values):
    torch.manual_seed(seed)
    model_cls = LSTMLanguageModel if arch == "lstm_lm" else LSTMModel
    return model_cls.build_model(lstm_cfg(arch, **values), task or Task(make_dict(40))).eval()


TINY = dict(encoder_embed_dim=12, decoder_embed_dim=12, decoder_out_embed_dim=12)
VARIANTS = [
    TINY,
    # two layers; a bidirectional encoder (24 wide) projected to the decoder's 14; additional_fc 14 -> 9
    dict(
        TINY,
        encoder_hidden_size=12,
        encoder_bidirectional=True,
        encoder_layers=2,
        decoder_layers=2,
        decoder_hidden_size=14,
        decoder_out_embed_dim=9,
    ),
    dict(TINY, share_all_embeddings=True, decoder_attention="False"),
]


# fairseq 0.12.2's parameter counts for a 10,000-symbol dictionary, measured once with fairseq itself
# (/tmp/fairseq-ref/bin/python): args = argparse.Namespace(criterion=..., **values), then
# ARCH_CONFIG_REGISTRY[arch](args), ARCH_MODEL_REGISTRY[arch].build_model(args, task) with the task's
# dictionaries a fairseq Dictionary grown to 10,000 symbols, and sum(p.numel() for p in model.parameters()).
# The adaptive-softmax rows ran under criterion "adaptive_loss", the others under "cross_entropy" (fairseq
# builds the adaptive softmax for adaptive_loss only, whatever the cutoff).
ADAPTIVE = {"_criterion": "adaptive_loss", "adaptive_softmax_cutoff": "2000,6000"}
FAIRSEQ_PARAMS = [
    ("lstm", {}, 21407504),
    ("lstm", {"encoder_bidirectional": True}, 25082640),
    ("lstm", {"share_all_embeddings": True}, 11157504),
    ("lstm", {**ADAPTIVE, "decoder_out_embed_dim": 256}, 18155776),
    ("lstm_wiseman_iwslt_de_en", {}, 9201424),
    ("lstm_luong_wmt_en_de", {}, 101074000),
    ("lstm_lm", {}, 12351248),
    ("lstm_lm", {"share_decoder_input_output_embed": True}, 7221248),
    ("lstm_lm", {**ADAPTIVE, "decoder_layers": 2}, 11069440),
]


@pytest.mark.parametrize("arch,values,expected", FAIRSEQ_PARAMS)
def test_architecture_parameter_counts_match_fairseq(arch, values, expected):
    with torch.device("meta"):  # shapes only
        model = build(arch, Task(make_dict(10000)), **values)
    assert model.num_parameters() == expected


def test_parameter_names_are_fairseqs():
    """The state-dict keys of fairseq 0.12.2's `--arch lstm --encoder-bidirectional` (listed from its model)."""
    with torch.device("meta"):
        model = build("lstm", Task(make_dict(10000)), encoder_bidirectional=True)
    lstm = [f"{w}_{p}_l0{r}" for r in ("", "_reverse") for p in ("ih", "hh") for w in ("weight", "bias")]
    assert sorted(model.state_dict()) == sorted(
        ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"]
        + [f"encoder.lstm.{name}" for name in lstm]
        + [f"decoder.encoder_{s}_proj.{p}" for s in ("hidden", "cell") for p in ("weight", "bias")]
        + [f"decoder.layers.0.{w}_{p}" for p in ("ih", "hh") for w in ("weight", "bias")]
        + ["decoder.attention.input_proj.weight", "decoder.attention.output_proj.weight"]
        + ["decoder.fc_out.weight", "decoder.fc_out.bias"]
    )
    assert model.decoder.encoder_hidden_proj.weight.shape == (512, 1024)
    assert model.decoder.attention.output_proj.weight.shape == (512, 1536)


@pytest.mark.parametrize("variant", VARIANTS)
def test_incremental_decoding_equals_full_forward_on_a_left_padded_batch(variant):
    model = build(**variant)
    with torch.no_grad():
        full, extra = model(SRC, LENGTHS, PREV)
        encoder_out = model.encoder(SRC, LENGTHS)
        state = {}
        steps = [
            model.decoder(PREV[:, :t], encoder_out=encoder_out, incremental_state=state)[0]
            for t in range(1, PREV.size(1) + 1)
        ]
    assert all(step.shape == (2, 1, 40) for step in steps)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
    # fairseq's encoder layout: right-padded outputs S x B x C, final states L x B x C, mask S x B
    outs, hiddens, cells, mask = encoder_out
    width = 24 if variant.get("encoder_bidirectional") else 12
    assert outs.shape == (8, 2, width) and hiddens.shape == cells.shape == (variant.get("encoder_layers", 1), 2, width)
    assert mask[:, 1].tolist() == [False] * 5 + [True] * 3 and not mask[:, 0].any()
    # The short sentence alone gives what it gave in the padded batch.
    alone, _ = model(torch.LongTensor([SHORT]), torch.LongTensor([5]), PREV[1:])
    torch.testing.assert_close(alone[0], full[1], atol=1e-5, rtol=0)
    if variant.get("decoder_attention") == "False":
        assert extra["attn"] == [None]


def test_language_model_incremental_decoding_equals_full_forward():
    model = build("lstm_lm", decoder_embed_dim=12, decoder_out_embed_dim=10, decoder_layers=2, residuals=True)
    with torch.no_grad():
        full, extra = model(PREV)
        state = {}
        steps = [model.decoder(PREV[:, :t], incremental_state=state)[0] for t in range(1, PREV.size(1) + 1)]
        model.decoder.reorder_incremental_state(state, torch.LongTensor([1, 0]))
        step, _ = model.decoder(torch.cat([PREV[[1, 0]], PREV[[1, 0], :1]], dim=1), incremental_state=state)
        whole, _ = model(torch.cat([PREV[[1, 0]], PREV[[1, 0], :1]], dim=1))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
    torch.testing.assert_close(step[:, 0], whole[:, -1], atol=1e-5, rtol=0)
    assert extra["attn"] == [None] and model.decoder.attention is None


def test_reorder_encoder_out_and_incremental_state_follow_beams():
    model = build(**VARIANTS[1])
    new_order = torch.LongTensor([1, 1, 0])
    with torch.no_grad():
        encoder_out = model.encoder(SRC, LENGTHS)
        state = {}
        for t in (1, 2, 3):
            model.decoder(PREV[:, :t], encoder_out=encoder_out, incremental_state=state)
        model.decoder.reorder_incremental_state(state, new_order)
        reordered = model.encoder.reorder_encoder_out(encoder_out, new_order)
        assert isinstance(reordered, tuple) and len(reordered) == 4
        for moved, original in zip(reordered, encoder_out):  # every entry is batch-second
            assert torch.equal(moved, original[:, new_order])
        step, _ = model.decoder(PREV[new_order, :4], encoder_out=reordered, incremental_state=state)
        # a batch that is not sorted by length (5, 5, 8) is packed too
        full, _ = model(SRC[new_order], LENGTHS[new_order], PREV[new_order, :4])
    torch.testing.assert_close(step[:, 0], full[:, -1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["lstm", "lstm_lm"])
def test_beam_search_gives_the_same_hypotheses_with_and_without_the_cache(arch):
    d = make_dict(40)
    values = VARIANTS[1] if arch == "lstm" else dict(decoder_embed_dim=12, decoder_out_embed_dim=12, decoder_layers=2)
    model = build(arch, Task(d), seed=2, **values)
    with torch.no_grad():  # weights far from their init and a likelier eos: sentences end at different steps
        for p in model.parameters():
            p.normal_(0, 1.0)
        model.decoder.fc_out.bias[d.eos()] += 3.0
    src = left_pad([LONG, SHORT, [9, 4, 2]])
    sample = {"id": torch.arange(3), "net_input": {"src_tokens": src, "src_lengths": torch.LongTensor([8, 5, 3])}}
    options = dict(beam_size=4, max_len_b=9, min_len=2)
    prefix = None if arch == "lstm" else torch.LongTensor([[5, 6], [7, 8], [9, 9]])  # the LM continues these
    cached = SequenceGenerator(model, d, **options).generate(sample, prefix_tokens=prefix)
    full = SequenceGenerator(model, d, use_incremental=False, **options).generate(sample, prefix_tokens=prefix)
    for a, b in zip(cached, full):
        assert len(a) == len(b) == 4
        assert [h["tokens"].tolist() for h in a] == [h["tokens"].tolist() for h in b]
        for x, y in zip(a, b):
            assert float(x["score"]) == pytest.approx(float(y["score"]), abs=1e-5)
            torch.testing.assert_close(x["positional_scores"], y["positional_scores"], atol=1e-5, rtol=0)
    # A sentence finished before another: it left the batch, and the cache and encoder rows followed.
    last_steps = [max(len(h["tokens"]) for h in hypos) for hypos in cached]
    assert min(last_steps) < max(last_steps)


def test_attention_is_over_the_source_as_given():
    """model(...)'s attention (what --print-alignment reads) has the left-padded source's columns: a sentence
    padded in a batch attends as it does alone, with no weight on its pads."""
    model = build()
    with torch.no_grad():
        _, extra = model(SRC, LENGTHS, PREV)
        _, alone = model(torch.LongTensor([SHORT]), torch.LongTensor([5]), PREV[1:])
    (attn,) = extra["attn"]
    assert attn.shape == (2, 6, 8)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 6))
    assert attn[1, :, :3].abs().max() == 0
    torch.testing.assert_close(attn[1, :, 3:], alone["attn"][0][0], atol=1e-6, rtol=0)


def test_generate_gives_fairseqs_translations_on_a_fairseq_lstm(capsys):
    """checkpoints/lstm.pt: fairseq 0.12.2 trained it (bidirectional encoder, shared embeddings, additional_fc;
    see the fixtures' README); fairseq-lite's fairseq-generate prints fairseq's hypotheses and scores."""
    from fairseq_cli.generate import main as generate

    generate(
        [str(FIXTURES / "joined"), "--path", str(CHECKPOINTS / "lstm.pt"), "--gen-subset", "valid"]
        + ["--beam", "4", "--max-len-b", "12", "--batch-size", "16", "--num-workers", "0", "--cpu"]
    )
    ours = {values[0]: values for kind, values in parse(capsys.readouterr().out) if kind == "H"}
    theirs = [
        line.split("\t") for line in (CHECKPOINTS / "lstm.generate_valid.txt").read_text(encoding="utf-8").splitlines()
    ]
    assert len(theirs) == 40 and len(ours) == 40
    assert len({h[2] for h in theirs}) > 30  # a model that reads its source
    for sample_id, score, text in ((h[0][2:], h[1], h[2]) for h in theirs):
        assert ours[sample_id][2] == text
        assert float(ours[sample_id][1]) == pytest.approx(float(score), abs=1e-4)


def test_config_errors_are_one_line():
    with pytest.raises(ConfigError, match="encoder_layers.*must match.*decoder_layers"):
        build(encoder_layers=2)
    with pytest.raises(ConfigError, match="decoder_attention='maybe'.*must be True or False"):
        build(decoder_attention="maybe")
    with pytest.raises(ConfigError, match="requires a joined dictionary"):
        build(task=Task(make_dict(40), make_dict(48)), share_all_embeddings=True)
    with pytest.raises(ConfigError, match="decoder_embed_dim.*to match.*decoder_out_embed_dim"):
        build(share_decoder_input_output_embed=True, decoder_out_embed_dim=256)
    with pytest.raises(ConfigError, match="last cutoff is larger than the vocabulary"):
        build(_criterion="adaptive_loss")  # the architecture's 10000,50000,200000 on 40 words


def train_logs(caplog):
    return [json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith("{")]


def fairseq_train(caplog, *argv):
    """Run fairseq-train in this process; the training loss of each update, from its json log."""
    from fairseq_cli.train import main as train

    caplog.set_level("INFO")
    caplog.clear()
    train([*argv, "--log-format", "json", "--log-interval", "1", "--num-workers", "0", "--no-epoch-checkpoints"])
    return [float(line["loss"]) for line in train_logs(caplog) if "num_updates" in line and "loss" in line]


def test_fairseq_train_lstm_wiseman_iwslt_de_en(bilingual_bin, tmp_path, caplog):  # noqa: F811
    losses = fairseq_train(
        caplog,
        str(bilingual_bin),
        "--task",
        "translation",
        "--arch",
        "lstm_wiseman_iwslt_de_en",
        "--encoder-embed-dim",
        "32",
        "--decoder-embed-dim",
        "32",
        "--decoder-out-embed-dim",
        "32",
        "--encoder-bidirectional",
        "--share-all-embeddings",
        "--optimizer",
        "adam",
        "--lr",
        "0.01",
        "--max-tokens",
        "400",
        "--max-update",
        "8",
        "--save-dir",
        str(tmp_path),
    )
    state = load_checkpoint_to_cpu(str(tmp_path / "checkpoint_last.pt"))
    assert state["num_updates"] == 8 and state["cfg"]["model"]["_name"] == "lstm"
    model_cfg = state["cfg"]["model"]
    assert (model_cfg["encoder_hidden_size"], model_cfg["decoder_dropout_out"], model_cfg["encoder_dropout_in"]) == (
        32,
        0.1,
        0,
    )
    assert state["model"]["decoder.encoder_hidden_proj.weight"].shape == (32, 64)  # bidirectional: 64 -> 32
    assert "decoder.fc_out.weight" not in state["model"]  # tied to the shared embedding
    assert len(losses) >= 8 and losses[-1] < losses[0]


def test_fairseq_train_lstm_lm_with_an_adaptive_softmax(tiny_data_bin, tmp_path, caplog):
    """--criterion adaptive_loss is what makes fairseq's LSTM LM build its adaptive softmax."""
    losses = fairseq_train(
        caplog,
        str(tiny_data_bin),
        "--task",
        "language_modeling",
        "--arch",
        "lstm_lm",
        "--decoder-embed-dim",
        "32",
        "--decoder-out-embed-dim",
        "32",
        "--decoder-layers",
        "2",
        "--residuals",
        "--criterion",
        "adaptive_loss",
        "--adaptive-softmax-cutoff",
        "100,400",
        "--tokens-per-sample",
        "32",
        "--optimizer",
        "adam",
        "--lr",
        "0.01",
        "--max-tokens",
        "256",
        "--max-update",
        "8",
        "--save-dir",
        str(tmp_path),
    )
    state = load_checkpoint_to_cpu(str(tmp_path / "checkpoint_last.pt"))
    assert state["num_updates"] == 8 and state["cfg"]["model"]["_name"] == "lstm_lm"
    assert state["cfg"]["model"]["_criterion"] == "adaptive_loss"
    assert {k for k in state["model"] if k.startswith("decoder.adaptive_softmax.")} >= {
        "decoder.adaptive_softmax.head.weight",
        "decoder.adaptive_softmax.tail.1.2.weight",
    }
    assert "decoder.fc_out.weight" not in state["model"]
    assert len(losses) >= 8 and losses[-1] < losses[0]
