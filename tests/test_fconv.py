"""fairseq's convolutional models (`--arch fconv*`, `fconv_self_att*`, `fconv_lm*`): parameter counts and
state-dict names equal fairseq 0.12.2's, incremental decoding == the full forward pass, beams followed by
reorder_*, beam search with and without the cache, fairseq's own hypotheses on checkpoints it trained, model
fusion with a pretrained model, the layer-spec evaluator, and fairseq-train runs."""

import copy
import json
import pickle

import pytest
import torch
from omegaconf import OmegaConf
from test_fairseq_checkpoints import CHECKPOINTS, FIXTURES
from test_generate_cli import parse
from test_lstm import fairseq_train
from test_transformer import LONG, SHORT, Task, left_pad, make_dict
from test_translation_task import bilingual_bin  # noqa: F401  (a fixture)

from fairseq_lite.checkpoint import load_checkpoint_to_cpu
from fairseq_lite.data import Dictionary
from fairseq_lite.errors import ConfigError
from fairseq_lite.generation import SequenceGenerator
from fairseq_lite.models.fconv_spec import bool_spec, conv_spec, eval_spec
from fairseq_lite.modules import ConvTBC, DownsampledMultiHeadAttention, LinearizedConvolution
from fairseq_lite.modules.weight_norm import remove_weight_norm, weight_norm
from fairseq_lite.registry import MODEL_REGISTRY, get_architecture

SRC, LENGTHS = left_pad([LONG, SHORT]), torch.LongTensor([len(LONG), len(SHORT)])
PREV = torch.LongTensor([[2, 4, 9, 13, 25, 6], [2, 7, 7, 20, 3, 31]])


def fconv_cfg(arch: str = "fconv", **values):
    """The config `--arch ARCH` builds: the architecture's values over the model dataclass's defaults."""
    architecture = get_architecture(arch)
    values = architecture.values(values)
    if architecture.model != "fconv_lm":
        values = {"max_source_positions": 1024, "max_target_positions": 1024, **values}  # the translation task's
    return OmegaConf.merge(OmegaConf.structured(MODEL_REGISTRY.get(architecture.model).dataclass), values)


def build(arch: str = "fconv", task=None, seed: int = 0, **values):
    torch.manual_seed(seed)
    model_cls = MODEL_REGISTRY[get_architecture(arch).model]
    return model_cls.build_model(fconv_cfg(arch, **values), task or Task(make_dict(40))).eval()


TINY = dict(encoder_embed_dim=12, decoder_embed_dim=12, decoder_out_embed_dim=10)
VARIANTS = [
    dict(TINY, encoder_layers="[(16, 3)] * 2", decoder_layers="[(16, 3)] * 2"),
    # widths that change (residual projections), even kernels (padded on the right in the encoder), 1x1
    # convolutions, residuals from 2 layers back and none, attention in some layers, a tied output layer
    dict(
        encoder_embed_dim=12,
        decoder_embed_dim=12,
        decoder_out_embed_dim=12,
        encoder_layers="[(16, 3)] + [(24, 2)] * 2 + [(16, 1, 3)]",
        decoder_layers="[(16, 3), (24, 4, 0), (24, 2, 2), (16, 1)]",
        decoder_attention="[True, False, True, True]",
        share_input_output_embed=True,
    ),
]
LM_TINY = dict(decoder_embed_dim=12, decoder_layers="[(16, 3)] + [(8, 1, 0), (8, 4, 0), (24, 1, 3)]")
SELF_ATT_TINY = dict(
    encoder_embed_dim=8,
    encoder_layers="[(8, 3)] * 2 + [(16, 2)]",
    encoder_attention="[False, True, False]",
    encoder_attention_nheads=2,
    decoder_embed_dim=8,
    decoder_layers="[(8, 4)] * 2 + [(12, 3)]",
    decoder_out_embed_dim=8,
    multihead_attention_nheads=2,
    self_attention="True",
    multihead_self_attention_nheads=2,
    project_input="True",
    gated_attention="True",
    downsample="True",
)


