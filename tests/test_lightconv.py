"""fairseq's LightConv/DynamicConv models (`--arch lightconv*`, `--arch lightconv_lm*`) and their convolutions:
parameter counts and names equal fairseq 0.12.2's, the convolutions equal their definition (full sequences,
one step at a time, fairseq's options), incremental decoding == the full forward pass, beams followed by
reorder_*, beam search with and without the cache, fairseq's own hypotheses on a checkpoint it trained, and
fairseq-train runs of both models."""

import pytest
import torch
from omegaconf import OmegaConf
from test_fairseq_checkpoints import CHECKPOINTS, FIXTURES
from test_generate_cli import parse
from test_lstm import fairseq_train
from test_transformer import LONG, SHORT, Task, left_pad, make_dict
from test_translation_task import bilingual_bin  # noqa: F401  (a fixture)

from fairseq_lite.checkpoint import load_checkpoint_to_cpu
from fairseq_lite.errors import ConfigError
from fairseq_lite.generation import SequenceGenerator
from fairseq_lite.models.lightconv import LightConvConfig, LightConvModel
from fairseq_lite.models.lightconv_lm import LightConvLanguageModel, LightConvLanguageModelConfig
from fairseq_lite.modules import DynamicConv, DynamicConv1dTBC, LightweightConv, LightweightConv1dTBC
from fairseq_lite.registry import get_architecture

SRC, LENGTHS = left_pad([LONG, SHORT]), torch.LongTensor([len(LONG), len(SHORT)])
PREV = torch.LongTensor([[2, 4, 9, 13, 25, 6], [2, 7, 7, 20, 3, 31]])


def lightconv_cfg(arch: str = "lightconv", **values):
    """The config `--arch ARCH` builds: the architecture's values over the dataclass's defaults."""
    values = get_architecture(arch).values(values)
    if arch.startswith("lightconv_lm"):
        values = {"tokens_per_sample": 1024, "max_target_positions": None, **values}  # the LM task's
        return OmegaConf.merge(OmegaConf.structured(LightConvLanguageModelConfig), values)
    return OmegaConf.merge(OmegaConf.structured(LightConvConfig), values)


def build(arch: str = "lightconv", task=None, seed: int = 0, **values):
    torch.manual_seed(seed)
    model_cls = LightConvLanguageModel if arch.startswith("lightconv_lm") else LightConvModel
    return model_cls.build_model(lightconv_cfg(arch, **values), task or Task(make_dict(40))).eval()


TINY = dict(
    encoder_embed_dim=16,
    encoder_ffn_embed_dim=24,
    encoder_layers=2,
    encoder_attention_heads=2,
    encoder_kernel_size_list=[3, 5],
    decoder_embed_dim=16,
    decoder_ffn_embed_dim=24,
    decoder_layers=2,
    decoder_attention_heads=4,
    decoder_kernel_size_list=[3, 4],
)
TINY_LM = dict(
    decoder_embed_dim=16, decoder_ffn_embed_dim=24, decoder_layers=2, decoder_attention_heads=2,
    decoder_kernel_size_list=[5],
)  # fmt: skip
VARIANTS = [
    TINY,  # dynamic convolutions and GLUs (the defaults)
    # lightweight convolutions, no GLU, pre-norm, learned positions, shared embeddings, a 4-tap centred kernel
    dict(
        TINY,
        encoder_conv_type="lightweight",
        decoder_conv_type="lightweight",
        encoder_glu=False,
        decoder_glu="0",
        encoder_normalize_before=True,
        decoder_normalize_before=True,
        encoder_learned_pos=True,
        decoder_learned_pos=True,
        share_all_embeddings=True,
        encoder_kernel_size_list=[4],
    ),
    # narrower convolutions, a projected output, no softmax over the taps
    dict(TINY, encoder_conv_dim=8, decoder_conv_dim=12, decoder_output_dim=10, weight_softmax="False"),
]

