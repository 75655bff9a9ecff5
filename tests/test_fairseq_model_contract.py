"""What fairseq subclasses of the Transformer rely on (issue 13, item 4): fairseq's encoder_out dict of
time-first lists, the decoder's extra["attn"] (alignment_layer/alignment_heads, only when asked) and
"inner_states", the *_scriptable methods a subclass overrides, and beam search giving a decoder subclass
one encoder row per hypothesis unless it opts in to shared rows."""

import argparse

import pytest
import torch
from test_transformer import LONG, SHORT, Task, left_pad, make_dict, tiny_model

from fairseq_lite.generation import SequenceGenerator
from fairseq_lite.models.fairseq_model import accepts_grouped_encoder_out, normalizes_with_log_softmax
from fairseq_lite.models.transformer import TransformerModel
from fairseq_lite.models.transformer_decoder import TransformerDecoder
from fairseq_lite.models.transformer_encoder import TransformerEncoder

SRC = left_pad([LONG, SHORT])
LENGTHS = torch.LongTensor([len(LONG), len(SHORT)])
PREV = torch.LongTensor([[2, 4, 9, 13, 25], [2, 7, 7, 20, 3]])


def test_encoder_out_is_fairseqs_dict_of_time_first_lists():
    model = tiny_model()
    out = model.encoder(SRC, LENGTHS, return_all_hiddens=True)
    assert set(out) == {
        "encoder_out",
        "encoder_padding_mask",
        "encoder_embedding",
        "encoder_states",
        "fc_results",
        "src_tokens",
        "src_lengths",
    }
    (x,) = out["encoder_out"]
    assert x.shape == (8, 2, 16)  # S x B x C
    assert out["encoder_padding_mask"][0].tolist()[1] == [True] * 3 + [False] * 5
    assert out["encoder_embedding"][0].shape == (2, 8, 16)  # B x S x C, the scaled token embedding
    torch.testing.assert_close(out["encoder_embedding"][0], model.encoder.embed_tokens(SRC) * 4.0)
    assert out["src_lengths"][0].dtype == torch.int32 and out["src_lengths"][0].tolist() == [[8], [5]]
    assert out["src_tokens"] == [] and out["fc_results"] == []
    # The embedding output and each layer's (post-norm: the last one is the output itself), time-first.
    assert len(out["encoder_states"]) == 3 and all(s.shape == (8, 2, 16) for s in out["encoder_states"])
    torch.testing.assert_close(out["encoder_states"][-1], x)
    assert model.encoder(SRC, LENGTHS)["encoder_states"] == []

    order = torch.LongTensor([1, 1, 0])
    moved = model.encoder.reorder_encoder_out(out, order)
    assert torch.equal(moved["encoder_out"][0], x[:, order])
    assert torch.equal(moved["encoder_embedding"][0], out["encoder_embedding"][0][order])
    assert all(torch.equal(a, b[:, order]) for a, b in zip(moved["encoder_states"], out["encoder_states"]))
    assert torch.equal(moved["src_lengths"][0], out["src_lengths"][0][order])


def test_decoder_attention_only_when_asked_and_as_fairseq_shapes_it():
    model = tiny_model()
    with torch.no_grad():
        enc = model.encoder(SRC, LENGTHS)
        logits, extra = model.decoder(PREV, encoder_out=enc)
        assert extra["attn"] == [None]  # SDPA's fused path: no probabilities formed
        assert len(extra["inner_states"]) == 3 and all(s.shape == (5, 2, 16) for s in extra["inner_states"])

        asked, extra = model.decoder(PREV, encoder_out=enc, alignment_layer=-1)
        torch.testing.assert_close(asked, logits, atol=1e-5, rtol=1e-5)  # same outputs on the explicit path
        (attn,) = extra["attn"]
        assert attn.shape == (2, 5, 8)  # B x T x S, averaged over heads
        torch.testing.assert_close(attn.sum(-1), torch.ones(2, 5))
        assert attn[1, :, :3].abs().max() == 0  # the source's left padding gets nothing

        first = model.decoder(PREV, encoder_out=enc, alignment_layer=0)[1]["attn"][0]
        one_head = model.decoder(PREV, encoder_out=enc, alignment_layer=-1, alignment_heads=1)[1]["attn"][0]
        assert not torch.allclose(first, attn) and not torch.allclose(one_head, attn)

        # The same rows, one step at a time: incremental decoding computes the same attention.
        model.decoder.need_attn = True
        state, steps = {}, []
        for t in range(1, PREV.size(1) + 1):
            steps.append(model.decoder(PREV[:, :t], encoder_out=enc, incremental_state=state)[1]["attn"][0])
        torch.testing.assert_close(torch.cat(steps, dim=1), attn, atol=1e-5, rtol=1e-5)


