import pytest
import torch
from omegaconf import OmegaConf

import fairseq_lite.models  # noqa: F401  (registers the models)
from fairseq_lite.errors import ConfigError
from fairseq_lite.models.transformer_lm import TransformerLanguageModel, TransformerLanguageModelConfig
from fairseq_lite.modules.positional_embedding import make_positions
from fairseq_lite.registry import ARCH_REGISTRY, MODEL_REGISTRY

PAD = 1
VOCAB = 50


class FakeDictionary:
    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return self.size

    def pad(self) -> int:
        return PAD


class FakeTask:
    def __init__(self, vocab: int = VOCAB):
        self.target_dictionary = FakeDictionary(vocab)
        self.source_dictionary = self.target_dictionary


def make_cfg(**overrides):
    values = dict(
        decoder_embed_dim=32,
        decoder_input_dim=32,  # fairseq's default is 512 whatever the width: a 32-wide model says so
        decoder_output_dim=32,
        decoder_ffn_embed_dim=64,
        decoder_layers=2,
        decoder_attention_heads=4,
        dropout=0.0,
        max_target_positions=64,
        tokens_per_sample=64,
        add_bos_token=False,
    )
    values.update(overrides)
    return OmegaConf.structured(TransformerLanguageModelConfig(**values))


def make_model(seed: int = 0, vocab: int = VOCAB, **overrides) -> TransformerLanguageModel:
    torch.manual_seed(seed)
    return TransformerLanguageModel.build_model(make_cfg(**overrides), FakeTask(vocab)).eval()


def random_tokens(bsz: int, length: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(PAD + 3, VOCAB, (bsz, length), generator=g)


VARIANTS = {
    "post_norm_sinusoidal": {},
    "pre_norm_learned_gelu": dict(decoder_normalize_before=True, decoder_learned_pos=True, activation_fn="gelu"),
    "pre_norm_no_final_norm_tied": dict(
        decoder_normalize_before=True,
        no_decoder_final_norm=True,
        share_decoder_input_output_embed=True,
        layernorm_embedding=True,
    ),
    "projections_gelu_accurate": dict(
        decoder_input_dim=16, decoder_output_dim=24, activation_fn="gelu_accurate", no_scale_embedding=True
    ),
    "no_positions": dict(no_token_positional_embeddings=True, activation_fn="tanh"),
}


def test_forward_shapes():
    model = make_model()
    tokens = random_tokens(3, 7)
    logits, extra = model(tokens, src_lengths=torch.full((3,), 7))
    assert logits.shape == (3, 7, VOCAB)
    assert len(extra["inner_states"]) == 1 + 2
    lprobs = model.get_normalized_probs((logits, extra), log_probs=True)
    assert torch.allclose(lprobs.exp().sum(-1), torch.ones(3, 7), atol=1e-5)
    assert model.max_positions() == 64


def test_build_through_registry_and_defaults():
    cfg = make_cfg(_name="transformer_lm")
    model = MODEL_REGISTRY.build(cfg, FakeTask())
    assert isinstance(model, TransformerLanguageModel)
    assert model.decoder.project_in_dim is None and model.decoder.project_out_dim is None
    assert model.decoder.embed_tokens.weight.shape == (VOCAB, 32)
    assert model.decoder.embed_tokens.weight[PAD].abs().sum() == 0


def test_input_and_output_widths_default_to_512_as_in_fairseq():
    """fairseq's transformer_lm keeps 512-wide embeddings and output layer when only decoder_embed_dim
    is set (then projected): `--arch transformer_lm --decoder-layers 2 --decoder-embed-dim 128
    --decoder-ffn-embed-dim 512` on a 12,000-word vocabulary is 12,815,616 parameters in fairseq 0.12.2."""
    cfg = OmegaConf.structured(
        TransformerLanguageModelConfig(
            decoder_layers=2,
            decoder_embed_dim=128,
            decoder_ffn_embed_dim=512,
            tokens_per_sample=1024,
            max_target_positions=1024,
            add_bos_token=False,
        )
    )
    with torch.device("meta"):
        model = TransformerLanguageModel.build_model(cfg, FakeTask(12000))
    assert model.num_parameters() == 12815616
    assert model.decoder.embed_tokens.weight.shape == (12000, 512)
    assert model.decoder.project_in_dim.weight.shape == (128, 512)
    assert model.decoder.project_out_dim.weight.shape == (512, 128)


def test_heads_must_divide_embed_dim():
    with pytest.raises(ConfigError, match="decoder_embed_dim.*decoder_attention_heads"):
        make_model(decoder_embed_dim=30, decoder_attention_heads=4)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_causal(variant):
    model = make_model(**VARIANTS[variant])
    tokens = random_tokens(2, 9)
    changed = tokens.clone()
    changed[:, 5] = (changed[:, 5] + 1 - 3) % (VOCAB - 3) + 3
    with torch.no_grad():
        a, _ = model(tokens)
        b, _ = model(changed)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:])


