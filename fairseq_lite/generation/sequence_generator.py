"""Beam search and sampling with fairseq's semantics, one decoder step per token (KV cache).

Layout of the search state, for `bsz` sentences still being decoded and `beam` hypotheses each
(row `i * beam + j` is hypothesis j of sentence i):
  tokens: (bsz*beam) x (max_len+2)   bos, then the tokens chosen so far, then pad
  scores: (bsz*beam) x (max_len+1)   cumulative log-probability after each step
A hypothesis whose best continuation is eos is *finalized*: copied out with its score normalized
by length**lenpen. A sentence is done when `beam` hypotheses are finalized (or at max_len); done
sentences leave the batch, and the KV cache and encoder output are reordered to follow the rows. A
decoder that supports it keeps one encoder output per sentence (not per hypothesis), which moves only
when sentences leave.
"""

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from fairseq_lite.generation.search import BeamSearch, NGramRepeatBlock, Search
from fairseq_lite.models.fairseq_model import accepts_grouped_encoder_out, reorder_encoder_out
from fairseq_lite.utils import extract_hard_alignment, extract_soft_alignment

Hypothesis = dict[str, Any]


class EnsembleModel(nn.Module):
    """One or more models decoded together (log-probabilities averaged in probability space)."""

    def __init__(self, models: Sequence[nn.Module], use_incremental: bool = True):
        super().__init__()
        self.models = nn.ModuleList(models)
        self.has_encoder = all(getattr(m, "encoder", None) is not None for m in models)
        self.incremental = use_incremental and all(
            hasattr(getattr(m, "decoder", None), "reorder_incremental_state") for m in models
        )
        # One encoder output per sentence, shared by its hypotheses (see FairseqDecoder).
        self.grouped_encoder_out = self.has_encoder and all(accepts_grouped_encoder_out(m.decoder) for m in models)

    def forward_align(self, src_tokens: Tensor, src_lengths: Tensor, prev_output_tokens: Tensor) -> Tensor:
        """The encoder attention of a teacher-forced forward pass over `prev_output_tokens` (N x T x S,
        averaged over the models), from each decoder's extra["attn"]: fairseq's EnsembleModelWithAlignment.
        A decoder with a `need_attn` switch (ours) is asked for it for this pass.
        As fairseq: an alignment model (transformer_align) gives its supervised attention (its forward) only when
        one in the ensemble has full_context_alignment; otherwise the search's own attention, its plain decoder's."""
        full_context = any(getattr(m, "full_context_alignment", False) for m in self.models)
        total = None
        for m in self.models:
            with attention_asked(m):
                if hasattr(m, "full_context_alignment") and not full_context:
                    _, extra = m.decoder(prev_output_tokens, encoder_out=m.encoder(src_tokens, src_lengths=src_lengths))
                else:
                    _, extra = m(src_tokens, src_lengths, prev_output_tokens)
            attn = decoder_attention(extra)
            if attn is None:
                raise ValueError(
                    f"--print-alignment needs the decoder's attention: {type(m.decoder).__name__} returns no "
                    f'extra["attn"]'
                )
            total = attn.float() if total is None else total + attn.float()
        return total / len(self.models)

    def max_decoder_positions(self) -> int:
        limits = []
        for m in self.models:
            fn = getattr(m, "max_decoder_positions", None) or getattr(m.decoder, "max_positions", None)
            if fn is not None and fn() is not None:
                limits.append(int(fn()))
        return min(limits, default=int(1e9))

    def forward_encoder(self, net_input: dict[str, Tensor]) -> list[dict[str, Any]] | None:
        if not self.has_encoder:
            return None
        return [m.encoder(net_input["src_tokens"], net_input.get("src_lengths")) for m in self.models]

    def reorder_encoder_out(
        self, encoder_outs: list[dict[str, Any]] | None, new_order: Tensor
    ) -> list[dict[str, Any]] | None:
        if encoder_outs is None:
            return None
        return [_reorder_encoder_out(m, out, new_order) for m, out in zip(self.models, encoder_outs)]

    def reorder_incremental_state(self, states: list[dict[str, Any]], new_order: Tensor) -> None:
        if self.incremental:
            for m, state in zip(self.models, states):
                m.decoder.reorder_incremental_state(state, new_order)

    def forward_decoder(
        self,
        tokens: Tensor,
        encoder_outs: list[dict[str, Any]] | None,
        states: list[dict[str, Any]],
        temperature: float,
    ) -> Tensor:
        """Log-probabilities (N x V) of the token after `tokens` (N x T)."""
        all_lprobs = []
        for i, m in enumerate(self.models):
            kwargs: dict[str, Any] = {}
            if encoder_outs is not None:
                kwargs["encoder_out"] = encoder_outs[i]
            if self.incremental:
                # The decoder embeds only the newest token and reads the rest from its cache.
                kwargs["incremental_state"] = states[i]
            logits, extra = m.decoder(tokens, **kwargs)
            logits = logits[:, -1:, :]
            last = (logits if temperature == 1.0 else logits / temperature, extra)
            all_lprobs.append(m.get_normalized_probs(last, log_probs=True)[:, -1, :])
        return average_log_probs(all_lprobs)