def test_full_context_alignment_lifts_the_causal_mask():
    model = tiny_model(decoder_layers=1)
    with torch.no_grad():
        enc = model.encoder(SRC, LENGTHS)
        causal = model.decoder(PREV, encoder_out=enc)[0]
        full = model.decoder(PREV, encoder_out=enc, full_context_alignment=True)[0]
        # The last position of one layer sees everything either way; earlier ones now see the future too.
        torch.testing.assert_close(full[:, -1], causal[:, -1], atol=1e-5, rtol=1e-5)
        assert not torch.allclose(full[:, 0], causal[:, 0], atol=1e-3)


def test_scriptable_methods_are_what_a_subclass_overrides():
    class HalvedEncoder(TransformerEncoder):
        def forward_scriptable(self, src_tokens, src_lengths=None, return_all_hiddens=False, token_embeddings=None):
            out = super().forward_scriptable(src_tokens, src_lengths, return_all_hiddens, token_embeddings)
            out["encoder_out"] = [out["encoder_out"][0] * 0.5]
            return out

    model = tiny_model()
    plain = model.encoder(SRC, LENGTHS)["encoder_out"][0]
    model.encoder.__class__ = HalvedEncoder
    torch.testing.assert_close(model.encoder(SRC, LENGTHS)["encoder_out"][0], plain * 0.5)

    class Tempered(TransformerModel):
        def get_normalized_probs_scriptable(self, net_output, log_probs, sample=None):
            return super().get_normalized_probs_scriptable((net_output[0] / 2, net_output[1]), log_probs, sample)

    model = tiny_model()
    assert normalizes_with_log_softmax(model)
    net_output = model(SRC, LENGTHS, PREV)
    plain = model.get_normalized_probs(net_output, log_probs=True)
    model.__class__ = Tempered
    assert not normalizes_with_log_softmax(model)  # the fused loss would skip the override
    tempered = model.get_normalized_probs(net_output, log_probs=True)
    torch.testing.assert_close(tempered, torch.log_softmax(net_output[0] / 2, dim=-1))
    assert not torch.allclose(tempered, plain)


class PerHypothesisDecoder(TransformerDecoder):
    """Reads encoder_out itself, as a fairseq decoder may: it needs one encoder row per hypothesis."""

    def forward(self, prev_output_tokens, encoder_out=None, incremental_state=None, **kwargs):
        rows = encoder_out["encoder_out"][0].size(1)
        assert rows == prev_output_tokens.size(0), f"{rows} encoder rows for {prev_output_tokens.size(0)}"
        return super().forward(prev_output_tokens, encoder_out, incremental_state, **kwargs)


def test_a_decoder_subclass_gets_one_encoder_row_per_hypothesis_unless_it_opts_in():
    class OptedIn(PerHypothesisDecoder):
        supports_grouped_encoder_out = True

    model = tiny_model(seed=3)
    assert accepts_grouped_encoder_out(model.decoder)
    sample = {"net_input": {"src_tokens": SRC, "src_lengths": LENGTHS}}
    shared = SequenceGenerator(model, model.decoder.dictionary, beam_size=3, max_len_b=6).generate(sample)

    model.decoder.__class__ = PerHypothesisDecoder
    assert not accepts_grouped_encoder_out(model.decoder)
    own = SequenceGenerator(model, model.decoder.dictionary, beam_size=3, max_len_b=6).generate(sample)
    for a, b in zip(shared, own):
        assert [h["tokens"].tolist() for h in a] == [h["tokens"].tolist() for h in b]
        assert [float(h["score"]) for h in a] == pytest.approx([float(h["score"]) for h in b], abs=1e-5)

    model.decoder.__class__ = OptedIn
    assert accepts_grouped_encoder_out(model.decoder)
    with pytest.raises(AssertionError, match="2 encoder rows for 6"):
        SequenceGenerator(model, model.decoder.dictionary, beam_size=3, max_len_b=6).generate(sample)


