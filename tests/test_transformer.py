"""The encoder-decoder Transformer: padding invariance, incremental decoding, embedding sharing,
architectures (parameter counts equal fairseq 0.12.2's) and config errors."""

import pytest
import torch
from omegaconf import OmegaConf

from fairseq_lite.data.dictionary import Dictionary
from fairseq_lite.errors import ConfigError
from fairseq_lite.models.transformer import TransformerConfig, TransformerModel
from fairseq_lite.registry import get_architecture


def make_dict(size: int) -> Dictionary:
    d = Dictionary()
    while len(d) < size:
        d.add_symbol(f"w{len(d)}")
    return d


class Task:
    def __init__(self, src_dict, tgt_dict=None):
        self.source_dictionary = src_dict
        self.target_dictionary = tgt_dict if tgt_dict is not None else src_dict


def model_cfg(arch: str = "transformer", **values):
    values = get_architecture(arch).values(values)
    values.setdefault("max_source_positions", 1024)
    values.setdefault("max_target_positions", 1024)
    return OmegaConf.merge(OmegaConf.structured(TransformerConfig), values)


TINY = dict(
    encoder_embed_dim=16,
    decoder_embed_dim=16,
    encoder_ffn_embed_dim=32,
    decoder_ffn_embed_dim=32,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    dropout=0.0,
)


def tiny_model(task=None, seed=0, **values):
    torch.manual_seed(seed)
    task = task or Task(make_dict(40))
    return TransformerModel.build_model(model_cfg(**{**TINY, **values}), task).eval()


def left_pad(rows, pad=1):
    width = max(len(r) for r in rows)
    return torch.LongTensor([[pad] * (width - len(r)) + r for r in rows])