# fairseq 0.12.2's parameter counts for a 10,000-symbol dictionary, measured once with fairseq itself
# (/tmp/fairseq-ref/bin/python): args = options.parse_args_and_arch(options.get_training_parser(),
# [data, "--task", TASK, "--arch", ARCH, *flags]) (so that its add_args defaults, --encoder-conv-type dynamic and
# --weight-softmax True, are in args), then ARCH_MODEL_REGISTRY[arch].build_model(args, task) on the meta device,
# the task's dictionaries a fairseq Dictionary grown to 10,000 symbols, and sum(p.numel() for p in
# model.parameters()). On CPU fairseq's LightweightConv/DynamicConv factories build their torch modules (the
# CUDA kernels are tried only when CUDA is available), which have the CUDA modules' parameters.
LIGHTWEIGHT = {"encoder_conv_type": "lightweight", "decoder_conv_type": "lightweight"}
FAIRSEQ_PARAMS = [
    ("lightconv", {}, 60329984),
    ("lightconv", LIGHTWEIGHT, 59238488),
    ("lightconv_iwslt_de_en", {}, 42723840),
    ("lightconv_iwslt_de_en", LIGHTWEIGHT, 42178092),
    ("lightconv_wmt_en_de", {}, 60329984),
    ("lightconv_wmt_en_de_big", {}, 210403328),
    ("lightconv_wmt_en_fr_big", {}, 210403328),
    ("lightconv_wmt_zh_en_big", {}, 210403328),
    # --share-all-embeddings --encoder-glu 0 --decoder-glu 1
    ("lightconv_wmt_en_de_big", {"share_all_embeddings": True, "encoder_glu": 0, "decoder_glu": 1}, 182576128),
    # --encoder-learned-pos --decoder-learned-pos --share-decoder-input-output-embed --encoder-conv-dim 256
    # --decoder-conv-dim 384
    (
        "lightconv",
        {
            "encoder_learned_pos": True,
            "decoder_learned_pos": True,
            "share_decoder_input_output_embed": True,
            "encoder_conv_dim": 256,
            "decoder_conv_dim": 384,
        },
        51897344,
    ),
    # --encoder-layers 3 --decoder-layers 2 --encoder-kernel-size-list [3,5,7] --decoder-kernel-size-list [31]
    (
        "lightconv",
        {
            "encoder_layers": 3,
            "decoder_layers": 2,
            "encoder_kernel_size_list": [3, 5, 7],
            "decoder_kernel_size_list": [31],
        },
        32227328,
    ),
    ("lightconv_lm", {}, 28061696),
    ("lightconv_lm_gbw", {}, 41140224),
    ("lightconv_lm", {"decoder_conv_type": "lightweight", "decoder_glu": "False"}, 26003376),
    ("lightconv_lm", {"adaptive_softmax_cutoff": "2000,6000"}, 24688640),  # (--criterion adaptive_loss)
    (
        "lightconv_lm",
        {
            "adaptive_input": True,
            "adaptive_input_cutoff": "2000,6000",
            "adaptive_softmax_cutoff": "2000,6000",
            "tie_adaptive_weights": True,
            "tie_adaptive_proj": True,
        },
        19830784,
    ),
    ("lightconv_lm", {"decoder_input_dim": 256, "decoder_output_dim": 384}, 24549376),
    ("lightconv_lm", {"share_decoder_input_output_embed": True}, 22941696),
]


@pytest.mark.parametrize("arch,values,expected", FAIRSEQ_PARAMS)
def test_architecture_parameter_counts_match_fairseq(arch, values, expected):
    with torch.device("meta"):  # shapes only
        model = build(arch, Task(make_dict(10000)), **values)
    assert model.num_parameters() == expected


