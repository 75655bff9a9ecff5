"""Search strategies: how a step's log-probabilities become the candidates beam search keeps.

Each strategy's `step` gets the step's log-probabilities (bsz x beam x V), the cumulative scores of
the previous steps (bsz x beam x step) and returns three bsz x cand tensors: the candidates'
cumulative scores, their token ids and the beam each extends. The generator takes the first
`beam` candidates that do not end in eos to continue, and finalizes the eos ones.

LexicallyConstrainedBeamSearch (at the end) is lexically constrained beam search with dynamic beam allocation
(Post & Vilar, 2018; Hu et al., 2019), as fairseq's `--constraints`: every constraint must appear in each output.
Each hypothesis carries a constraint state (constraints.py). A step's candidates are the best 2 x beam
continuations over the whole beam, the best continuation of each hypothesis, and every token that would make
progress on a hypothesis's constraints. Candidates are grouped in banks by how many constraint tokens they
have met, and the beam is filled across the banks in turn (the best of each bank, then the second best,
...), so that hypotheses that have met fewer constraints are not crowded out by those that have met more
before they can catch up. A hypothesis may end (eos) only once all its constraints are met.
"""

import math

import torch
from torch import Tensor

from fairseq_lite.generation.constraints import STATES, ConstraintState
from fairseq_lite.kernels import compiled_op

Candidates = tuple[Tensor, Tensor, Tensor]


class Search:
    needs_src_lengths: bool = False
    supports_constraints: bool = False  # lexical constraints (LexicallyConstrainedBeamSearch); the hooks below

    def __init__(self, tgt_dict):
        self.pad = tgt_dict.pad()
        self.unk = tgt_dict.unk()
        self.eos = tgt_dict.eos()
        self.vocab_size = len(tgt_dict)
        self.src_lengths: Tensor | None = None

    def set_src_lengths(self, src_lengths: Tensor) -> None:
        self.src_lengths = src_lengths

    def step(self, step: int, lprobs: Tensor, scores: Tensor) -> Candidates:
        raise NotImplementedError

    def init_constraints(self, constraints: Tensor | None, beam_size: int) -> None:
        """A batch's packed constraints (constraints.py), before its first step."""

    def prune_sentences(self, batch_idxs: Tensor) -> None:
        """The sentences still decoded (rows of the batch) after some finished."""

    def update_constraints(self, active_hypos: Tensor) -> None:
        """The candidates (bsz x beam) the beam continues with after a step."""


class BeamSearch(Search):
    def step(self, step: int, lprobs: Tensor, scores: Tensor) -> Candidates:
        bsz, beam_size, vocab_size = lprobs.shape
        if step == 0:
            # Every beam of a sentence holds the same (empty) hypothesis: expanding them all would
            # fill the beam with copies, so only the first one is expanded.
            lprobs = lprobs[:, :1, :].contiguous()
        else:
            lprobs = lprobs + scores[:, :, step - 1].unsqueeze(-1)
        flat = lprobs.view(bsz, -1)
        # Twice the beam: even if half the best candidates end in eos, a full beam goes on.
        # (One fewer than all: pad, at -inf, must never be picked.)
        k = min(2 * beam_size, flat.size(1) - 1)
        cand_scores, cand_flat = torch.topk(flat, k=k)
        cand_beams = torch.div(cand_flat, vocab_size, rounding_mode="trunc")
        cand_tokens = cand_flat.fmod(vocab_size)
        return cand_scores, cand_tokens, cand_beams


class LengthConstrainedBeamSearch(Search):
    """Beam search whose outputs are between a*srclen+b tokens long (for --match-source-len)."""

    needs_src_lengths = True

    def __init__(self, tgt_dict, min_len_a: float, min_len_b: int, max_len_a: float, max_len_b: int):
        super().__init__(tgt_dict)
        self.min_len_a, self.min_len_b = min_len_a, min_len_b
        self.max_len_a, self.max_len_b = max_len_a, max_len_b
        self.beam = BeamSearch(tgt_dict)

    def step(self, step: int, lprobs: Tensor, scores: Tensor) -> Candidates:
        assert self.src_lengths is not None, "set_src_lengths must be called before step"
        min_lens = self.min_len_a * self.src_lengths + self.min_len_b
        max_lens = self.max_len_a * self.src_lengths + self.max_len_b
        lprobs[step < min_lens, :, self.eos] = -math.inf
        lprobs[step >= max_lens, :, self.eos] = 0
        return self.beam.step(step, lprobs, scores)


