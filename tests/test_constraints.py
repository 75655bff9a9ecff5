"""Lexical constraints (generation/constraints.py, LexicallyConstrainedBeamSearch in generation/search.py): the
states that track a hypothesis's progress, fairseq's packed format, and beam search that puts every constraint
in every output."""

import pytest
import torch
from test_sequence_generator import SRC, D, TinyModel, sample_of

from fairseq_lite.generation import LexicallyConstrainedBeamSearch, SequenceGenerator
from fairseq_lite.generation.constraints import (
    OrderedConstraintState,
    UnorderedConstraintState,
    pack_constraints,
    unpack_constraints,
)


def test_packing_is_fairseqs_layout():
    batch = [[torch.tensor([3, 1, 2]), torch.tensor([3]), torch.tensor([4, 5, 6, 7])], [], [torch.tensor([1, 8])]]
    packed = pack_constraints(batch)
    assert packed.tolist() == [
        [3, 3, 1, 2, 0, 3, 0, 4, 5, 6, 7, 0],
        [0] * 12,
        [1, 1, 8, 0] + [0] * 8,
    ]
    assert [c.tolist() for c in unpack_constraints(packed[0])] == [[3, 1, 2], [3], [4, 5, 6, 7]]
    assert unpack_constraints(packed[1]) == []


def advance(state, tokens):
    for token in tokens:
        state = state.advance(token)
    return state


def test_ordered_constraints_in_their_order_with_anything_between():
    start = OrderedConstraintState.create(pack_constraints([[torch.tensor([3, 1]), torch.tensor([4])]])[0])
    assert start.next_tokens() == {3} and not start.finished and start.bank == 0
    assert advance(start, [9, 3]).bank == 1 and advance(start, [3, 1]).num_completed == 1
    assert advance(start, [3, 9]).bank == 0  # a constraint broken off starts over
    assert advance(start, [3, 1, 7, 7, 4]).finished  # other tokens may come between constraints
    assert not advance(start, [4, 3, 1]).finished  # ... but not out of order
    assert advance(start, [3, 1]).next_tokens() == {3, 4}


def test_unordered_constraints_in_any_order():
    start = UnorderedConstraintState.create(pack_constraints([[torch.tensor([1, 2]), torch.tensor([3])]])[0])
    assert start.next_tokens() == {1, 3}
    assert advance(start, [3, 1, 2]).finished and advance(start, [1, 2, 3]).finished
    assert advance(start, [1, 4]).bank == 0  # 1 then 4 is no progress: back to the root
    assert advance(start, [1]).next_tokens() == {1, 2, 3}
    twice = UnorderedConstraintState.create(pack_constraints([[torch.tensor([5]), torch.tensor([5])]])[0])
    assert not advance(twice, [5]).finished and advance(twice, [5, 6, 5]).finished


@pytest.mark.parametrize("mode", ["ordered", "unordered"])
def test_every_hypothesis_contains_its_constraints(mode):
    model = TinyModel(D, encoder=True, seed=1)
    wanted = [[torch.tensor([9]), torch.tensor([11, 12])] for _ in range(SRC.size(0))]
    search = LexicallyConstrainedBeamSearch(D, mode)
    generator = SequenceGenerator(model, D, beam_size=4, max_len_b=12, search_strategy=search)
    hypos = generator.generate(sample_of(), constraints=pack_constraints(wanted))
    for sentence in hypos:
        assert sentence
        for h in sentence:
            tokens = h["tokens"].tolist()
            assert 9 in tokens and any(tokens[i : i + 2] == [11, 12] for i in range(len(tokens) - 1))
            if mode == "ordered":
                assert tokens.index(9) < max(i for i in range(len(tokens) - 1) if tokens[i : i + 2] == [11, 12])


def test_without_constraints_it_is_beam_search():
    model = TinyModel(D, encoder=True, seed=1)
    plain = SequenceGenerator(model, D, beam_size=4, max_len_b=8).generate(sample_of())
    search = LexicallyConstrainedBeamSearch(D, "ordered")
    unconstrained = SequenceGenerator(model, D, beam_size=4, max_len_b=8, search_strategy=search).generate(sample_of())
    assert [[h["tokens"].tolist() for h in s] for s in plain] == [
        [h["tokens"].tolist() for h in s] for s in unconstrained
    ]
    with pytest.raises(ValueError, match="does not support them"):
        SequenceGenerator(model, D, beam_size=2).generate(sample_of(), constraints=pack_constraints([[]] * 3))


def test_fairseqs_module_path_of_the_constrained_search():
    """`from fairseq.search import LexicallyConstrainedBeamSearch`, fairseq's path, with the package renamed."""
    from fairseq_lite.search import LexicallyConstrainedBeamSearch as FromSearch

    assert FromSearch is LexicallyConstrainedBeamSearch