def test_parameter_names_are_fairseqs():
    """The state-dict keys of fairseq 0.12.2's `--arch lightconv --encoder-layers 1 --decoder-layers 1
    --encoder-conv-type lightweight` (listed from its model), less its `version` and `_float_tensor` buffers,
    which fairseq-lite drops when it loads a fairseq checkpoint."""
    with torch.device("meta"):
        model = build(
            "lightconv",
            Task(make_dict(100)),
            encoder_layers=1,
            decoder_layers=1,
            encoder_kernel_size_list=[3],
            decoder_kernel_size_list=[3],
            encoder_conv_type="lightweight",
        )

    def weight_and_bias(*names):
        return [f"{name}.{p}" for name in names for p in ("weight", "bias")]

    linear = weight_and_bias("linear1", "linear2", "fc1", "fc2")
    attn = weight_and_bias(*(f"encoder_attn.{proj}_proj" for proj in ("k", "v", "q", "out")))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(shapes) == sorted(
        ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "decoder.embed_out"]
        + [
            f"encoder.layers.0.{n}"
            for n in linear + ["conv.weight"] + weight_and_bias("layer_norms.0", "layer_norms.1")
        ]
        + [f"decoder.layers.0.{n}" for n in linear + ["conv.weight_linear.weight"] + attn]
        + [
            f"decoder.layers.0.{n}"
            for n in weight_and_bias("conv_layer_norm", "encoder_attn_layer_norm", "final_layer_norm")
        ]
    )
    assert shapes["encoder.layers.0.linear1.weight"] == (1024, 512)  # GLU: twice the convolution's width
    assert shapes["encoder.layers.0.conv.weight"] == (8, 1, 3)
    assert shapes["decoder.layers.0.conv.weight_linear.weight"] == (24, 512)  # 8 heads x 3 taps
    assert shapes["decoder.embed_out"] == (100, 512)


# --- the convolutions ---------------------------------------------------------------------------------------


