"""Beam search / sampling: KV cache == full recompute, greedy, padding independence, length penalty,
n-gram blocking, min/max length, prefixes; BLEU scorers against sacrebleu."""

import math
import re
import types

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fairseq_lite.data.dictionary import Dictionary
from fairseq_lite.generation import BeamSearch, Sampling, SequenceGenerator, build_generator, inference_step
from fairseq_lite.models.transformer_decoder import Embedding, TransformerDecoder

DIM = 16


def make_dict(n: int = 20) -> Dictionary:
    d = Dictionary()
    for i in range(n):
        d.add_symbol(f"w{i}")
    return d


def decoder_cfg(layers: int = 2):
    return types.SimpleNamespace(
        decoder_embed_dim=DIM,
        decoder_output_dim=DIM,
        max_target_positions=64,
        dropout=0.0,
        attention_dropout=0.0,
        share_decoder_input_output_embed=False,
        no_scale_embedding=False,
        no_token_positional_embeddings=False,
        decoder_learned_pos=False,
        layernorm_embedding=False,
        decoder_ffn_embed_dim=32,
        decoder_attention_heads=2,
        activation_fn="relu",
        decoder_normalize_before=False,
        decoder_layers=layers,
        no_decoder_final_norm=False,
        encoder_embed_dim=DIM,
    )


class TinyEncoder(nn.Module):
    def __init__(self, d: Dictionary):
        super().__init__()
        self.pad = d.pad()
        self.embed = Embedding(len(d), DIM, d.pad())
        self.proj = nn.Linear(DIM, DIM)

    def forward(self, src_tokens, src_lengths=None):
        # fairseq's layout: lists of one tensor, the output time-first
        return {
            "encoder_out": [torch.tanh(self.proj(self.embed(src_tokens))).transpose(0, 1)],
            "encoder_padding_mask": [src_tokens.eq(self.pad)],
        }

    def reorder_encoder_out(self, encoder_out, new_order):
        return {
            "encoder_out": [encoder_out["encoder_out"][0].index_select(1, new_order)],
            "encoder_padding_mask": [encoder_out["encoder_padding_mask"][0].index_select(0, new_order)],
        }