def test_print_alignment_comes_from_the_same_attention():
    model = tiny_model(seed=3)
    d = model.decoder.dictionary
    sample = {"net_input": {"src_tokens": SRC, "src_lengths": LENGTHS}}
    hypos = SequenceGenerator(model, d, beam_size=2, max_len_b=5, print_alignment="hard").generate(sample)
    for row, sentence in enumerate(hypos):
        for h in sentence:
            tokens = h["tokens"]
            prev = torch.cat([torch.LongTensor([d.eos()]), tokens[:-1]]).unsqueeze(0)
            with torch.no_grad():
                enc = model.encoder(SRC[row : row + 1], LENGTHS[row : row + 1])
                attn = model.decoder(prev, encoder_out=enc, alignment_layer=-1)[1]["attn"][0][0]
            torch.testing.assert_close(h["attention"], attn.t(), atol=1e-5, rtol=1e-5)
            # (source word, target word): the real source token each real target token attends to most
            real = SRC[row].ne(d.pad()) & SRC[row].ne(d.eos())
            best = attn[:, real].argmax(dim=1)
            expected = [(int(s), t) for t, s in enumerate(best.tolist()) if int(tokens[t]) != d.eos()]
            assert h["alignment"] == expected
    with pytest.raises(ValueError, match="needs a model with an encoder"):
        lm = tiny_model()
        lm.encoder = None
        SequenceGenerator(lm, d, print_alignment="hard")


def test_legacy_namespace_builds_a_complete_transformer():
    """A subclass in the add_args style hands TransformerModel.build_model its `args`: what it leaves
    unset gets base_architecture's values and the config's defaults, in place, as in fairseq."""
    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    TransformerModel.add_args(parser)
    flags = {a.dest for a in parser._actions}
    assert {"encoder_embed_dim", "decoder_layers", "share_all_embeddings", "activation_fn"} <= flags
    args = parser.parse_args(["--encoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32", "--encoder-layers", "1"])
    assert vars(args) == {"encoder_embed_dim": 16, "encoder_ffn_embed_dim": 32, "encoder_layers": 1}
    args.encoder_attention_heads = args.decoder_attention_heads = 2
    args.decoder_layers = 1
    model = TransformerModel.build_model(args, Task(make_dict(40)))
    assert model.args is args and args.decoder_embed_dim == 16 and args.dropout == 0.1
    assert args.max_source_positions is None and model.encoder.max_source_positions == 1024
    assert len(model.encoder.layers) == 1 and model.decoder.embed_dim == 16


def test_sequence_scorer_scores_the_reference_and_an_ensemble_of_copies_agrees():
    """--score-reference: the reference's per-token log-probabilities and their mean; two copies of one
    model (probabilities averaged) give the same."""
    from fairseq_lite.generation import SequenceScorer

    model = tiny_model(seed=3)
    d = model.decoder.dictionary
    target = torch.cat([PREV[:, 1:], torch.full((2, 1), d.eos())], dim=1)
    target[0, -2:] = d.pad()  # a shorter reference
    prev = PREV.clone()
    prev[0, -2:] = d.pad()
    sample = {"net_input": {"src_tokens": SRC, "src_lengths": LENGTHS, "prev_output_tokens": prev}, "target": target}
    with torch.no_grad():
        lprobs = torch.log_softmax(model(SRC, LENGTHS, prev)[0], dim=-1)
    one = SequenceScorer([model], d).generate(sample)
    two = SequenceScorer([model, model], d).generate(sample)
    for row, ((a,), (b,)) in enumerate(zip(one, two)):
        keep = target[row].ne(d.pad())
        expected = lprobs[row][keep].gather(-1, target[row][keep].unsqueeze(-1)).squeeze(-1)
        assert a["tokens"].tolist() == target[row][keep].tolist()
        torch.testing.assert_close(a["positional_scores"], expected, atol=1e-5, rtol=1e-5)
        assert float(a["score"]) == pytest.approx(float(expected.mean()), abs=1e-5)
        torch.testing.assert_close(b["positional_scores"], a["positional_scores"], atol=1e-5, rtol=1e-5)