def reference_conv(x, kernels, padding_l):
    """The definition: out[t, b, c] = sum_k kernels[t, b, c // R, k] * x[t + k - padding_l, b, c]."""
    length, bsz, channels = x.shape
    heads, taps = kernels.shape[-2:]
    out = torch.zeros_like(x)
    for t in range(length):
        for k in range(taps):
            src = t + k - padding_l
            if 0 <= src < length:
                out[t] += kernels[t, :, :, k].repeat_interleave(channels // heads, dim=-1) * x[src]
    return out


def steps(conv, x):
    state = {}
    return torch.cat([conv(x[t : t + 1], incremental_state=state) for t in range(x.size(0))]), state


@pytest.mark.parametrize("length", [1, 7, 150])  # 150: three blocks of the banded computation
@pytest.mark.parametrize("kernel_size,padding_l", [(1, 0), (3, 1), (4, 3), (5, 4), (31, 15), (31, 30)])
def test_lightweight_and_dynamic_convolutions_compute_their_definition(length, kernel_size, padding_l):
    torch.manual_seed(0)
    x = torch.randn(length, 3, 16)
    light = LightweightConv(16, kernel_size, padding_l=padding_l, num_heads=4, weight_softmax=True, bias=True)
    dynamic = DynamicConv(16, kernel_size, padding_l=padding_l, num_heads=4, weight_softmax=True, conv_bias=True)
    for p in list(light.parameters()) + list(dynamic.parameters()):
        torch.nn.init.normal_(p)
    assert isinstance(light, LightweightConv1dTBC) and isinstance(dynamic, DynamicConv1dTBC)
    with torch.no_grad():
        kernels = light.weight.view(1, 1, 4, kernel_size).softmax(-1).expand(length, 3, 4, kernel_size)
        expected = reference_conv(x, kernels, padding_l) + light.bias
        torch.testing.assert_close(light(x), expected, atol=1e-5, rtol=1e-5)
        kernels = dynamic.weight_linear(x).view(length, 3, 4, kernel_size).softmax(-1)
        expected = reference_conv(x, kernels, padding_l) + dynamic.conv_bias
        torch.testing.assert_close(dynamic(x), expected, atol=1e-5, rtol=1e-5)
        if padding_l == kernel_size - 1:  # causal: one step at a time gives the same
            for conv in (light, dynamic):
                torch.testing.assert_close(steps(conv, x)[0], conv(x), atol=1e-5, rtol=1e-5)


def test_dynamic_convolution_options():
    """renorm_padding: the softmax runs over the taps inside the sequence; in_proj: one linear layer gives the
    convolved input and the kernels; query: the kernels come from another input."""
    torch.manual_seed(0)
    x = torch.randn(6, 2, 8)
    with torch.no_grad():
        conv = DynamicConv1dTBC(8, 3, padding_l=2, num_heads=2, weight_softmax=True, renorm_padding=True)
        logits = conv.weight_linear(x).view(6, 2, 2, 3)
        inside = torch.tensor([[t + k - 2 >= 0 for k in range(3)] for t in range(6)]).view(6, 1, 1, 3)
        kernels = logits.masked_fill(~inside, float("-inf")).softmax(-1)
        torch.testing.assert_close(conv(x), reference_conv(x, kernels, 2), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(steps(conv, x)[0], conv(x), atol=1e-5, rtol=1e-5)

        conv = DynamicConv1dTBC(8, 3, padding_l=1, num_heads=2, in_proj=True)
        assert conv.in_proj and conv.weight_linear.weight.shape == (8 + 2 * 3, 8)
        proj = conv.weight_linear(x)
        kernels = proj[..., 8:].reshape(6, 2, 2, 3)
        torch.testing.assert_close(conv(x), reference_conv(proj[..., :8], kernels, 1), atol=1e-5, rtol=1e-5)

        conv = DynamicConv1dTBC(8, 3, padding_l=1, num_heads=2, query_size=5, bias=True)
        query = torch.randn(6, 2, 5)
        kernels = conv.weight_linear(query).view(6, 2, 2, 3)
        torch.testing.assert_close(conv(x, query=query), reference_conv(x, kernels, 1), atol=1e-5, rtol=1e-5)


def test_convolution_input_buffers_follow_beams():
    torch.manual_seed(0)
    x = torch.randn(5, 3, 8)
    order = torch.LongTensor([2, 0, 0])
    for conv in (
        LightweightConv1dTBC(8, 3, padding_l=2, num_heads=2),
        DynamicConv1dTBC(8, 3, padding_l=2, num_heads=2),
    ):
        with torch.no_grad():
            _, state = steps(conv, x[:4])
            conv.reorder_incremental_state(state, order)
            step = conv(x[4:, order], incremental_state=state)
            assert conv._get_input_buffer(state).shape == (3, 2, 8)  # the last kernel_size - 1 inputs
            torch.testing.assert_close(step[0], conv(x[:, order])[-1], atol=1e-5, rtol=0)


def test_weight_dropout_drops_each_positions_kernel_in_training_only():
    torch.manual_seed(0)
    conv = LightweightConv1dTBC(8, 3, padding_l=1, num_heads=2, weight_dropout=0.5).eval()
    x = torch.ones(40, 2, 8)
    with torch.no_grad():
        assert torch.equal(conv(x), conv(x))
        dropped = conv.train()(x)
    assert len({tuple(row) for row in dropped[1:-1, 0, :4].tolist()}) > 2  # positions differ


# --- the models ---------------------------------------------------------------------------------------------


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
        # The short sentence alone gives what it gave in the padded batch.
        alone, _ = model(torch.LongTensor([SHORT]), torch.LongTensor([5]), PREV[1:])
        no_pads = model.encoder(torch.LongTensor([SHORT]))
    assert all(step.shape == (2, 1, 40) for step in steps)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
    torch.testing.assert_close(alone[0], full[1], atol=1e-5, rtol=0)
    # fairseq's encoder layout for this model: bare tensors, no mask without pads
    assert encoder_out["encoder_out"].shape == (8, 2, 16)
    assert encoder_out["encoder_padding_mask"][1].tolist() == [True] * 3 + [False] * 5
    assert no_pads["encoder_padding_mask"] is None
    assert extra["attn"] == [None] and len(extra["inner_states"]) == 3


def test_language_model_incremental_decoding_equals_full_forward():
    for conv_type in ("dynamic", "lightweight"):
        model = build(
            "lightconv_lm", decoder_conv_type=conv_type, decoder_input_dim=12, decoder_output_dim=10, **TINY_LM
        )
        with torch.no_grad():
            full, extra = model(PREV)
            state = {}
            steps = [model.decoder(PREV[:, :t], incremental_state=state)[0] for t in range(1, PREV.size(1) + 1)]
            model.decoder.reorder_incremental_state(state, torch.LongTensor([1, 0]))
            nxt = torch.cat([PREV[[1, 0]], PREV[[1, 0], :1]], dim=1)
            step, _ = model.decoder(nxt, incremental_state=state)
            whole, _ = model(nxt)
        torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
        torch.testing.assert_close(step[:, 0], whole[:, -1], atol=1e-5, rtol=0)
        # pre-norm blocks without the final LayerNorm (fairseq's final_norm=False), no encoder attention
        assert model.decoder.normalize is False and model.decoder.layers[0].normalize_before
        assert model.decoder.layers[0].encoder_attn is None and extra["attn"] == [None]


def test_reorder_encoder_out_and_incremental_state_follow_beams():
    model = build(**VARIANTS[0])
    new_order = torch.LongTensor([1, 1, 0])
    with torch.no_grad():
        encoder_out = model.encoder(SRC, LENGTHS)
        state = {}
        for t in (1, 2, 3):
            model.decoder(PREV[:, :t], encoder_out=encoder_out, incremental_state=state)
        model.decoder.reorder_incremental_state(state, new_order)
        reordered = model.encoder.reorder_encoder_out(encoder_out, new_order)
        assert torch.equal(reordered["encoder_out"], encoder_out["encoder_out"][:, new_order])
        assert torch.equal(reordered["encoder_padding_mask"], encoder_out["encoder_padding_mask"][new_order])
        step, _ = model.decoder(PREV[new_order, :4], encoder_out=reordered, incremental_state=state)
        full, _ = model(SRC[new_order], LENGTHS[new_order], PREV[new_order, :4])
    torch.testing.assert_close(step[:, 0], full[:, -1], atol=1e-5, rtol=0)


# dynamic and lightweight convolutions (the latter unshared, so that raising eos's output row leaves its input
# embedding alone), and the LM; each with an eos boost (in logit standard deviations) that ends sentences apart
@pytest.mark.parametrize(
    "arch,values,boost",
    [("lightconv", VARIANTS[0], 2.0), ("lightconv", dict(VARIANTS[1], share_all_embeddings=False), 3.0)]
    + [("lightconv_lm", TINY_LM, 1.5)],
)
def test_beam_search_gives_the_same_hypotheses_with_and_without_the_cache(arch, values, boost):
    d = make_dict(40)
    model = build(arch, Task(d), seed=2, **values)
    src = left_pad([LONG, SHORT, [9, 4, 2]])
    with torch.no_grad():  # weights far from their init and a likelier eos: sentences end at different steps
        for p in model.parameters():
            p.normal_(0, 1.0)
        encoder_out = model.encoder(src) if arch == "lightconv" else None
        features, _ = model.decoder.extract_features(PREV[[0, 1, 1]], encoder_out)
        mean = features.mean(dim=(0, 1))  # eos's logit grows by `boost` deviations on the typical features
        model.decoder.embed_out[d.eos()] += boost * model.decoder.output_layer(features).std() * mean / mean.dot(mean)
    sample = {"id": torch.arange(3), "net_input": {"src_tokens": src, "src_lengths": torch.LongTensor([8, 5, 3])}}
    options = dict(beam_size=4, max_len_b=9, min_len=2)
    prefix = None if arch == "lightconv" else torch.LongTensor([[5, 6], [7, 8], [9, 9]])  # the LM continues these
    cached = SequenceGenerator(model, d, **options).generate(sample, prefix_tokens=prefix)
    full = SequenceGenerator(model, d, use_incremental=False, **options).generate(sample, prefix_tokens=prefix)
    for a, b in zip(cached, full):
        assert len(a) == len(b) == 4
        assert [h["tokens"].tolist() for h in a] == [h["tokens"].tolist() for h in b]
        for x, y in zip(a, b):
            assert float(x["score"]) == pytest.approx(float(y["score"]), abs=1e-5)
            torch.testing.assert_close(x["positional_scores"], y["positional_scores"], atol=1e-5, rtol=0)
    last_steps = [max(len(h["tokens"]) for h in hypos) for hypos in cached]
    assert min(last_steps) < max(last_steps)  # a sentence left the batch before another


def test_attention_is_formed_when_asked_and_is_over_the_source_as_given():
    model = build(**TINY)
    model.decoder.make_generation_fast_(need_attn=True)
    with torch.no_grad():
        _, extra = model(SRC, LENGTHS, PREV)
        _, alone = model(torch.LongTensor([SHORT]), torch.LongTensor([5]), PREV[1:])
    (attn,) = extra["attn"]
    assert attn.shape == (2, 6, 8)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 6))
    assert attn[1, :, :3].abs().max() == 0  # the pads (left) get no weight
    torch.testing.assert_close(attn[1, :, 3:], alone["attn"][0][0], atol=1e-6, rtol=0)