class TinyModel(nn.Module):
    """A random Transformer decoder, with an encoder (translation-like) or without (an LM).
    The output layer is scaled up so that distributions are peaked, like a trained model's."""

    def __init__(self, d: Dictionary, encoder: bool, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.decoder = TransformerDecoder(
            decoder_cfg(), d, Embedding(len(d), DIM, d.pad()), no_encoder_attn=not encoder
        )
        with torch.no_grad():
            self.decoder.output_projection.weight.mul_(4)
        self.encoder = TinyEncoder(d) if encoder else None
        self.eval()

    def get_normalized_probs(self, net_output, log_probs, sample=None):
        logits = net_output[0].float()
        return F.log_softmax(logits, -1) if log_probs else F.softmax(logits, -1)

    def max_decoder_positions(self):
        return 64


class BigramDecoder(nn.Module):
    """Next token depends only on the last one, through a fixed table: it loves to repeat itself."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table

    def forward(self, tokens, encoder_out=None, incremental_state=None):
        return self.table[tokens[:, -1:]], {}

    def reorder_incremental_state(self, state, new_order):
        pass


class BigramLM(nn.Module):
    def __init__(self, table):
        super().__init__()
        self.decoder = BigramDecoder(table)

    def get_normalized_probs(self, net_output, log_probs, sample=None):
        return F.log_softmax(net_output[0].float(), -1)


D = make_dict()
PAD, EOS = D.pad(), D.eos()
SRC = torch.tensor([[PAD, PAD, 5, 6, 7, EOS], [4, 9, 10, 11, 12, EOS], [PAD, PAD, PAD, 8, 13, EOS]])
SRC_LENGTHS = torch.tensor([4, 6, 3])


def sample_of(src=SRC, lengths=SRC_LENGTHS):
    return {"id": torch.arange(src.size(0)), "net_input": {"src_tokens": src, "src_lengths": lengths}}


def assert_same_hypos(a, b, atol=1e-5):
    assert len(a) == len(b)
    for hypos_a, hypos_b in zip(a, b):
        assert [h["tokens"].tolist() for h in hypos_a] == [h["tokens"].tolist() for h in hypos_b]
        for x, y in zip(hypos_a, hypos_b):
            assert float(x["score"]) == pytest.approx(float(y["score"]), abs=atol)
            torch.testing.assert_close(x["positional_scores"], y["positional_scores"], atol=atol, rtol=0)


@pytest.mark.parametrize("encoder", [True, False])
@pytest.mark.parametrize(
    "options",
    [
        dict(beam_size=5),
        dict(beam_size=4, len_penalty=2.0, min_len=3),
        dict(beam_size=3, unk_penalty=-3.0, max_len_b=7),
    ],
)
def test_kv_cache_gives_the_same_hypotheses_as_full_recompute(encoder, options):
    model = TinyModel(D, encoder)
    prefix = None if encoder else torch.tensor([[5, 6], [7, PAD], [9, 9]])
    cached = SequenceGenerator(model, D, **options)
    full = SequenceGenerator(model, D, use_incremental=False, **options)
    assert cached.use_incremental and not full.use_incremental
    out = cached.generate(sample_of(), prefix_tokens=prefix)
    assert_same_hypos(out, full.generate(sample_of(), prefix_tokens=prefix))
    assert all(len(hypos) == options["beam_size"] for hypos in out)


def test_kv_cache_runs_one_decoder_step_per_token():
    model = TinyModel(D, encoder=True)
    seen = []
    original = model.decoder.embed_tokens.forward
    model.decoder.embed_tokens.forward = lambda tokens: (seen.append(tokens.size(1)), original(tokens))[1]
    SequenceGenerator(model, D, beam_size=3, max_len_b=6).generate(sample_of())
    assert set(seen) == {1}


def greedy(model, sample, max_len):
    """Reference greedy decoding: full forward each step, argmax over all but pad; eos after max_len."""
    src = sample["net_input"]["src_tokens"]
    enc = model.encoder(src) if model.encoder is not None else None
    tokens = torch.full((src.size(0), 1), EOS)
    lprob_rows = []
    for step in range(max_len + 1):
        kwargs = {"encoder_out": enc} if enc is not None else {}
        lprobs = model.get_normalized_probs(model.decoder(tokens, **kwargs), log_probs=True)[:, -1]
        lprobs[:, PAD] = -math.inf
        if step == 0:
            lprobs[:, EOS] = -math.inf  # min_len=1
        best = lprobs.argmax(-1) if step < max_len else torch.full((src.size(0),), EOS)
        lprob_rows.append(lprobs.gather(1, best[:, None]))
        tokens = torch.cat([tokens, best[:, None]], 1)
    return tokens[:, 1:], torch.cat(lprob_rows, 1)


@pytest.mark.parametrize("encoder", [True, False])
def test_beam_one_is_greedy_decoding(encoder):
    model = TinyModel(D, encoder, seed=3)
    tokens, lprobs = greedy(model, sample_of(), max_len=12)
    hypos = SequenceGenerator(model, D, beam_size=1, max_len_b=12).generate(sample_of())
    for row, (hypo,) in enumerate(hypos):
        n = len(hypo["tokens"])
        assert hypo["tokens"].tolist() == tokens[row, :n].tolist()
        torch.testing.assert_close(hypo["positional_scores"], lprobs[row, :n], atol=1e-5, rtol=0)


@pytest.mark.parametrize("topk,topp", [(1, -1.0), (-1, 1e-6)])
def test_sampling_from_the_single_best_token_is_greedy(topk, topp):
    model = TinyModel(D, encoder=True, seed=3)
    beam = SequenceGenerator(model, D, beam_size=1, max_len_b=12).generate(sample_of())
    sampled = SequenceGenerator(
        model, D, beam_size=1, max_len_b=12, search_strategy=Sampling(D, sampling_topk=topk, sampling_topp=topp)
    ).generate(sample_of())
    assert_same_hypos(beam, sampled)


def test_sampling_is_reproducible_with_a_seed_and_returns_beam_samples():
    model = TinyModel(D, encoder=True)
    gen = SequenceGenerator(model, D, beam_size=4, max_len_b=10, search_strategy=Sampling(D, sampling_topk=5))
    torch.manual_seed(7)
    first = gen.generate(sample_of())
    torch.manual_seed(7)
    assert_same_hypos(first, gen.generate(sample_of()))
    assert all(len(h) == 4 for h in first)


@pytest.mark.parametrize("incremental", [True, False])
def test_one_encoder_output_per_sentence_gives_the_hypotheses_of_one_per_hypothesis(incremental):
    """The decoder shares a sentence's encoder output among its hypotheses; it moves only when sentences
    finish. The hypotheses must be those of per-hypothesis copies (fairseq's layout)."""
    model = TinyModel(D, encoder=True, seed=3)  # its first sentence finishes long before the others
    grouped = SequenceGenerator(model, D, beam_size=2, max_len_b=30, use_incremental=incremental)
    per_hypothesis = SequenceGenerator(model, D, beam_size=2, max_len_b=30, use_incremental=incremental)
    per_hypothesis.model.grouped_encoder_out = False
    assert grouped.model.grouped_encoder_out
    moves = []
    reorder = grouped.model.reorder_encoder_out
    grouped.model.reorder_encoder_out = lambda out, order: (moves.append(order.tolist()), reorder(out, order))[1]
    out = grouped.generate(sample_of())
    assert moves == [[1, 2]]  # once, one row per sentence, when the first sentence left
    assert_same_hypos(out, per_hypothesis.generate(sample_of()))


@pytest.mark.parametrize("encoder", [True, False])
def test_a_batch_decodes_like_each_sentence_alone(encoder):
    model = TinyModel(D, encoder, seed=1)
    gen = SequenceGenerator(model, D, beam_size=4, max_len_b=9)
    if encoder:
        batch = gen.generate(sample_of())
        for i in range(SRC.size(0)):
            alone = SRC[i][SRC[i].ne(PAD)].unsqueeze(0)
            assert_same_hypos([batch[i]], gen.generate(sample_of(alone, SRC_LENGTHS[i : i + 1])))
    else:
        prefix = torch.tensor([[5, 6, 7], [8, PAD, PAD], [9, 10, PAD]])
        src = torch.cat([torch.full((3, 1), EOS), prefix], 1)
        batch = inference_step(gen, types.SimpleNamespace(source_dictionary=D, cfg=None), sample_of(src))
        for i in range(3):
            alone = prefix[i][prefix[i].ne(PAD)].unsqueeze(0)
            hypos = gen.generate(sample_of(src[i : i + 1, :4]), prefix_tokens=alone)
            assert_same_hypos([batch[i]], hypos)
            assert batch[i][0]["tokens"][: alone.size(1)].tolist() == alone[0].tolist()


def test_scores_are_positional_sums_over_length_to_the_lenpen():
    model = TinyModel(D, encoder=True, seed=2)
    for lenpen in (0.0, 1.0, 3.0):
        hypos = SequenceGenerator(model, D, beam_size=6, len_penalty=lenpen, max_len_b=10).generate(sample_of())
        for sent in hypos:
            for h in sent:
                expected = float(h["positional_scores"].sum()) / len(h["tokens"]) ** lenpen
                assert float(h["score"]) == pytest.approx(expected, abs=1e-5)
            scores = [float(h["score"]) for h in sent]
            assert scores == sorted(scores, reverse=True)


def test_a_larger_lenpen_favours_longer_outputs():
    # From any token: eos with p=0.38, w0 with p=0.62. Every token lowers the summed log-probability,
    # so lenpen=0 (plain sum) wants the shortest output and lenpen>=1 the longest.
    table = torch.full((len(D), len(D)), -30.0)
    table[:, EOS] = 0.0
    table[:, D.index("w0")] = 0.5
    model = BigramLM(table)
    src = torch.tensor([[EOS, 5]])
    top_length = {}
    for lenpen in (0.0, 0.5, 1.0, 3.0):
        hypos = SequenceGenerator(model, D, beam_size=4, len_penalty=lenpen, max_len_b=8).generate(
            sample_of(src, torch.tensor([2]))
        )[0]
        top_length[lenpen] = len(hypos[0]["tokens"])
    assert top_length[0.0] == 2  # one token (min_len) and eos
    # One hypothesis ends at each step, so the beam of 4 is full with lengths 2..5 (fairseq stops then).
    assert top_length[0.0] <= top_length[0.5] <= top_length[1.0] <= top_length[3.0] == 5


def test_unnormalized_scores_are_plain_sums():
    model = TinyModel(D, encoder=True)
    for sent in SequenceGenerator(model, D, beam_size=3, normalize_scores=False).generate(sample_of()):
        for h in sent:
            assert float(h["score"]) == pytest.approx(float(h["positional_scores"].sum()), abs=1e-5)


def repeating_lm():
    # w0 -> w1 -> w0 -> ... with a small chance of anything else; eos is unlikely.
    a, b = D.index("w0"), D.index("w1")
    table = torch.zeros(len(D), len(D))
    table[:, a] = 5.0
    table[a, b] = 6.0
    table[b, a] = 6.0
    return BigramLM(table), a


def has_repeated_ngram(tokens, n):
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


def test_no_repeat_ngram_blocking():
    model, start = repeating_lm()
    src = torch.tensor([[EOS, start]])
    free = SequenceGenerator(model, D, beam_size=3, max_len_b=12)
    blocked = SequenceGenerator(model, D, beam_size=3, max_len_b=12, no_repeat_ngram_size=2)
    free_out = free.generate(sample_of(src, torch.tensor([2])))[0][0]["tokens"].tolist()
    assert has_repeated_ngram(free_out, 2)
    for h in blocked.generate(sample_of(src, torch.tensor([2])))[0]:
        assert not has_repeated_ngram([EOS] + h["tokens"].tolist(), 2), h["tokens"].tolist()


def test_min_len_and_max_len_are_respected():
    model = TinyModel(D, encoder=True)
    for hypos in SequenceGenerator(model, D, beam_size=3, min_len=8, max_len_b=10).generate(sample_of()):
        assert all(9 <= len(h["tokens"]) <= 11 for h in hypos)
    for hypos in SequenceGenerator(model, D, beam_size=3, max_len_a=0.5, max_len_b=1).generate(sample_of()):
        assert all(len(h["tokens"]) <= 0.5 * SRC.size(1) + 1 + 1 for h in hypos)
    with pytest.raises(ValueError, match="min_len"):
        SequenceGenerator(model, D, min_len=20, max_len_b=5).generate(sample_of())


def test_every_hypothesis_ends_in_eos_and_never_holds_pad():
    model = TinyModel(D, encoder=False, seed=4)
    for hypos in SequenceGenerator(model, D, beam_size=5, max_len_b=6).generate(sample_of()):
        for h in hypos:
            assert h["tokens"][-1] == EOS and PAD not in h["tokens"].tolist()
            assert h["positional_scores"].shape == h["tokens"].shape and h["alignment"] is None


def test_build_generator_picks_the_search_from_the_config():
    from fairseq_lite.dataclass.configs import GenerationConfig
    from fairseq_lite.errors import ConfigError

    task = types.SimpleNamespace(target_dictionary=D)
    model = TinyModel(D, encoder=True)
    gen = build_generator(task, [model], GenerationConfig(beam=3, lenpen=1.5))
    assert isinstance(gen.search, BeamSearch) and gen.beam_size == 3 and gen.len_penalty == 1.5
    gen = build_generator(task, [model], GenerationConfig(sampling=True, sampling_topk=4))
    assert isinstance(gen.search, Sampling) and gen.search.sampling_topk == 4
    with pytest.raises(ConfigError, match="need --sampling"):
        build_generator(task, [model], GenerationConfig(sampling_topp=0.5))


# --- BLEU ---------------------------------------------------------------------------------------

REFS = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog!",
    "It's raining, isn't it?",
    "Hello world",
]
HYPS = ["The cat sat on a mat.", "The quick brown fox jumped over a lazy dog!", "It is raining, isn't it?", "Goodbye"]


def test_sacrebleu_scorer_equals_sacrebleu():
    import sacrebleu

    from fairseq_lite.scoring import build_scorer

    scorer = build_scorer("sacrebleu", D)
    for ref, hyp in zip(REFS, HYPS):
        scorer.add_string(ref, hyp)
    expected = sacrebleu.corpus_bleu(HYPS, [REFS])
    assert scorer.score() == pytest.approx(expected.score, abs=1e-9)
    assert scorer.result_string() == expected.format()


def test_tokenized_bleu_equals_sacrebleu_without_tokenization():
    import sacrebleu

    from fairseq_lite.scoring import build_scorer

    refs = [" ".join(r.replace(".", " .").split()) for r in REFS]
    hyps = [" ".join(h.replace(".", " .").split()) for h in HYPS]
    scorer = build_scorer("bleu", D)
    for ref, hyp in zip(refs, hyps):
        scorer.add_string(ref, hyp)
    expected = sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", smooth_method="none")
    assert scorer.score() == pytest.approx(expected.score, abs=1e-9)
    assert re.fullmatch(
        r"BLEU4 = \d+\.\d\d, [\d.]+/[\d.]+/[\d.]+/[\d.]+ \(BP=\d\.\d{3}, ratio=\d\.\d{3}, "
        r"syslen=\d+, reflen=\d+\)",
        scorer.result_string(),
    ), scorer.result_string()


def test_tokenized_bleu_on_ids_trims_eos_and_never_matches_unk():
    from fairseq_lite.scoring import build_scorer

    scorer = build_scorer("bleu", D)
    unk = D.unk()
    scorer.add(torch.IntTensor([5, 6, unk, 7, EOS]), torch.IntTensor([5, 6, unk, 7, EOS]))
    assert scorer.reflen == scorer.predlen == 4
    assert scorer.match[0] == 3 and scorer.count[0] == 4