@pytest.mark.parametrize("variant", ["post_norm_sinusoidal", "pre_norm_learned_gelu"])
def test_padding_does_not_change_real_positions(variant):
    model = make_model(**VARIANTS[variant])
    short, full = random_tokens(1, 4, seed=2), random_tokens(1, 7, seed=3)
    with torch.no_grad():
        ref_short, _ = model(short)
        ref_full, _ = model(full)
        pad = torch.full((1, 3), PAD)
        right = torch.cat([torch.cat([short, pad], 1), full])
        left = torch.cat([torch.cat([pad, short], 1), full])
        out_right, _ = model(right)
        out_left, _ = model(left)
    for out, real in ((out_right, slice(0, 4)), (out_left, slice(3, 7))):
        assert torch.isfinite(out).all()
        assert torch.allclose(out[0, real], ref_short[0], atol=1e-5)
        assert torch.allclose(out[1], ref_full[0], atol=1e-5)


def test_make_positions_left_padding():
    tokens = torch.tensor([[PAD, PAD, 5, 6], [7, 8, 9, PAD]])
    assert make_positions(tokens, PAD).tolist() == [[1, 1, 2, 3], [2, 3, 4, 1]]


def incremental_logits(model, tokens, state=None):
    state = {} if state is None else state
    steps = []
    with torch.no_grad():
        for t in range(tokens.size(1)):
            out, _ = model(tokens[:, : t + 1], incremental_state=state)
            assert out.shape[1] == 1
            steps.append(out)
    return torch.cat(steps, dim=1)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("left_pad", [False, True])
def test_incremental_matches_full_forward(variant, left_pad):
    model = make_model(**VARIANTS[variant])
    tokens = random_tokens(3, 8)
    if left_pad:
        tokens[1, :3] = PAD
        tokens[2, :1] = PAD
    with torch.no_grad():
        full, _ = model(tokens)
    inc = incremental_logits(model, tokens)
    real = tokens.ne(PAD)
    assert torch.isfinite(inc).all()
    assert torch.allclose(inc[real], full[real], atol=1e-5), (inc - full)[real].abs().max()


def test_reorder_incremental_state_follows_beams():
    model = make_model(decoder_normalize_before=True)
    tokens = random_tokens(2, 6)
    state = {}
    incremental_logits(model, tokens[:, :3], state)
    new_order = torch.tensor([1, 1, 0])
    model.decoder.reorder_incremental_state(state, new_order)
    reordered = tokens[new_order]
    with torch.no_grad():
        rest = [model(reordered[:, : t + 1], incremental_state=state)[0] for t in range(3, 6)]
        full, _ = model(reordered)
    assert torch.allclose(torch.cat(rest, 1), full[:, 3:], atol=1e-5)


def test_reorders_before_a_step_compose():
    """The self-attention cache applies a reorder at the next step, fused with the append: two reorders
    in a row must act as their composition."""
    model = make_model()
    tokens = random_tokens(3, 5)
    state = {}
    incremental_logits(model, tokens[:, :3], state)
    first, second = torch.tensor([2, 2, 0, 1]), torch.tensor([3, 0, 1])
    model.decoder.reorder_incremental_state(state, first)
    model.decoder.reorder_incremental_state(state, second)
    reordered = tokens[first][second]
    with torch.no_grad():
        rest = [model(reordered[:, : t + 1], incremental_state=state)[0] for t in range(3, 5)]
        full, _ = model(reordered)
    torch.testing.assert_close(torch.cat(rest, 1), full[:, 3:], atol=1e-5, rtol=1e-5)


def test_tied_embeddings_share_the_parameter():
    tied = make_model(share_decoder_input_output_embed=True)
    untied = make_model()
    dec = tied.decoder
    assert dec.output_projection.weight is dec.embed_tokens.weight
    assert untied.num_parameters() - tied.num_parameters() == VOCAB * 32
    tokens = random_tokens(2, 5)
    tied.train()
    tied(tokens)[0].sum().backward()
    assert dec.embed_tokens.weight.grad is not None
    with pytest.raises(ConfigError, match="decoder_input_dim.*decoder_output_dim"):
        make_model(share_decoder_input_output_embed=True, decoder_input_dim=16)