def test_generate_gives_fairseqs_translations_on_a_fairseq_dynamicconv(capsys):
    """checkpoints/lightconv.pt: fairseq 0.12.2 trained it (dynamic convolutions, a GLU encoder and a decoder
    without, an even decoder kernel, shared embeddings; see the fixtures' README); fairseq-lite's
    fairseq-generate prints fairseq's hypotheses and scores."""
    from fairseq_cli.generate import main as generate

    generate(
        [str(FIXTURES / "joined"), "--path", str(CHECKPOINTS / "lightconv.pt"), "--gen-subset", "valid"]
        + ["--beam", "4", "--max-len-b", "12", "--batch-size", "16", "--num-workers", "0", "--cpu"]
    )
    ours = {values[0]: values for kind, values in parse(capsys.readouterr().out) if kind == "H"}
    theirs = [
        line.split("\t")
        for line in (CHECKPOINTS / "lightconv.generate_valid.txt").read_text(encoding="utf-8").splitlines()
    ]
    assert len(theirs) == 40 and len(ours) == 40
    assert len({h[2] for h in theirs}) > 30  # a model that reads its source
    for sample_id, score, text in ((h[0][2:], h[1], h[2]) for h in theirs):
        assert ours[sample_id][2] == text
        assert float(ours[sample_id][1]) == pytest.approx(float(score), abs=1e-4)


