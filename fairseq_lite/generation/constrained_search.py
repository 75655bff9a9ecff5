"""Lexically constrained beam search with dynamic beam allocation (Post & Vilar, 2018; Hu et al., 2019), as
fairseq's `--constraints`: every constraint must appear in each output.

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
from fairseq_lite.generation.search import Candidates, Search

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