def average_log_probs(log_probs: Sequence[Tensor]) -> Tensor:
    """An ensemble's log-probabilities: the log of the models' averaged probabilities (fairseq's)."""
    if len(log_probs) == 1:
        return log_probs[0]
    return torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(len(log_probs))


@contextlib.contextmanager
def attention_asked(model: nn.Module, asked: bool = True) -> Iterator[None]:
    """While in it, a decoder with a `need_attn` switch (ours) forms its attention probabilities."""
    decoder = getattr(model, "decoder", None)
    before = getattr(decoder, "need_attn", None)
    if not asked or before is None:
        yield
        return
    decoder.need_attn = True
    try:
        yield
    finally:
        decoder.need_attn = before


def decoder_attention(extra: Any) -> Tensor | None:
    """extra["attn"] of a decoder's output (fairseq's [tensor] list, or a tensor), or None."""
    attn = extra.get("attn") if isinstance(extra, dict) else None
    return attn[0] if isinstance(attn, list) and attn else attn


def _reorder_encoder_out(model: nn.Module, encoder_out: dict[str, Any], new_order: Tensor) -> dict[str, Any]:
    reorder = getattr(model.encoder, "reorder_encoder_out", None)
    if reorder is not None:
        return reorder(encoder_out, new_order)
    return reorder_encoder_out(encoder_out, new_order)