SHORT = [5, 9, 14, 7, 2]
LONG = [6, 11, 8, 21, 30, 12, 17, 2]
VARIANTS = [
    {},
    dict(encoder_normalize_before=True, decoder_normalize_before=True, layernorm_embedding=True),
    dict(encoder_learned_pos=True, decoder_learned_pos=True, share_all_embeddings=True, activation_fn="gelu"),
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_encoder_output_does_not_depend_on_padding(variant):
    model = tiny_model(**variant)
    alone = model.encoder(torch.LongTensor([SHORT]), torch.LongTensor([len(SHORT)]))
    batch = model.encoder(left_pad([LONG, SHORT]), torch.LongTensor([len(LONG), len(SHORT)]))
    # fairseq's layout: lists of one tensor, the output time-first.
    assert batch["encoder_out"][0].shape == (len(LONG), 2, 16)
    (mask,) = batch["encoder_padding_mask"]
    assert mask.dtype == torch.bool and mask[1].tolist() == [True] * 3 + [False] * 5 and not mask[0].any()
    torch.testing.assert_close(batch["encoder_out"][0][3:, 1], alone["encoder_out"][0][:, 0], atol=1e-5, rtol=1e-5)

    prev = torch.LongTensor([[2, 4, 9, 13], [2, 7, 7, 20]])
    full, _ = model(left_pad([LONG, SHORT]), torch.LongTensor([8, 5]), prev)
    single, _ = model(torch.LongTensor([SHORT]), torch.LongTensor([5]), prev[1:])
    torch.testing.assert_close(full[1], single[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("padded_source", [False, True])
def test_incremental_decoding_equals_full_forward(variant, padded_source):
    model = tiny_model(**variant)
    if padded_source:
        src, lengths = left_pad([LONG, SHORT]), torch.LongTensor([len(LONG), len(SHORT)])
    else:
        src, lengths = torch.LongTensor([LONG, LONG[::-1][1:] + [2]]), torch.LongTensor([8, 8])
    prev = torch.LongTensor([[2, 4, 9, 13, 25, 6], [2, 7, 7, 20, 3, 31]])
    with torch.no_grad():
        full, _ = model(src, lengths, prev)
        encoder_out = model.encoder(src, src_lengths=lengths)
        state = {}
        steps = [
            model.decoder(prev[:, :t], encoder_out=encoder_out, incremental_state=state)[0]
            for t in range(1, prev.size(1) + 1)
        ]
    assert all(step.shape == (2, 1, 40) for step in steps)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_reorder_encoder_out_and_incremental_state_follow_beams():
    model = tiny_model()
    src, lengths = left_pad([LONG, SHORT]), torch.LongTensor([8, 5])
    prev = torch.LongTensor([[2, 4, 9], [2, 7, 7]])
    new_order = torch.LongTensor([1, 1, 0])
    with torch.no_grad():
        encoder_out = model.encoder(src, lengths)
        state = {}
        for t in (1, 2):
            model.decoder(prev[:, :t], encoder_out=encoder_out, incremental_state=state)
        model.decoder.reorder_incremental_state(state, new_order)
        reordered = model.encoder.reorder_encoder_out(encoder_out, new_order)
        assert torch.equal(reordered["encoder_padding_mask"][0], encoder_out["encoder_padding_mask"][0][new_order])
        assert torch.equal(reordered["encoder_out"][0], encoder_out["encoder_out"][0][:, new_order])
        step, _ = model.decoder(prev[new_order], encoder_out=reordered, incremental_state=state)
        full, _ = model(src[new_order], lengths[new_order], prev[new_order])
    torch.testing.assert_close(step[:, 0], full[:, -1], atol=1e-5, rtol=1e-5)


def test_encoder_output_shared_by_groups_of_rows_equals_one_copy_per_row():
    """Beam search keeps one encoder output per sentence; rows i*g..i*g+g-1 of the decoder read row i."""
    model = tiny_model()
    src, lengths = left_pad([LONG, SHORT]), torch.LongTensor([8, 5])
    g = 3
    prev = torch.randint(4, 40, (2 * g, 4))
    prev[:, 0] = 2
    with torch.no_grad():
        encoder_out = model.encoder(src, lengths)
        repeated = model.encoder.reorder_encoder_out(encoder_out, torch.arange(2).repeat_interleave(g))
        full, _ = model.decoder(prev, encoder_out=repeated)
        torch.testing.assert_close(model.decoder(prev, encoder_out=encoder_out)[0], full, atol=1e-5, rtol=1e-5)
        state = {}
        steps = [model.decoder(prev[:, : t + 1], encoder_out=encoder_out, incremental_state=state)[0] for t in range(2)]
        torch.testing.assert_close(torch.cat(steps, 1), full[:, :2], atol=1e-5, rtol=1e-5)
        caches = [c for c in state.values() if "group" in c]
        assert caches and all(c["prev_key"].size(0) == 2 and c["group"] == g for c in caches)

        # Hypotheses swapping places within their sentence leave the shared cache as it is ...
        keys = [c["prev_key"] for c in caches]
        within = torch.LongTensor([2, 0, 1, 3, 3, 5])
        model.decoder.reorder_incremental_state(state, within)
        assert all(c["prev_key"] is k for c, k in zip(caches, keys))
        step, _ = model.decoder(prev[within, :3], encoder_out=encoder_out, incremental_state=state)
        full, _ = model.decoder(prev[within, :3], encoder_out=repeated)
        torch.testing.assert_close(step[:, 0], full[:, -1], atol=1e-5, rtol=1e-5)

        # ... and a sentence leaving takes its encoder rows along.
        second = torch.LongTensor([3, 4, 5])
        model.decoder.reorder_incremental_state(state, second)
        assert all(c["prev_key"].size(0) == 1 for c in caches)
        kept = model.encoder.reorder_encoder_out(encoder_out, torch.LongTensor([1]))
        tokens = prev[within][second, :4]
        step, _ = model.decoder(tokens, encoder_out=kept, incremental_state=state)
        full, _ = model.decoder(tokens, encoder_out=model.encoder.reorder_encoder_out(kept, torch.zeros(3).long()))
        torch.testing.assert_close(step[:, 0], full[:, -1], atol=1e-5, rtol=1e-5)

        with pytest.raises(ValueError, match="cannot reorder 2 rows that share encoder rows in groups of 3"):
            model.decoder.reorder_incremental_state(state, torch.LongTensor([0, 1]))
        with pytest.raises(ValueError, match="5 query rows cannot share 2 encoder rows"):
            model.decoder(prev[:5, :2], encoder_out=encoder_out)


def test_share_all_embeddings_ties_encoder_decoder_and_output():
    model = tiny_model(share_all_embeddings=True)
    assert model.encoder.embed_tokens.weight is model.decoder.embed_tokens.weight
    assert model.decoder.output_projection.weight is model.decoder.embed_tokens.weight
    assert model.cfg.share_decoder_input_output_embed is False  # the user's config is left as given
    separate = tiny_model()
    assert model.num_parameters() == separate.num_parameters() - 2 * 40 * 16


def test_model_interface_for_generation():
    model = tiny_model(max_source_positions=50, max_target_positions=60)
    assert model.max_positions() == (50, 60)
    assert model.max_decoder_positions() == 60
    logits, extra = model(left_pad([LONG, SHORT]), torch.LongTensor([8, 5]), torch.LongTensor([[2, 4], [2, 5]]))
    lprobs = model.get_normalized_probs((logits, extra), log_probs=True)
    torch.testing.assert_close(lprobs.exp().sum(-1), torch.ones(2, 2))


def test_checkpoint_activations_gives_the_same_gradients():
    src, lengths, prev = left_pad([LONG, SHORT]), torch.LongTensor([8, 5]), torch.LongTensor([[2, 4], [2, 5]])
    grads = []
    for ckpt in (False, True):
        model = tiny_model(checkpoint_activations=ckpt).train()
        model(src, lengths, prev)[0].sum().backward()
        grads.append(model.encoder.layers[0].fc1.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


# Parameter counts of fairseq 0.12.2's models for a 10,000-symbol joined dictionary, minus the
# zero-initialized copies of each encoder layer's weights that fairseq 0.12.2 keeps for its
# BetterTransformer fast path (in_proj_weight, fc1_weight, ...: never trained, not model weights).
FAIRSEQ_PARAMS = [
    ("transformer", {}, 59498496),
    ("transformer", {"share_all_embeddings": True}, 49258496),
    ("transformer_iwslt_de_en", {}, 46903296),
    ("transformer_iwslt_de_en", {"share_all_embeddings": True}, 36663296),
    ("transformer_wmt_en_de", {}, 59498496),
    ("transformer_vaswani_wmt_en_de_big", {}, 207077376),
    ("transformer_vaswani_wmt_en_de_big", {"share_all_embeddings": True}, 186597376),
    ("transformer_wmt_en_de_big_t2t", {}, 207081472),
    (
        "transformer_iwslt_de_en",
        dict(
            share_decoder_input_output_embed=True,
            encoder_learned_pos=True,
            decoder_learned_pos=True,
            layernorm_embedding=True,
            encoder_normalize_before=True,
            decoder_normalize_before=True,
            max_source_positions=100,
            max_target_positions=200,
        ),
        41943040,
    ),
]


@pytest.mark.parametrize("arch,values,expected", FAIRSEQ_PARAMS)
def test_architecture_parameter_counts_match_fairseq(arch, values, expected):
    with torch.device("meta"):  # shapes only: no memory, no init time for the big models
        model = TransformerModel.build_model(model_cfg(arch, **values), Task(make_dict(10000)))
    assert model.num_parameters() == expected


def test_share_all_embeddings_errors():
    with pytest.raises(ConfigError, match="joined dictionary"):
        tiny_model(task=Task(make_dict(40), make_dict(48)), share_all_embeddings=True)
    with pytest.raises(ConfigError, match="encoder_embed_dim"):
        tiny_model(share_all_embeddings=True, decoder_embed_dim=32)
    with pytest.raises(ConfigError, match="divisible"):
        tiny_model(encoder_attention_heads=3)