def test_state_dict_uses_fairseq_names():
    model = make_model(decoder_layers=1, decoder_learned_pos=True, decoder_normalize_before=True)
    layer = [
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.q_proj",
        "self_attn.out_proj",
        "self_attn_layer_norm",
        "fc1",
        "fc2",
        "final_layer_norm",
    ]
    expected = {
        "decoder.embed_tokens.weight",
        "decoder.embed_positions.weight",
        "decoder.layer_norm.weight",
        "decoder.layer_norm.bias",
        "decoder.output_projection.weight",
    }
    expected |= {f"decoder.layers.0.{name}.{p}" for name in layer for p in ("weight", "bias")}
    assert set(model.state_dict()) == expected


# Parameter counts of fairseq 0.12.2's architectures for a 50,000-word dictionary (computed once
# with fairseq itself). transformer_lm_wiki103 is left out: fairseq's has adaptive input/softmax.
FAIRSEQ_PARAM_COUNTS = {
    "transformer_lm": 70114304,
    "transformer_lm_big": 253556736,
    "transformer_lm_gpt": 161856000,
    "transformer_lm_gpt2_small": 404711424,
    "transformer_lm_gpt2_medium": 836390400,
}


def arch_cfg(arch, **values):
    """The config `--arch ARCH` builds: the architecture's values over the dataclass's defaults."""
    values = {**ARCH_REGISTRY[arch].values(values), "tokens_per_sample": 1024, "max_target_positions": 1024}
    return OmegaConf.structured(TransformerLanguageModelConfig(add_bos_token=False, **values))


@pytest.mark.parametrize("arch", sorted(FAIRSEQ_PARAM_COUNTS))
def test_architecture_parameter_counts_match_fairseq(arch):
    with torch.device("meta"):  # no memory, no init cost
        model = TransformerLanguageModel.build_model(arch_cfg(arch), FakeTask(50000))
    assert model.num_parameters() == FAIRSEQ_PARAM_COUNTS[arch]


# fairseq 0.12.2's counts for the two adaptive architectures on a 267,744-word dictionary (WikiText-103's),
# computed once with fairseq itself. transformer_lm_wiki103: adaptive input and a tied adaptive softmax,
# cutoffs 20000,60000; transformer_lm_gbw sets no cutoffs of its own (its README passes them).
@pytest.mark.parametrize(
    "arch, count", [("transformer_lm_wiki103", 246933504), ("transformer_lm_gbw", 337188864)], ids=str
)
def test_adaptive_architectures_parameter_counts_match_fairseq(arch, count):
    with torch.device("meta"):
        model = TransformerLanguageModel.build_model(arch_cfg(arch), FakeTask(267744))
    assert model.num_parameters() == count


def test_architecture_values():
    fields = set(TransformerLanguageModelConfig.field_names())
    for name in [
        "transformer_lm",
        "transformer_lm_big",
        "transformer_lm_wiki103",
        "transformer_lm_gpt",
        "transformer_lm_gpt2_small",
        "transformer_lm_gpt2_medium",
    ]:
        values = ARCH_REGISTRY[name].values()
        assert ARCH_REGISTRY[name].model == "transformer_lm"
        assert set(values) <= fields, set(values) - fields
        if name != "transformer_lm":  # a named architecture is as wide as its model throughout
            assert values["decoder_input_dim"] == values["decoder_output_dim"] == values["decoder_embed_dim"]
    # fairseq's plain `transformer_lm` keeps the config defaults (post-norm, 512-wide input and output).
    assert ARCH_REGISTRY["transformer_lm"].values() == {}
    wiki = ARCH_REGISTRY["transformer_lm_wiki103"].values()
    assert (
        wiki["decoder_layers"],
        wiki["decoder_embed_dim"],
        wiki["decoder_ffn_embed_dim"],
        wiki["decoder_attention_heads"],
    ) == (16, 1024, 4096, 8)
    assert (wiki["dropout"], wiki["attention_dropout"], wiki["activation_dropout"]) == (0.3, 0.1, 0.1)
    assert wiki["decoder_normalize_before"] is True and wiki["no_decoder_final_norm"] is True
    assert wiki["adaptive_input"] and wiki["tie_adaptive_weights"] and wiki["tie_adaptive_proj"]
    assert wiki["adaptive_input_cutoff"] == wiki["adaptive_softmax_cutoff"] == "20000,60000"
    assert wiki["adaptive_softmax_dropout"] == 0.2
    gpt2 = ARCH_REGISTRY["transformer_lm_gpt2_medium"].values()
    assert (
        gpt2["decoder_embed_dim"],
        gpt2["decoder_layers"],
        gpt2["decoder_attention_heads"],
        gpt2["activation_fn"],
    ) == (1280, 36, 20, "gelu")
    # Values the user set win over the architecture's.
    user = ARCH_REGISTRY["transformer_lm_gpt"].values({"decoder_layers": 3, "dropout": 0.0})
    assert user["decoder_layers"] == 3 and user["dropout"] == 0.0 and user["decoder_embed_dim"] == 768