class SequenceGenerator(nn.Module):
    def __init__(
        self,
        models: nn.Module | Sequence[nn.Module],
        tgt_dict: Any,
        beam_size: int = 1,
        max_len_a: float = 0,
        max_len_b: int = 200,
        max_len: int = 0,
        min_len: int = 1,
        normalize_scores: bool = True,
        len_penalty: float = 1.0,
        unk_penalty: float = 0.0,
        temperature: float = 1.0,
        match_source_len: bool = False,
        no_repeat_ngram_size: int = 0,
        search_strategy: Search | None = None,
        eos: int | None = None,
        symbols_to_strip_from_output: set | None = None,
        use_incremental: bool = True,
        print_alignment: str | None = None,
    ):
        """
        max_len_a/b: outputs are at most a * source length + b tokens (eos not counted), and at
            most max_len (default: what the decoder's positions allow) minus one.
        min_len: no eos before this many tokens (forced prefixes aside).
        len_penalty: finalized scores are divided by length**len_penalty; >1 favours longer outputs.
        unk_penalty: subtracted from unk's log-probability; >0 produces fewer unks.
        use_incremental: False recomputes the whole prefix at every step (slow; for comparisons).
        print_alignment: "hard" or "soft": each hypothesis gets "attention" (source x target) and
            "alignment" (fairseq's hard pairs or soft rows) from the decoder's encoder attention.
        """
        super().__init__()
        models = list(models) if isinstance(models, (list, tuple, nn.ModuleList)) else [models]
        self.model = EnsembleModel(models, use_incremental=use_incremental)
        self.tgt_dict = tgt_dict
        self.pad = tgt_dict.pad()
        self.unk = tgt_dict.unk()
        self.eos = tgt_dict.eos() if eos is None else eos
        self.symbols_to_strip_from_output = set(symbols_to_strip_from_output or ()) | {self.eos}
        self.vocab_size = len(tgt_dict)
        # Pad is never chosen, so a beam can hold at most |V| - 1 distinct continuations.
        self.beam_size = min(beam_size, self.vocab_size - 1)
        self.max_len_a = max_len_a
        self.max_len_b = max_len_b
        self.min_len = min_len
        self.max_len = max_len or self.model.max_decoder_positions()
        self.normalize_scores = normalize_scores
        self.len_penalty = len_penalty
        self.unk_penalty = unk_penalty
        if temperature <= 0:
            raise ValueError("--temperature must be greater than 0")
        self.temperature = temperature
        self.match_source_len = match_source_len
        self.repeat_ngram_blocker = NGramRepeatBlock(no_repeat_ngram_size) if no_repeat_ngram_size > 0 else None
        self.search = search_strategy if search_strategy is not None else BeamSearch(tgt_dict)
        if print_alignment not in (None, "hard", "soft"):
            raise ValueError(f"--print-alignment must be hard or soft, got {print_alignment!r}")
        if print_alignment is not None and not self.model.has_encoder:
            raise ValueError("--print-alignment needs a model with an encoder (it aligns to the source)")
        self.print_alignment = print_alignment
        self.model.eval()

    @property
    def use_incremental(self) -> bool:
        return self.model.incremental

    def forward(
        self, sample: dict[str, Any], prefix_tokens: Tensor | None = None, bos_token: int | None = None
    ) -> list[list[Hypothesis]]:
        return self.generate(sample, prefix_tokens=prefix_tokens, bos_token=bos_token)

    @torch.no_grad()
    def generate(
        self, sample: Any, *args: Any, prefix_tokens: Tensor | None = None, bos_token: int | None = None, **kwargs: Any
    ) -> list[list[Hypothesis]]:
        """For each sentence of the batch, its finalized hypotheses, best first: dicts with
        "tokens" (ending in eos), "score", "positional_scores" (natural log), "alignment", "attention".
        """
        if isinstance(sample, (list, tuple, nn.Module)):
            # fairseq's tasks call generate(models, sample, ...): the models are already ours.
            sample, args = args[0], args[1:]
        if args:
            raise TypeError("generate(sample, prefix_tokens=..., bos_token=...) takes keyword options")
        constraints = kwargs.pop("constraints", None)
        if kwargs:
            raise TypeError(f"generate() got unexpected options: {', '.join(kwargs)}")
        if constraints is not None and not self.search.supports_constraints:
            raise ValueError("constraints were given, but this search does not support them: use --constraints")
        self.search.init_constraints(constraints, self.beam_size)
        finalized = self._generate(sample, prefix_tokens, bos_token)
        if self.print_alignment is not None:
            self._add_alignments(sample, finalized)
        return finalized

    def _add_alignments(self, sample: dict[str, Any], finalized: list[list[Hypothesis]]) -> None:
        """Give each hypothesis the attention of one teacher-forced pass over it (equal to what the search's
        steps computed, without slowing them down) and its alignment (fairseq's SequenceGeneratorWithAlignment)."""
        hypos = [(row, h) for row, sentence in enumerate(finalized) for h in sentence]
        if not hypos:
            return
        src_tokens = sample["net_input"]["src_tokens"]
        rows = torch.tensor([row for row, _ in hypos], device=src_tokens.device)
        src_lengths = sample["net_input"].get("src_lengths")
        if src_lengths is None:
            src_lengths = src_tokens.ne(self.pad).long().sum(dim=1)
        width = max(len(h["tokens"]) for _, h in hypos)
        prev = src_tokens.new_full((len(hypos), width), self.pad)
        for i, (_, h) in enumerate(hypos):
            tokens = h["tokens"]
            prev[i, 0] = self.eos  # fairseq's move_eos_to_beginning
            prev[i, 1 : len(tokens)] = tokens[:-1]
        attn = self.model.forward_align(src_tokens.index_select(0, rows), src_lengths.index_select(0, rows), prev)
        extract = extract_hard_alignment if self.print_alignment == "hard" else extract_soft_alignment
        for i, (row, h) in enumerate(hypos):
            hypo_attn = attn[i, : len(h["tokens"])].cpu()
            h["attention"] = hypo_attn.t()  # source x target, as fairseq's
            h["alignment"] = extract(hypo_attn, src_tokens[row].cpu(), h["tokens"].cpu(), self.pad, self.eos)

    def _generate(
        self, sample: dict[str, Any], prefix_tokens: Tensor | None, bos_token: int | None
    ) -> list[list[Hypothesis]]:
        net_input = sample["net_input"]
        src_tokens = net_input["src_tokens"]
        device = src_tokens.device
        bsz, src_width = src_tokens.shape[:2]
        src_lengths = (src_tokens.ne(self.eos) & src_tokens.ne(self.pad)).long().sum(dim=1)
        beam = self.beam_size

        if self.match_source_len:
            max_len = int(src_lengths.max())
        else:
            max_len = min(int(self.max_len_a * src_width + self.max_len_b), self.max_len - 1)
        if self.min_len > max_len:
            raise ValueError(
                f"min_len ({self.min_len}) cannot be larger than max_len ({max_len}); "
                f"adjust --min-len / --max-len-a / --max-len-b"
            )

        encoder_outs = self.model.forward_encoder(net_input)
        grouped = self.model.grouped_encoder_out
        if not grouped:
            # Every sentence is decoded `beam` times: repeat its encoder output once, up front.
            encoder_outs = self.model.reorder_encoder_out(
                encoder_outs, torch.arange(bsz, device=device).repeat_interleave(beam)
            )
        states: list[dict[str, Any]] = [{} for _ in self.model.models]

        scores = torch.zeros(bsz * beam, max_len + 1, device=device)
        tokens = torch.full((bsz * beam, max_len + 2), self.pad, dtype=torch.long, device=device)
        tokens[:, 0] = self.eos if bos_token is None else bos_token

        finalized: list[list[Hypothesis]] = [[] for _ in range(bsz)]
        # Original sentence index of each sentence still in the batch.
        alive: list[int] = list(range(bsz))
        # Beam slots of a sentence whose continuation was used up by finalized hypotheses.
        cands_to_ignore = torch.zeros(bsz, beam, dtype=torch.bool, device=device)
        cand_size = 2 * beam
        bbsz_offsets = (torch.arange(bsz, device=device) * beam).unsqueeze(1)
        cand_offsets = torch.arange(cand_size, device=device)

        reorder_state: Tensor | None = None
        batch_idxs: Tensor | None = None
        for step in range(max_len + 1):  # one step more than max_len, for eos
            if reorder_state is not None:
                if batch_idxs is not None:
                    # Rows of removed sentences are gone: shift each beam index to its new row.
                    shift = batch_idxs - torch.arange(batch_idxs.numel(), device=device)
                    reorder_state = (reorder_state.view(-1, beam) + shift.unsqueeze(-1) * beam).view(-1)
                    if grouped:
                        encoder_outs = self.model.reorder_encoder_out(encoder_outs, batch_idxs)
                self.model.reorder_incremental_state(states, reorder_state)
                if not grouped:
                    encoder_outs = self.model.reorder_encoder_out(encoder_outs, reorder_state)

            lprobs = self.model.forward_decoder(tokens[:, : step + 1], encoder_outs, states, self.temperature)
            lprobs = lprobs.float().nan_to_num_(nan=-math.inf, posinf=math.inf, neginf=-math.inf)
            lprobs[:, self.pad] = -math.inf
            if self.unk_penalty:
                lprobs[:, self.unk] -= self.unk_penalty
            if step >= max_len:  # only eos is left
                lprobs[:, : self.eos] = -math.inf
                lprobs[:, self.eos + 1 :] = -math.inf

            if prefix_tokens is not None and step < prefix_tokens.size(1) and step < max_len:
                lprobs, tokens, scores = self._force_prefix(step, lprobs, scores, tokens, prefix_tokens, beam)
            elif step < self.min_len:
                lprobs[:, self.eos] = -math.inf  # min_len does not apply to a forced prefix

            if self.repeat_ngram_blocker is not None:
                lprobs = self.repeat_ngram_blocker(tokens[:, : step + 1], lprobs)
            if self.search.needs_src_lengths:
                self.search.set_src_lengths(src_lengths)

            cand_scores, cand_tokens, cand_beams = self.search.step(
                step, lprobs.view(bsz, -1, self.vocab_size), scores.view(bsz, beam, -1)[:, :, :step]
            )
            cand_bbsz_idx = cand_beams + bbsz_offsets

            # Candidates ending in eos among the best `beam` are finalized.
            eos_mask = cand_tokens.eq(self.eos) & cand_scores.ne(-math.inf)
            eos_mask[:, :beam][cands_to_ignore] = False
            eos_bbsz_idx = torch.masked_select(cand_bbsz_idx[:, :beam], mask=eos_mask[:, :beam])
            done_rows: list[int] = []
            if eos_bbsz_idx.numel() > 0:
                eos_scores = torch.masked_select(cand_scores[:, :beam], mask=eos_mask[:, :beam])
                done_rows = self._finalize(
                    step, eos_bbsz_idx, eos_scores, tokens, scores, finalized, alive, beam, src_lengths, max_len
                )
            if len(alive) == len(done_rows):
                break
            if step >= max_len:
                # Sentences left here have no finite hypothesis to end (e.g. a forced prefix that was
                # impossible); fairseq fails an assertion on them, we return what they have.
                break

            if done_rows:
                new_bsz = bsz - len(done_rows)
                keep = torch.ones(bsz, dtype=torch.bool, device=device)
                keep[done_rows] = False
                batch_idxs = torch.arange(bsz, device=device).masked_select(keep)
                done_set = set(done_rows)
                alive = [s for row, s in enumerate(alive) if row not in done_set]
                eos_mask = eos_mask[batch_idxs]
                cand_beams = cand_beams[batch_idxs]
                bbsz_offsets = bbsz_offsets[:new_bsz]
                cand_bbsz_idx = cand_beams + bbsz_offsets
                cand_scores = cand_scores[batch_idxs]
                cand_tokens = cand_tokens[batch_idxs]
                self.search.prune_sentences(batch_idxs)
                if prefix_tokens is not None:
                    prefix_tokens = prefix_tokens[batch_idxs]
                src_lengths = src_lengths[batch_idxs]
                cands_to_ignore = cands_to_ignore[batch_idxs]
                scores = scores.view(bsz, -1)[batch_idxs].view(new_bsz * beam, -1)
                tokens = tokens.view(bsz, -1)[batch_idxs].view(new_bsz * beam, -1)
                bsz = new_bsz
            else:
                batch_idxs = None

            # Continue with the best `beam` candidates that neither end in eos nor are ignored:
            # rank candidates by position, pushing those out of the running past all others.
            eos_mask[:, :beam] = cands_to_ignore | eos_mask[:, :beam]
            active_mask = eos_mask.long() * cand_size + cand_offsets[: eos_mask.size(1)]
            new_cands_to_ignore, active_hypos = torch.topk(active_mask, k=beam, dim=1, largest=False)
            cands_to_ignore = new_cands_to_ignore.ge(cand_size)[:, :beam]
            assert (~cands_to_ignore).any(dim=1).all(), "a sentence has no hypothesis left to extend"

            self.search.update_constraints(active_hypos)
            active_bbsz_idx = torch.gather(cand_bbsz_idx, dim=1, index=active_hypos).view(-1)
            tokens[:, : step + 1] = tokens[:, : step + 1].index_select(0, active_bbsz_idx)
            tokens.view(bsz, beam, -1)[:, :, step + 1] = torch.gather(cand_tokens, dim=1, index=active_hypos)
            if step > 0:
                scores[:, :step] = scores[:, :step].index_select(0, active_bbsz_idx)
            scores.view(bsz, beam, -1)[:, :, step] = torch.gather(cand_scores, dim=1, index=active_hypos)
            # The cache must follow the hypotheses to their new rows before the next step.
            reorder_state = active_bbsz_idx

        for hypos in finalized:
            hypos.sort(key=lambda h: float(h["score"]), reverse=True)
        return finalized

    def _force_prefix(
        self, step: int, lprobs: Tensor, scores: Tensor, tokens: Tensor, prefix_tokens: Tensor, beam: int
    ):
        """Make the prefix token the only choice at this step (rows whose prefix is shorter, i.e.
        pad here, choose freely); its log-probability is kept, so it counts in the score."""
        prefix_toks = prefix_tokens[:, step].unsqueeze(-1).repeat(1, beam).view(-1)
        prefix_lprobs = lprobs.gather(-1, prefix_toks.unsqueeze(-1))
        forced = prefix_toks.ne(self.pad)
        lprobs[forced] = -math.inf
        lprobs[forced] = lprobs[forced].scatter(-1, prefix_toks[forced].unsqueeze(-1), prefix_lprobs[forced])
        eos_forced = prefix_toks.eq(self.eos)
        if eos_forced.any():
            # A prefix that ends the sentence: all beams must be the one (forced) hypothesis, or
            # the same output would be finalized beam times with different histories.
            sent_mask = eos_forced.view(-1, beam)[:, 0]
            tokens = _replicate_first_beam(tokens, sent_mask, beam)
            scores = _replicate_first_beam(scores, sent_mask, beam)
            lprobs = _replicate_first_beam(lprobs, sent_mask, beam)
        return lprobs, tokens, scores

    def _finalize(
        self,
        step: int,
        bbsz_idx: Tensor,
        eos_scores: Tensor,
        tokens: Tensor,
        scores: Tensor,
        finalized: list[list[Hypothesis]],
        alive: list[int],
        beam: int,
        src_lengths: Tensor,
        max_len: int,
    ) -> list[int]:
        """Copy out the hypotheses ending in eos now; return the batch rows of the sentences that
        are done (beam hypotheses collected, or max_len reached)."""
        hypo_tokens = tokens.index_select(0, bbsz_idx)[:, 1 : step + 2]  # without bos
        hypo_tokens[:, step] = self.eos
        positional = scores.index_select(0, bbsz_idx)[:, : step + 1]
        positional[:, step] = eos_scores
        positional[:, 1:] = positional[:, 1:] - positional[:, :-1]  # cumulative -> per token
        if self.normalize_scores:
            eos_scores = eos_scores / (step + 1) ** self.len_penalty
        rows = torch.div(bbsz_idx, beam, rounding_mode="trunc")
        if self.match_source_len:
            too_long = step > src_lengths.index_select(0, rows)
            eos_scores = torch.where(too_long, torch.full_like(eos_scores, -math.inf), eos_scores)

        rows_list = rows.tolist()
        for i, row in enumerate(rows_list):
            sent = alive[row]
            if len(finalized[sent]) < beam:
                finalized[sent].append(
                    {
                        "tokens": hypo_tokens[i],
                        "score": eos_scores[i],
                        "attention": None,
                        "alignment": None,
                        "positional_scores": positional[i],
                        "steps": int(hypo_tokens[i].numel()),  # one decoding step per token, eos included
                    }
                )
        done = []
        for row in sorted(set(rows_list)):
            if len(finalized[alive[row]]) == beam or step == max_len:
                done.append(row)
        return done


def _replicate_first_beam(tensor: Tensor, mask: Tensor, beam: int) -> Tensor:
    tensor = tensor.view(-1, beam, tensor.size(-1))
    tensor[mask] = tensor[mask][:, :1, :]
    return tensor.view(-1, tensor.size(-1))