# fairseq 0.12.2's parameter counts for a 10,000-symbol dictionary, measured once with fairseq itself
# (/tmp/fairseq-ref/bin/python): args = argparse.Namespace(criterion=..., max_source_positions=1024,
# max_target_positions=1024, tokens_per_sample=1024, **values), then ARCH_CONFIG_REGISTRY[arch](args),
# ARCH_MODEL_REGISTRY[arch].build_model(args, task) (on the meta device) with the task's dictionaries a fairseq
# Dictionary grown to 10,000 symbols, and sum(p.numel() for p in model.parameters()). The adaptive-softmax rows
# ran under criterion "adaptive_loss" (the architectures' own cutoffs exceed 10,000 words), the others under
# "cross_entropy".
ADAPTIVE = {"_criterion": "adaptive_loss", "adaptive_softmax_cutoff": "2000,6000"}
FAIRSEQ_PARAMS = [
    ("fconv", {}, 88312864),
    ("fconv_iwslt_de_en", {}, 11644448),
    ("fconv_wmt_en_ro", {}, 91004448),
    ("fconv_wmt_en_de", {}, 148069920),
    ("fconv_wmt_en_fr", {}, 196611616),
    ("fconv", {"share_input_output_embed": True, "decoder_out_embed_dim": 512}, 85874448),
    (
        "fconv_iwslt_de_en",
        {
            "encoder_layers": "[(256, 3)] * 2 + [(384, 2, 2)]",
            "decoder_layers": "[(256, 3), (320, 3, 0), (256, 1, 2)]",
            "decoder_attention": "[True, False, True]",
        },
        11119648,
    ),
    ("fconv_self_att", {}, 42613264),
    ("fconv_self_att_wp", {}, 49083536),
    (
        "fconv_self_att",
        {
            "encoder_attention": "True",
            "encoder_attention_nheads": 4,
            "multihead_attention_nheads": 2,
            "self_attention": "[True] * 4 + [False] * 4",
            "gated_attention": "True",
            "project_input": "True",
        },
        80744464,
    ),
    ("fconv_lm", {}, 170187032),
    ("fconv_lm_dauphin_wikitext103", {}, 108340900),
    ("fconv_lm_dauphin_gbw", {}, 166102816),
    ("fconv_lm_dauphin_wikitext103", ADAPTIVE, 112917716),
    ("fconv_lm_dauphin_gbw", ADAPTIVE, 182841344),
]


@pytest.fixture
def shapes_only(monkeypatch):
    """Models built on the meta device, without their random init (torch's normal_ is slow on meta tensors)."""
    monkeypatch.setattr(torch.nn.init, "normal_", lambda tensor, *args, **kwargs: tensor)
    with torch.device("meta"):
        yield


@pytest.mark.parametrize("arch,values,expected", FAIRSEQ_PARAMS)
def test_architecture_parameter_counts_match_fairseq(arch, values, expected, shapes_only):
    model = build(arch, Task(make_dict(10000)), **values)
    assert model.num_parameters() == expected


# fairseq 0.12.2's state dicts (name -> shape) of tiny models, built by its own fairseq-train parser and task on
# the fixtures' data with the flags the fixtures' README lists ("The convolutional models"); here the same
# values as fairseq-lite's config. The fusion model's pretrained model is checkpoints/fconv_self_att.pt.
STATE_DICTS = json.loads((CHECKPOINTS / "fconv_state_dicts.json").read_text(encoding="utf-8"))
STATE_DICT_CASES = {
    "fconv": (
        "fconv",
        dict(
            encoder_embed_dim=8,
            encoder_layers="[(8, 3)] + [(12, 2)] * 2",
            decoder_embed_dim=8,
            decoder_layers="[(8, 3), (12, 3, 2), (12, 1, 0)]",
            decoder_attention="[True, False, True]",
            decoder_out_embed_dim=8,
            share_input_output_embed=True,
        ),
    ),
    "fconv_self_att": (
        "fconv_self_att",
        dict(SELF_ATT_TINY, encoder_layers="[(8, 3)] * 2 + [(16, 3)]", decoder_layers="[(8, 4)] * 2 + [(12, 4)]"),
    ),
    "fconv_self_att_fusion": (
        "fconv_self_att",
        dict(
            encoder_embed_dim=8,
            encoder_layers="[(8, 3)]",
            decoder_embed_dim=8,
            decoder_layers="[(8, 3)] * 2",
            decoder_out_embed_dim=16,
            self_attention="[False, True]",
            pretrained="True",
            pretrained_checkpoint=str(CHECKPOINTS / "fconv_self_att.pt"),
        ),
    ),
    "fconv_lm": (
        "fconv_lm",
        dict(
            decoder_embed_dim=8,
            decoder_layers="[(8, 3)] + [(8, 1, 0), (8, 3, 0), (16, 1, 3)]",
            _criterion="adaptive_loss",
            adaptive_softmax_cutoff="200,500",
        ),
    ),
}