def test_bf16_autocast_forward_on_cpu():
    model = make_model(decoder_normalize_before=True)
    tokens = random_tokens(2, 6)
    tokens[0, :2] = PAD
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = model(tokens)
    assert logits.dtype == torch.bfloat16
    assert torch.isfinite(logits.float()).all()
    with torch.no_grad():
        ref, _ = model(tokens)
    real = tokens.ne(PAD)
    assert (logits.float() - ref)[real].abs().max() < 0.1


def test_checkpoint_activations_gives_same_gradients():
    grads = []
    for ckpt in (False, True):
        model = make_model(checkpoint_activations=ckpt).train()
        model(random_tokens(2, 6))[0].logsumexp(-1).sum().backward()
        grads.append(model.decoder.layers[0].fc1.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_dropout_only_in_training():
    model = make_model(dropout=0.3, attention_dropout=0.2, activation_dropout=0.1)
    tokens = random_tokens(2, 6)
    with torch.no_grad():
        assert torch.equal(model(tokens)[0], model(tokens)[0])
        model.train()
        assert not torch.equal(model(tokens)[0], model(tokens)[0])


def test_tiny_model_overfits_a_batch():
    from fairseq_lite.criterions.cross_entropy import CrossEntropyCriterion
    from fairseq_lite.optim.adam import FairseqAdam, FairseqAdamConfig

    model = make_model(decoder_normalize_before=True).train()
    tokens = random_tokens(4, 12, seed=5)
    sample = {"net_input": {"src_tokens": tokens[:, :-1]}, "target": tokens[:, 1:], "ntokens": 4 * 11}
    criterion = CrossEntropyCriterion(FakeTask(), sentence_avg=False)
    optimizer = FairseqAdam(OmegaConf.structured(FairseqAdamConfig(lr=[3e-3])), model.parameters())
    first = None
    for _ in range(50):
        optimizer.zero_grad()
        loss, sample_size, log = criterion(model, sample)
        (loss / sample_size).backward()
        optimizer.step()
        first = first if first is not None else log["loss"] / sample_size
    final = log["loss"] / sample_size
    assert first > 3.0  # ~ln(50) at init
    assert final < 0.3, final


def test_decoder_with_encoder_attention_incremental_and_reorder():
    # The same decoder serves translation: encoder attention, static encoder keys cached once.
    from fairseq_lite.models.transformer_decoder import Embedding, TransformerDecoder
    from fairseq_lite.modules.transformer_layer import TransformerEncoderLayer

    torch.manual_seed(0)
    cfg = make_cfg(decoder_normalize_before=True)
    decoder = TransformerDecoder(cfg, FakeDictionary(VOCAB), Embedding(VOCAB, 32, PAD), no_encoder_attn=False).eval()
    encoder_layer = TransformerEncoderLayer(32, 64, 4, dropout=0.0).eval()
    src_padding = torch.zeros(2, 5, dtype=torch.bool)
    src_padding[1, :2] = True
    with torch.no_grad():
        enc = encoder_layer(torch.randn(2, 5, 32), encoder_padding_mask=src_padding)
    encoder_out = {"encoder_out": [enc.transpose(0, 1)], "encoder_padding_mask": [src_padding]}
    tokens = random_tokens(2, 6)
    with torch.no_grad():
        full, _ = decoder(tokens, encoder_out=encoder_out)
        state = {}
        steps = [decoder(tokens[:, : t + 1], encoder_out=encoder_out, incremental_state=state)[0] for t in range(3)]
        assert torch.allclose(torch.cat(steps, 1), full[:, :3], atol=1e-5)
        order = torch.tensor([1, 0])
        decoder.reorder_incremental_state(state, order)
        reordered_out = {"encoder_out": [enc[order].transpose(0, 1)], "encoder_padding_mask": [src_padding[order]]}
        rest = [
            decoder(tokens[order][:, : t + 1], encoder_out=reordered_out, incremental_state=state)[0]
            for t in range(3, 6)
        ]
        full_reordered, _ = decoder(tokens[order], encoder_out=reordered_out)
    assert torch.allclose(torch.cat(rest, 1), full_reordered[:, 3:], atol=1e-5)


def test_encoder_layer_ignores_padding():
    from fairseq_lite.modules.transformer_layer import TransformerEncoderLayer

    torch.manual_seed(0)
    layer = TransformerEncoderLayer(32, 64, 4, dropout=0.0, normalize_before=True).eval()
    x = torch.randn(1, 4, 32)
    padded = torch.cat([torch.randn(1, 2, 32), x], dim=1)
    mask = torch.tensor([[True, True, False, False, False, False]])
    with torch.no_grad():
        assert torch.allclose(layer(padded, mask)[0, 2:], layer(x)[0], atol=1e-5)