class DiverseBeamSearch(Search):
    """Diverse beam search (Vijayakumar et al., 2016), with the Hamming diversity penalty, as fairseq's
    --diverse-beam-groups G --diverse-beam-strength s: the beam is split into G groups (beam g, g + G, ...);
    each group searches in turn, and a token already chosen by earlier groups at this step costs s per
    time it was chosen."""

    def __init__(self, tgt_dict, num_groups: int, diversity_strength: float):
        super().__init__(tgt_dict)
        self.num_groups = num_groups
        self.diversity_strength = diversity_strength
        self.beam = BeamSearch(tgt_dict)

    def step(self, step: int, lprobs: Tensor, scores: Tensor) -> Candidates:
        bsz, beam_size, vocab_size = lprobs.shape
        if beam_size % self.num_groups != 0:
            raise ValueError("DiverseBeamSearch requires --beam to be divisible by the number of groups")
        chosen = lprobs.new_zeros(bsz, vocab_size)  # how often each token was picked by earlier groups
        groups = []
        for g in range(self.num_groups):
            lprobs_g = lprobs[:, g :: self.num_groups, :]
            if g > 0:
                lprobs_g = lprobs_g - self.diversity_strength * chosen.unsqueeze(1)
            cand_scores, cand_tokens, cand_beams = self.beam.step(
                step, lprobs_g.contiguous(), scores[:, g :: self.num_groups, :]
            )
            groups.append((cand_scores, cand_tokens, cand_beams * self.num_groups + g))
            chosen.scatter_add_(1, cand_tokens, torch.ones_like(cand_tokens, dtype=chosen.dtype))
        # interleaved, as fairseq: candidate j of group 0, of group 1, ..., then candidate j + 1
        return tuple(torch.stack(parts, dim=2).view(bsz, -1) for parts in zip(*groups))


class DiverseSiblingsSearch(Search):
    """Beam search with diverse siblings (Li et al., 2016), as fairseq's --diversity-rate r: the k-th best
    continuation of each hypothesis loses k * r before the beams compete, and keeps that penalty in its
    score. r = 0 is beam search."""

    def __init__(self, tgt_dict, diversity_rate: float):
        super().__init__(tgt_dict)
        self.diversity_rate = diversity_rate
        self.beam = BeamSearch(tgt_dict)

    def step(self, step: int, lprobs: Tensor, scores: Tensor) -> Candidates:
        if step == 0:
            return self.beam.step(step, lprobs, scores)
        bsz, beam_size, vocab_size = lprobs.shape
        k = min(2 * beam_size, beam_size * vocab_size - 1)  # as beam search: never as far as pad
        siblings = min(k, vocab_size)
        lprobs = lprobs + scores[:, :, step - 1].unsqueeze(-1)
        sibling_scores, sibling_tokens = torch.topk(lprobs, siblings, dim=-1)  # bsz x beam x siblings, best first
        rank = torch.arange(1, siblings + 1, device=lprobs.device, dtype=lprobs.dtype)
        sibling_scores = sibling_scores - rank * self.diversity_rate
        cand_scores, flat = torch.topk(sibling_scores.view(bsz, -1), k)
        cand_beams = torch.div(flat, siblings, rounding_mode="trunc")
        cand_tokens = sibling_tokens.view(bsz, -1).gather(1, flat)
        return cand_scores, cand_tokens, cand_beams


class Sampling(Search):
    """Each beam slot samples its next token: from the whole distribution, the top k, or the
    smallest set holding probability mass p (nucleus sampling, Holtzman et al. 2019)."""

    def __init__(self, tgt_dict, sampling_topk: int = -1, sampling_topp: float = -1.0):
        super().__init__(tgt_dict)
        self.sampling_topk = sampling_topk
        self.sampling_topp = sampling_topp

    def _nucleus(self, lprobs: Tensor) -> tuple[Tensor, Tensor]:
        """Probabilities outside the top-p set zeroed, sorted descending, with their token ids."""
        sorted_probs, sorted_ids = lprobs.exp().sort(descending=True)
        inside = sorted_probs.cumsum(dim=2).lt(self.sampling_topp)
        # `lt` leaves out the token that takes the mass past p; it belongs in the set too.
        last = inside.sum(dim=2, keepdim=True).clamp_(max=inside.size(2) - 1)
        inside.scatter_(2, last, True)
        width = int(last.max()) + 1
        probs = sorted_probs[:, :, :width].masked_fill(~inside[:, :, :width], 0)
        return probs, sorted_ids[:, :, :width]

    def step(self, step: int, lprobs: Tensor, scores: Tensor) -> Candidates:
        bsz, beam_size, _ = lprobs.shape
        if step == 0:
            lprobs = lprobs[:, :1, :].contiguous()
        top_ids: Tensor | None = None
        if self.sampling_topp > 0:
            probs, top_ids = self._nucleus(lprobs)
        elif self.sampling_topk > 0:
            top_lprobs, top_ids = lprobs.topk(self.sampling_topk)
            probs = top_lprobs.exp()
        else:
            probs = lprobs.exp()
        if step == 0:
            # All beam slots draw from the one distribution of the empty hypothesis.
            picks = torch.multinomial(probs.view(bsz, -1), beam_size, replacement=True).view(bsz, beam_size)
            probs = probs.expand(bsz, beam_size, -1)
        else:
            picks = torch.multinomial(probs.view(bsz * beam_size, -1), 1, replacement=True).view(bsz, beam_size)
        cand_scores = torch.gather(probs, dim=2, index=picks.unsqueeze(-1)).log().view(bsz, -1)
        cand_tokens = (
            picks
            if top_ids is None
            else torch.gather(top_ids.expand(bsz, beam_size, -1), dim=2, index=picks.unsqueeze(-1)).squeeze(2)
        )
        if step == 0:
            cand_beams = picks.new_zeros(bsz, beam_size)
        else:
            cand_beams = torch.arange(beam_size, device=picks.device).repeat(bsz, 1)
            cand_scores = cand_scores + scores[:, :, step - 1]
        return cand_scores, cand_tokens, cand_beams