def fixture_task(arch: str) -> Task:
    if arch == "fconv_lm":
        return Task(Dictionary.load(str(FIXTURES / "mono" / "dict.txt")))
    return Task(Dictionary.load(str(FIXTURES / "joined" / "dict.en.txt")))


@pytest.mark.parametrize("name", sorted(STATE_DICT_CASES))
def test_state_dict_names_and_shapes_are_fairseqs(name):
    arch, values = STATE_DICT_CASES[name]
    model = build(arch, fixture_task(arch), **values)
    expected = STATE_DICTS[name]
    # but for fairseq's `decoder.version` marker, which fairseq-lite's checkpoint loader drops
    fairseqs = {k: shape for k, shape in expected["state_dict"].items() if not k.endswith(".version")}
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == fairseqs
    assert model.num_parameters() == expected["params"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_incremental_decoding_equals_full_forward_on_a_left_padded_batch(variant):
    model = build(**variant)
    with torch.no_grad():
        full, extra = model(SRC, LENGTHS, PREV)
        encoder_out = model.encoder(SRC, LENGTHS)
        state = {}
        steps = [
            model.decoder(PREV[:, :t], encoder_out=encoder_out, incremental_state=state)
            for t in range(1, PREV.size(1) + 1)
        ]
        alone, _ = model(torch.LongTensor([SHORT]), torch.LongTensor([5]), PREV[1:])
    assert all(logits.shape == (2, 1, 40) for logits, _ in steps)
    torch.testing.assert_close(torch.cat([logits for logits, _ in steps], dim=1), full, atol=1e-5, rtol=0)
    # The attention (averaged over the layers) is over the source as given, none of it on pads.
    (attn,) = extra["attn"]
    torch.testing.assert_close(torch.cat([e["attn"][0] for _, e in steps], dim=1), attn, atol=1e-5, rtol=0)
    assert attn.shape == (2, 6, 8) and attn[1, :, :3].abs().max() == 0
    # fairseq's encoder layout: batch-first keys and values, the mask B x S
    keys, values = encoder_out["encoder_out"]
    assert keys.shape == values.shape == (2, 8, 12)
    assert encoder_out["encoder_padding_mask"][1].tolist() == [True] * 3 + [False] * 5
    # The short sentence alone gives what it gave in the padded batch.
    torch.testing.assert_close(alone[0], full[1], atol=1e-5, rtol=0)


def test_language_model_incremental_decoding_equals_full_forward():
    model = build("fconv_lm", **LM_TINY)
    with torch.no_grad():
        full, extra = model(PREV)
        state = {}
        steps = [model.decoder(PREV[:, :t], incremental_state=state)[0] for t in range(1, PREV.size(1) + 1)]
        model.decoder.reorder_incremental_state(state, torch.LongTensor([1, 0]))
        swapped = torch.cat([PREV[[1, 0]], PREV[[1, 0], :1]], dim=1)
        step, _ = model.decoder(swapped, incremental_state=state)
        whole, _ = model(swapped)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
    torch.testing.assert_close(step[:, 0], whole[:, -1], atol=1e-5, rtol=0)
    assert extra["attn"] == [None] and model.decoder.embed_positions is None
    assert model.max_positions() == model.decoder.max_positions() > 10**8  # no positions: no limit


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
        for moved, original in zip(reordered["encoder_out"], encoder_out["encoder_out"]):
            assert torch.equal(moved, original[new_order])
        assert torch.equal(reordered["encoder_padding_mask"], encoder_out["encoder_padding_mask"][new_order])
        step, _ = model.decoder(PREV[new_order, :4], encoder_out=reordered, incremental_state=state)
        full, _ = model(SRC[new_order], LENGTHS[new_order], PREV[new_order, :4])
    torch.testing.assert_close(step[:, 0], full[:, -1], atol=1e-5, rtol=0)
    # A batch without pads has no mask (fairseq's None), and reorders as well.
    unpadded = model.encoder(SRC[:1], LENGTHS[:1])
    assert unpadded["encoder_padding_mask"] is None
    assert model.encoder.reorder_encoder_out(unpadded, torch.LongTensor([0, 0]))["encoder_out"][0].shape[0] == 2


@pytest.mark.parametrize("arch", ["fconv", "fconv_lm", "fconv_self_att"])
def test_beam_search_gives_the_same_hypotheses_with_and_without_the_cache(arch):
    d = make_dict(40)
    values = {"fconv": VARIANTS[1], "fconv_lm": LM_TINY, "fconv_self_att": SELF_ATT_TINY}[arch]
    eos_bias = {"fconv": 3.0, "fconv_lm": 1.0, "fconv_self_att": 6.0}[arch]
    model = build(arch, Task(d), seed=2, **values)
    with torch.no_grad():  # weights far from their init and a likelier eos: sentences end at different steps
        for p in model.parameters():
            p.normal_(0, 0.5)
        model.decoder.fc3.bias[d.eos()] += eos_bias
    src = left_pad([LONG, SHORT, [9, 4, 2]])
    sample = {"id": torch.arange(3), "net_input": {"src_tokens": src, "src_lengths": torch.LongTensor([8, 5, 3])}}
    options = dict(beam_size=4, max_len_b=9, min_len=2)
    prefix = torch.LongTensor([[5, 6], [7, 8], [9, 9]]) if arch == "fconv_lm" else None  # the LM continues these
    cached = SequenceGenerator(model, d, **options).generate(sample, prefix_tokens=prefix)
    full = SequenceGenerator(model, d, use_incremental=False, **options).generate(sample, prefix_tokens=prefix)
    for a, b in zip(cached, full):
        assert len(a) == len(b) == 4
        assert [h["tokens"].tolist() for h in a] == [h["tokens"].tolist() for h in b]
        for x, y in zip(a, b):
            assert float(x["score"]) == pytest.approx(float(y["score"]), abs=1e-5)
    last_steps = [max(len(h["tokens"]) for h in hypos) for hypos in cached]
    assert min(last_steps) < max(last_steps)  # a sentence left the batch before another
    # fconv_self_att's decoder runs the whole prefix at every step (fairseq's is not incremental either).
    assert hasattr(model.decoder, "reorder_incremental_state") == (arch != "fconv_self_att")


def generate_lines(capsys, checkpoint: str, *extra: str) -> dict[str, tuple]:
    """Our fairseq-generate's H- lines for checkpoints/CHECKPOINT on the fixtures' valid set, by sample id."""
    from fairseq_cli.generate import main as generate

    generate(
        [str(FIXTURES / "joined"), "--path", str(CHECKPOINTS / checkpoint), "--gen-subset", "valid"]
        + ["--beam", "4", "--max-len-b", "12", "--batch-size", "16", "--num-workers", "0", "--cpu", *extra]
    )
    return {values[0]: values for kind, values in parse(capsys.readouterr().out) if kind == "H"}


@pytest.mark.parametrize("name", ["fconv", "fconv_self_att"])
def test_generate_gives_fairseqs_translations_on_a_fairseq_checkpoint(capsys, name):
    """checkpoints/NAME.pt: fairseq 0.12.2 trained it (see the fixtures' README); fairseq-lite's fairseq-generate
    prints fairseq's hypotheses and scores."""
    ours = generate_lines(capsys, f"{name}.pt")
    theirs = [
        line.split("\t")
        for line in (CHECKPOINTS / f"{name}.generate_valid.txt").read_text(encoding="utf-8").splitlines()
    ]
    assert len(theirs) == 40 and len(ours) == 40
    # a model that reads its source (the smaller fconv_self_att run gives 24 different hypotheses, fconv 40)
    assert len({h[2] for h in theirs}) > 20
    for sample_id, score, text in ((h[0][2:], h[1], h[2]) for h in theirs):
        assert ours[sample_id][2] == text
        assert float(ours[sample_id][1]) == pytest.approx(float(score), abs=1e-4)


def test_print_alignment_gives_fairseqs_alignments_on_a_fairseq_fconv(capsys):
    """The decoder's attention (averaged over its layers, over the source as given) aligns as fairseq's."""
    from fairseq_cli.generate import main as generate

    generate(
        [str(FIXTURES / "joined"), "--path", str(CHECKPOINTS / "fconv.pt"), "--gen-subset", "valid", "--beam", "4"]
        + ["--max-len-b", "12", "--batch-size", "16", "--num-workers", "0", "--cpu", "--print-alignment", "hard"]
    )
    ours = sorted(
        (line for line in capsys.readouterr().out.splitlines() if line.startswith("A-")),
        key=lambda line: int(line.split("\t")[0][2:]),
    )
    assert ours == (CHECKPOINTS / "fconv.generate_valid.align_hard.txt").read_text(encoding="utf-8").splitlines()


def test_fusion_with_a_pretrained_fairseq_model(tmp_path):
    """--pretrained True: the pretrained model (fairseq's checkpoints/fconv_self_att.pt) is loaded, frozen and
    fused; a relative --pretrained-checkpoint is also looked for in the data directory, as fairseq does."""
    arch, values = STATE_DICT_CASES["fconv_self_att_fusion"]
    task = fixture_task(arch)
    model = build(
        arch, task, **{**values, "pretrained_checkpoint": "checkpoints/fconv_self_att.pt", "_data": str(FIXTURES)}
    )
    pretrained = load_checkpoint_to_cpu(str(CHECKPOINTS / "fconv_self_att.pt"))["model"]
    state = model.state_dict()
    for name, weight in pretrained.items():  # the pretrained model's weights, under both of fairseq's names
        if name.startswith("decoder."):
            assert torch.equal(state["decoder.pretrained_decoder." + name[8:]], weight)
        elif name.startswith("encoder."):  # encoder.encoder.*: its CompositeEncoder's
            assert torch.equal(state["encoder.pretrained." + name[8:]], weight)
            assert torch.equal(state["pretrained_encoder." + name[8:]], weight)
    frozen = [p for n, p in model.named_parameters() if "pretrained" in n]
    assert frozen and not any(p.requires_grad for p in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if "pretrained" not in n)
    src = torch.LongTensor([[4, 50, 60, 70, 2], [1, 1, 80, 90, 2]])
    with torch.no_grad():
        logits, extra = model(src, torch.LongTensor([5, 3]), PREV + 3)
        # The fusion joins this decoder's fc2 output with the pretrained decoder's (its own fc2, before fc3).
        encoder_out = model.encoder(src, torch.LongTensor([5, 3]))
        assert set(encoder_out) == {"encoder", "pretrained"}
        pretrained_fc2, _ = model.decoder.pretrained_decoder.fc2_features(PREV + 3, encoder_out["pretrained"])
    assert logits.shape == (2, 6, len(task.target_dictionary)) and pretrained_fc2.shape == (2, 6, 16)
    assert extra["attn"][0].shape == (2, 6, 5)
    with pytest.raises(ConfigError, match="pretrained_checkpoint=nowhere.pt.*no such file"):
        build(arch, task, **{**values, "pretrained_checkpoint": "nowhere.pt"})
    with pytest.raises(ConfigError, match="pretrained=True.*requires.*pretrained_checkpoint"):
        build(arch, task, **{**values, "pretrained_checkpoint": ""})


def test_layer_specs_are_read_as_fairseq_evals_them_and_nothing_else_runs():
    assert conv_spec("[(512, 3)] * 2 + [(1024, 3)]", "m") == ((512, 3, 1), (512, 3, 1), (1024, 3, 1))
    gbw = get_architecture("fconv_lm_dauphin_gbw").values()["decoder_layers"]
    assert conv_spec(gbw, "m")[:4] == ((512, 5, 1), (128, 1, 0), (128, 5, 0), (512, 1, 3))
    assert len(conv_spec(gbw, "m")) == 1 + 3 * (3 + 3 + 6 + 1)
    assert bool_spec("True", "m", 3) == [True] * 3 and bool_spec("[True] * 2 + [False]", "m", 3) == [True, True, False]
    assert bool_spec("[1, 0]", "m", 2) == [True, False]
    assert eval_spec("2 * [(1, 2)]", "m") == [(1, 2), (1, 2)]
    for bad in ("__import__('os').system('true')", "[(512, 3)] * n", "open('x')", "[(1, 2)].pop()", "lambda: 1"):
        with pytest.raises(ConfigError, match="not allowed in a layer spec"):
            eval_spec(bad, "model.encoder_layers")
    with pytest.raises(ConfigError, match="not a valid spec"):
        eval_spec("[(512, 3)", "model.encoder_layers")
    with pytest.raises(ConfigError, match=r"layer 1 is \(1, 2, 3, 4\), expected"):
        conv_spec("[(8, 3), (1, 2, 3, 4)]", "model.encoder_layers")
    with pytest.raises(ConfigError, match="residual 3, which must be between 0 and 2"):
        conv_spec("[(8, 3), (8, 3, 3)]", "model.encoder_layers")
    with pytest.raises(ConfigError, match="expected \\(out_channels, kernel_width\\) of ints"):
        conv_spec("[(8, 3, 1)]", "model.decoder_layers", residuals=False)  # fconv_self_att's are pairs
    with pytest.raises(ConfigError, match="a list of 3 booleans"):
        bool_spec("[True, False]", "model.decoder_attention", 3)


def test_config_errors_are_one_line():
    with pytest.raises(ConfigError, match="needs attention in at least one decoder layer"):
        build(decoder_layers="[(16, 3)] * 2", decoder_attention="False")
    with pytest.raises(ConfigError, match="encoder_embed_dim.*\\(16\\) must match.*decoder_embed_dim.*\\(12\\)"):
        build(**{**VARIANTS[0], "encoder_embed_dim": 16})
    with pytest.raises(ConfigError, match="share_input_output_embed.*requires.*decoder_out_embed_dim"):
        build(share_input_output_embed=True)  # 256 != 512
    with pytest.raises(ConfigError, match="max_source_positions=2.*must be larger than 2"):
        build(**VARIANTS[0], max_source_positions=2)
    with pytest.raises(ConfigError, match="a language model has no encoder to attend to"):
        build("fconv_lm", **LM_TINY, decoder_attention="True")
    with pytest.raises(ConfigError, match="decoder_out_embed_dim=64.*as wide as"):
        build("fconv_lm", **LM_TINY, decoder_out_embed_dim=64)
    with pytest.raises(ConfigError, match="last cutoff is larger than the vocabulary"):
        build("fconv_lm_dauphin_wikitext103", _criterion="adaptive_loss")  # 10000,20000,200000 on 40 words
    with pytest.raises(ConfigError, match="downsample.*requires.*project_input=True"):
        build("fconv_self_att", **{**SELF_ATT_TINY, "project_input": "False"})
    with pytest.raises(ConfigError, match="decoder_embed_dim.*\\(8\\) must be divisible by.*self_attention_nheads"):
        build("fconv_self_att", **{**SELF_ATT_TINY, "multihead_self_attention_nheads": 3})
    with pytest.raises(ConfigError, match="gated_attention='maybe'.*must be True or False"):
        build("fconv_self_att", **{**SELF_ATT_TINY, "gated_attention": "maybe"})


def test_weight_norm_keeps_torchs_original_names_and_copies():
    linear = weight_norm(torch.nn.Linear(3, 4))
    assert sorted(n for n, _ in linear.named_parameters()) == ["bias", "weight_g", "weight_v"]
    assert linear.weight_g.shape == (4, 1)
    conv = weight_norm(ConvTBC(3, 6, 2), dim=2)
    assert conv.weight_g.shape == (1, 1, 6) and conv.weight_v.shape == (2, 3, 6)
    x = torch.randn(5, 2, 3)
    y = conv(x)
    assert y.shape == (4, 2, 6)
    with torch.no_grad():
        conv.weight_g.mul_(2.0)  # the magnitudes scale the weight, the bias is zero
    torch.testing.assert_close(conv(x), 2 * y)
    copied = copy.deepcopy(conv)  # after a forward pass: the weight kept is detached
    pickle.loads(pickle.dumps(conv))
    torch.testing.assert_close(copied(x), conv(x))
    plain = remove_weight_norm(copied)
    assert sorted(n for n, _ in plain.named_parameters()) == ["bias", "weight"]
    torch.testing.assert_close(plain(x), conv(x))


def test_conv_tbc_is_torchs_conv_tbc_and_linearized_steps_match():
    conv = LinearizedConvolution(3, 4, 3, padding=2)
    x = torch.randn(6, 2, 3)
    with torch.no_grad():
        torch.testing.assert_close(conv.conv_tbc(x), torch.conv_tbc(x, conv.weight, conv.bias, 2), atol=1e-6, rtol=0)
        full = conv(x)
        state = {}
        steps = [conv(x.transpose(0, 1)[:, : t + 1], state) for t in range(6)]
    assert full.shape == (6, 2, 4)
    torch.testing.assert_close(torch.cat(steps, dim=1).transpose(0, 1), full, atol=1e-6, rtol=0)


@pytest.mark.parametrize("downsample", [False, True])
def test_downsampled_self_attention_sees_only_earlier_steps(downsample):
    torch.manual_seed(0)
    attention = DownsampledMultiHeadAttention(6, 8, 2, project_input=True, gated=True, downsample=downsample)
    x = torch.randn(5, 2, 8)
    changed = x.clone()
    changed[3:] += 1.0
    with torch.no_grad():
        out, weights = attention(x, x, x, mask_future_timesteps=True, use_scalar_bias=True)
        out2, _ = attention(changed, changed, changed, mask_future_timesteps=True, use_scalar_bias=True)
    assert out.shape == (5, 2, 6)
    # Steps 0..2 see only steps before them, which did not change; step 3's own query did.
    torch.testing.assert_close(out[:3], out2[:3])
    assert not torch.allclose(out[3], out2[3])
    # The first step sees nothing but the zero "scalar bias" slot.
    assert weights[:, 0, 0].eq(1).all()


def test_fairseq_train_fconv_with_nag(bilingual_bin, tmp_path, caplog):  # noqa: F811
    losses = fairseq_train(
        caplog,
        str(bilingual_bin),
        "--task",
        "translation",
        "--arch",
        "fconv_iwslt_de_en",
        "--encoder-embed-dim",
        "16",
        "--encoder-layers",
        "[(32, 3)] * 2",
        "--decoder-embed-dim",
        "16",
        "--decoder-layers",
        "[(32, 3)] + [(24, 2, 0)]",
        "--decoder-out-embed-dim",
        "16",
        "--share-input-output-embed",
        "--optimizer",
        "nag",
        "--lr",
        "0.25",
        "--clip-norm",
        "0.1",
        "--max-tokens",
        "400",
        "--max-update",
        "8",
        "--save-dir",
        str(tmp_path),
    )
    state = load_checkpoint_to_cpu(str(tmp_path / "checkpoint_last.pt"))
    assert state["num_updates"] == 8 and state["cfg"]["model"]["_name"] == "fconv"
    assert state["cfg"]["model"]["decoder_layers"] == "[(32, 3)] + [(24, 2, 0)]"
    assert state["model"]["decoder.convolutions.1.weight_v"].shape == (2, 32, 48)
    assert torch.equal(state["model"]["decoder.fc3.weight"], state["model"]["decoder.embed_tokens.weight"])
    assert len(losses) >= 8 and losses[-1] < losses[0]


def test_fairseq_train_fconv_lm_with_an_adaptive_softmax(tiny_data_bin, tmp_path, caplog):
    losses = fairseq_train(
        caplog,
        str(tiny_data_bin),
        "--task",
        "language_modeling",
        "--arch",
        "fconv_lm",
        "--decoder-embed-dim",
        "16",
        "--decoder-layers",
        "[(32, 4)] + [(16, 1, 0), (16, 3, 0), (32, 1, 3)]",
        "--criterion",
        "adaptive_loss",
        "--adaptive-softmax-cutoff",
        "100,400",
        "--tokens-per-sample",
        "32",
        "--optimizer",
        "nag",
        "--lr",
        "0.5",
        "--clip-norm",
        "0.1",
        "--max-tokens",
        "256",
        "--max-update",
        "8",
        "--save-dir",
        str(tmp_path),
    )
    state = load_checkpoint_to_cpu(str(tmp_path / "checkpoint_last.pt"))
    assert state["num_updates"] == 8 and state["cfg"]["model"]["_name"] == "fconv_lm"
    assert "decoder.adaptive_softmax.head.weight" in state["model"] and "decoder.fc3.bias" not in state["model"]
    assert len(losses) >= 8 and losses[-1] < losses[0]


def test_pretrained_embeddings_and_the_encoders_gradient_scale(tmp_path):
    d = make_dict(40)
    path = tmp_path / "embed.txt"
    path.write_text("2 12\n" + "".join(f"w{i} " + " ".join(["0.5"] * 12) + "\n" for i in (5, 7)), encoding="utf-8")
    model = build(**VARIANTS[0], encoder_embed_path=str(path), task=Task(d))
    assert model.encoder.embed_tokens.weight[d.index("w5")].eq(0.5).all()
    assert not model.encoder.embed_tokens.weight[d.index("w6")].eq(0.5).all()
    with pytest.raises(ConfigError, match="encoder_embed_path=.*has 12 values, the embedding 16"):
        build(
            **{**VARIANTS[0], "encoder_embed_dim": 16, "decoder_embed_dim": 16},
            encoder_embed_path=str(path),
            task=Task(d),
        )
    # fairseq scales the encoder output's gradient by 1 / (2 x attention layers): here 2 layers attend.
    model.train()
    keys, _ = model.encoder(SRC, LENGTHS)["encoder_out"]
    assert model.encoder.num_attention_layers == 2
    grad = torch.autograd.grad(keys.sum(), model.encoder.fc2.bias)[0]
    # d(sum of the keys) / d(fc2.bias): one per non-pad position (8 + 5), scaled by 1/4
    assert torch.allclose(grad, torch.full_like(grad, (8 + 5) / 4))


def test_fairseq_train_a_fusion_model_then_generate_with_it(tmp_path, caplog, capsys):
    """examples/stories: a fusion model trained on a frozen pretrained model, then generation from the fusion
    checkpoint (which rebuilds the pretrained model from --pretrained-checkpoint before loading every weight)."""
    pretrained = str(CHECKPOINTS / "fconv_self_att.pt")
    losses = fairseq_train(
        caplog,
        str(FIXTURES / "joined"),
        "--task",
        "translation",
        "-s",
        "en",
        "-t",
        "es",
        "--arch",
        "fconv_self_att",
        "--encoder-embed-dim",
        "8",
        "--encoder-layers",
        "[(8, 3)]",
        "--decoder-embed-dim",
        "8",
        "--decoder-layers",
        "[(8, 3)] * 2",
        "--decoder-out-embed-dim",
        "16",
        "--self-attention",
        "[False, True]",
        "--pretrained",
        "True",
        "--pretrained-checkpoint",
        pretrained,
        "--optimizer",
        "nag",
        "--lr",
        "0.25",
        "--clip-norm",
        "0.1",
        "--max-tokens",
        "512",
        "--max-update",
        "4",
        "--save-dir",
        str(tmp_path),
    )
    state = load_checkpoint_to_cpu(str(tmp_path / "checkpoint_last.pt"))
    assert state["num_updates"] == 4 and len(losses) >= 4
    before = load_checkpoint_to_cpu(pretrained)["model"]
    for name, weight in before.items():  # frozen: the pretrained weights are saved as they were
        if name.startswith("decoder."):
            assert torch.equal(state["model"]["decoder.pretrained_decoder." + name[8:]], weight)
    ours = generate_lines(capsys, str(tmp_path / "checkpoint_last.pt"))  # an absolute path: CHECKPOINTS / it is it
    assert len(ours) == 40