def test_config_errors_are_one_line():
    with pytest.raises(ConfigError, match="encoder_kernel_size_list.*has 2 kernel sizes for.*encoder_layers=3"):
        build(**dict(TINY, encoder_layers=3))
    with pytest.raises(ConfigError, match="decoder_conv_dim.*must be divisible by.*decoder_attention_heads"):
        build(**dict(TINY, decoder_conv_dim=10))
    with pytest.raises(ConfigError, match="encoder_glu='maybe'.*not True, False, 1 or 0"):
        build(**dict(TINY, encoder_glu="maybe"))
    with pytest.raises(ConfigError, match="requires a joined dictionary"):
        build(task=Task(make_dict(40), make_dict(48)), share_all_embeddings=True, **TINY)
    with pytest.raises(ConfigError, match="decoder_output_dim.*to match.*decoder_embed_dim"):
        build(**dict(TINY, share_decoder_input_output_embed=True, decoder_output_dim=8))
    with pytest.raises(ConfigError, match="last cutoff is larger than the vocabulary"):
        build(**dict(TINY, adaptive_softmax_cutoff="20,60"))
    with pytest.raises(ConfigError, match="weight_dropout must be in"):
        build(**dict(TINY, weight_dropout=1.5))
    with pytest.raises(ConfigError, match="character_embeddings.*does not implement"):
        build("lightconv_lm", character_embeddings=True, **TINY_LM)
    with pytest.raises(ConfigError, match="tie_adaptive_weights needs"):
        build("lightconv_lm", tie_adaptive_weights=True, **TINY_LM)