class NGramRepeatBlock:
    """Forbid any token that would repeat an n-gram already in the hypothesis.

    Runs the compiled operator ``fairseq_lite::ngram_repeat_block_`` (C++ on CPU, CUDA on GPU;
    fairseq_lite/csrc/ngram_repeat_block*.cpp/.cu) when it exists for the tensors' device, and
    otherwise :meth:`reference`, a vectorized PyTorch version (no Python loop over hypotheses, no
    host copy). Both ban exactly the same tokens.
    """

    def __init__(self, no_repeat_ngram_size: int):
        if no_repeat_ngram_size < 1:
            raise ValueError(f"no_repeat_ngram_size must be >= 1, got {no_repeat_ngram_size}")
        self.n = no_repeat_ngram_size

    def __call__(self, tokens: Tensor, lprobs: Tensor) -> Tensor:
        """tokens: N x L, the hypotheses so far (bos included); lprobs: N x V, changed in place."""
        if tokens.size(1) < self.n:
            return lprobs  # no complete n-gram yet, so nothing can repeat
        op = compiled_op("ngram_repeat_block_", lprobs.device)
        if op is None or tokens.dtype != torch.long:
            return self.reference(tokens, lprobs)
        op(tokens, lprobs, self.n)
        return lprobs

    def reference(self, tokens: Tensor, lprobs: Tensor) -> Tensor:
        """The PyTorch implementation of :meth:`__call__` (what the compiled kernels must match)."""
        n = self.n
        length = tokens.size(1)
        if length < n:
            return lprobs
        if n == 1:
            # Every token already present is a repeated 1-gram.
            return lprobs.scatter_(1, tokens, -math.inf)
        windows = tokens.unfold(1, n, 1)  # N x (L-n+1) x n: every n-gram so far
        context = tokens[:, length - n + 1 :]  # the last n-1 tokens: the start of the next n-gram
        repeats = windows[:, :, :-1].eq(context.unsqueeze(1)).all(dim=2)
        vocab = lprobs.size(1)
        # Non-matching windows point at an extra, discarded column so one scatter does it all.
        banned_ids = torch.where(repeats, windows[:, :, -1], torch.full_like(windows[:, :, -1], vocab))
        banned = torch.zeros(lprobs.size(0), vocab + 1, dtype=torch.bool, device=lprobs.device)
        banned.scatter_(1, banned_ids, True)
        return lprobs.masked_fill_(banned[:, :vocab], -math.inf)


# a bank more is worth more than any score difference within a step
BANK_WEIGHT = -100