def test_pretrained_embeddings_are_read_from_a_file(tmp_path):
    d = make_dict(40)
    path = tmp_path / "embed.txt"
    path.write_text("2 16\n" + "".join(f"{d[i]} " + " ".join([str(i)] * 16) + "\n" for i in (5, 9)))
    model = build(task=Task(d), encoder_embed_path=str(path), **TINY)
    weight = model.encoder.embed_tokens.weight
    assert torch.equal(weight[5], torch.full((16,), 5.0)) and torch.equal(weight[9], torch.full((16,), 9.0))
    assert not torch.equal(model.decoder.embed_tokens.weight[5], weight[5])  # the decoder's own
    with pytest.raises(ConfigError, match="encoder_embed_path=.*the vector of 'w5' has 16 values, the embedding 8"):
        build(task=Task(d), encoder_embed_path=str(path), **dict(TINY, encoder_embed_dim=8, encoder_conv_dim=8))
    with pytest.raises(ConfigError, match="decoder_embed_path=.*missing.txt"):
        build(task=Task(d), decoder_embed_path=str(tmp_path / "missing.txt"), **TINY)


# --- fairseq-train ------------------------------------------------------------------------------------------


def test_fairseq_train_lightconv_with_dynamic_convolutions(bilingual_bin, tmp_path, caplog):  # noqa: F811
    losses = fairseq_train(
        caplog,
        str(bilingual_bin),
        "--task",
        "translation",
        "--arch",
        "lightconv_iwslt_de_en",
        "--encoder-embed-dim",
        "32",
        "--decoder-embed-dim",
        "32",
        "--encoder-ffn-embed-dim",
        "48",
        "--decoder-ffn-embed-dim",
        "48",
        "--encoder-layers",
        "2",
        "--decoder-layers",
        "2",
        "--encoder-kernel-size-list",
        "[3,7]",
        "--decoder-kernel-size-list",
        "[5]",
        "--encoder-glu",
        "1",
        "--decoder-glu",
        "0",
        "--weight-dropout",
        "0.1",
        "--share-all-embeddings",
        "--optimizer",
        "adam",
        "--lr",
        "0.005",
        "--max-tokens",
        "400",
        "--max-update",
        "8",
        "--save-dir",
        str(tmp_path),
    )
    state = load_checkpoint_to_cpu(str(tmp_path / "checkpoint_last.pt"))
    model_cfg = state["cfg"]["model"]
    assert state["num_updates"] == 8 and model_cfg["_name"] == "lightconv"
    assert (model_cfg["encoder_conv_type"], model_cfg["encoder_glu"], model_cfg["decoder_glu"]) == (
        "dynamic",
        True,
        False,
    )
    assert model_cfg["decoder_kernel_size_list"] == [5] and model_cfg["attention_dropout"] == 0.1
    assert state["model"]["decoder.layers.1.conv.weight_linear.weight"].shape == (4 * 5, 32)  # 4 heads x 5 taps
    assert state["model"]["encoder.layers.0.linear1.weight"].shape == (64, 32)  # with a GLU
    assert "decoder.embed_out" not in state["model"]  # tied to the shared embedding
    assert len(losses) >= 8 and losses[-1] < losses[0]


def test_fairseq_train_lightconv_lm(tiny_data_bin, tmp_path, caplog):
    losses = fairseq_train(
        caplog,
        str(tiny_data_bin),
        "--task",
        "language_modeling",
        "--arch",
        "lightconv_lm",
        "--decoder-embed-dim",
        "32",
        "--decoder-ffn-embed-dim",
        "48",
        "--decoder-layers",
        "2",
        "--decoder-attention-heads",
        "4",
        "--decoder-kernel-size-list",
        "[3,5]",
        "--decoder-conv-type",
        "lightweight",
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
    assert state["num_updates"] == 8 and state["cfg"]["model"]["_name"] == "lightconv_lm"
    assert state["cfg"]["model"]["decoder_normalize_before"] is True  # what the architecture sets
    assert state["model"]["decoder.layers.1.conv.weight"].shape == (4, 1, 5)
    assert "decoder.layer_norm.weight" not in state["model"]
    assert len(losses) >= 8 and losses[-1] < losses[0]