class LexicallyConstrainedBeamSearch(Search):
    supports_constraints = True

    def __init__(self, tgt_dict, representation: str):
        super().__init__(tgt_dict)
        if representation not in STATES:
            raise ValueError(f"--constraints must be one of: {', '.join(STATES)} (got {representation!r})")
        self.representation = representation
        self.states: list[list[ConstraintState]] = []

    def init_constraints(self, constraints: Tensor | None, beam_size: int) -> None:
        if constraints is None:
            self.states = []
            return
        create = STATES[self.representation].create
        self.states = [[create(row)] * beam_size for row in constraints.cpu()]

    def prune_sentences(self, batch_idxs: Tensor) -> None:
        self.states = [self.states[i] for i in batch_idxs.tolist()]

    def update_constraints(self, active_hypos: Tensor) -> None:
        """active_hypos: bsz x beam, the candidates (of the last step) each beam slot now holds."""
        if self.states:
            self.states = [[sent[i] for i in row] for sent, row in zip(self.states, active_hypos.tolist())]

    def step(self, step: int, lprobs: Tensor, scores: Tensor) -> Candidates:
        bsz, beam_size, vocab_size = lprobs.shape
        num_cands = min(2 * beam_size, beam_size * vocab_size - 1)  # never as far as pad
        if self.states and step > 0:
            unfinished = [s * beam_size + b for s, sent in enumerate(self.states) for b, st in enumerate(sent)]
            unfinished = [i for i in unfinished if not self.states[i // beam_size][i % beam_size].finished]
            if unfinished:
                lprobs.view(bsz * beam_size, -1)[torch.tensor(unfinished), self.eos] = -math.inf
        if step == 0:
            lprobs = lprobs[:, :1, :].contiguous()  # every beam holds the same (empty) hypothesis
        else:
            lprobs = lprobs + scores[:, :, step - 1].unsqueeze(-1)
        cand_scores, flat = torch.topk(lprobs.view(bsz, -1), num_cands)
        cand_beams = torch.div(flat, vocab_size, rounding_mode="trunc")
        cand_tokens = flat.fmod(vocab_size)
        if not self.states:
            return cand_scores, cand_tokens, cand_beams
        if step > 0:  # and each hypothesis's own best continuation
            best_scores, best_tokens = torch.topk(lprobs.view(bsz * beam_size, -1), k=1, dim=1)
            cand_scores = torch.cat([cand_scores, best_scores.view(bsz, -1)], dim=1)
            cand_tokens = torch.cat([cand_tokens, best_tokens.view(bsz, -1)], dim=1)
            own = torch.arange(beam_size, device=lprobs.device).repeat(bsz, 1)
            cand_beams = torch.cat([cand_beams, own], dim=1)
        # (-inf where a sentence has fewer candidates than that: never chosen)
        out_scores = lprobs.new_full((bsz, 2 * beam_size), -math.inf)
        out_tokens = cand_tokens.new_zeros(bsz, 2 * beam_size)
        out_beams = cand_beams.new_zeros(bsz, 2 * beam_size)
        for sent in range(bsz):
            s, t, b, states = self._sentence(
                step, lprobs[sent], self.states[sent], cand_beams[sent], cand_tokens[sent], cand_scores[sent], num_cands
            )
            out_scores[sent, : len(s)], out_tokens[sent, : len(t)], out_beams[sent, : len(b)] = s, t, b
            self.states[sent] = states
        return out_scores, out_tokens, out_beams

    def _sentence(
        self,
        step: int,
        lprobs: Tensor,
        states: list[ConstraintState],
        beams: Tensor,
        tokens: Tensor,
        scores: Tensor,
        num_cands: int,
    ) -> tuple[Tensor, Tensor, Tensor, list[ConstraintState]]:
        """One sentence's candidates: add the constraint tokens, drop duplicates, allocate across banks."""
        device = lprobs.device
        for beam, state in enumerate(states):
            progress = torch.tensor(list(state.next_tokens()), device=device, dtype=torch.long)
            if progress.numel():
                tokens = torch.cat([tokens, progress])
                beams = torch.cat([beams, torch.full_like(progress, beam)])
                scores = torch.cat([scores, lprobs[beam].take(progress)])
            if step == 0:
                break  # the beams are all the same hypothesis
        advanced = [states[int(b)].advance(int(t)) for b, t in zip(beams, tokens)]
        banks = torch.tensor([s.bank for s in advanced], device=device)
        num_tokens = len(states[-1].tokens)  # fairseq's measure: distinct constraint tokens

        # best bank first, by score within a bank
        _, order = ((num_tokens - banks) * BANK_WEIGHT + scores).sort(dim=0, descending=True)
        scores, tokens, beams, banks = scores[order], tokens[order], beams[order], banks[order]
        advanced = [advanced[i] for i in order.tolist()]

        # the same (hypothesis, token) may have come in twice: keep its first (best) copy
        key = beams * (self.vocab_size + 1) + tokens
        unique = torch.cat([key[-1:], key[:-1]]) != key
        unique[0] = True if len(key) == 1 else unique[0]
        keep = unique.nonzero().squeeze(-1).tolist()
        scores, tokens, beams, banks = scores[unique], tokens[unique], beams[unique], banks[unique]
        advanced = [advanced[i] for i in keep]

        # stripes: the first of every bank, then the second of every bank, ...
        stride = len(banks) + 1
        stripes = torch.zeros_like(banks)
        rank, current = -1, banks[0]
        for i, bank in enumerate(banks.tolist()):
            rank = rank + 1 if bank == current else 0
            current = bank
            stripes[i] = num_tokens - bank + rank * stride
        _, order = stripes.sort(dim=0)
        keep = order[:num_cands]
        return scores[keep], tokens[keep], beams[keep], [advanced[i] for i in keep.tolist()]
