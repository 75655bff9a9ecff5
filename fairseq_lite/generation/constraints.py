"""Lexical constraints for beam search (`--constraints ordered|unordered`): which constraint tokens a
hypothesis has produced so far.

A sentence's constraints are one or more token sequences that must all appear in its output. Each beam
hypothesis carries a state, advanced by every token it generates:
  OrderedConstraintState: the constraints in the order given, anything (or nothing) between them.
  UnorderedConstraintState: in any order, tracked on a trie of the constraints, so that hypotheses that
    started different constraints are told apart.
A state's `bank` is how many constraint tokens it has met (what beam search allocates its beam by),
`finished` whether every constraint is met (eos is allowed only then), and `next_tokens()` the tokens that
would make progress (the search always considers them).

Batches carry constraints packed in one tensor (fairseq's format): row i is
`[number of constraints, c1 tokens..., 0, c2 tokens..., 0, 0...]`.
"""

from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor


def pack_constraints(batch_constraints: Sequence[Sequence[Tensor]]) -> Tensor:
    """Each sentence's list of constraint token tensors as one padded LongTensor (fairseq's layout)."""
    width = max([1] + [1 + sum(len(c) for c in cs) + len(cs) for cs in batch_constraints if len(cs)])
    packed = torch.zeros(len(batch_constraints), width, dtype=torch.long)
    for row, constraints in enumerate(batch_constraints):
        packed[row, 0] = len(constraints)
        offset = 1
        for constraint in constraints:
            packed[row, offset : offset + len(constraint)] = torch.as_tensor(constraint, dtype=torch.long)
            offset += len(constraint) + 1
    return packed


def unpack_constraints(row: Tensor) -> list[Tensor]:
    """One packed row back to its list of constraint tensors."""
    values = row.tolist()
    constraints, offset = [], 1
    for _ in range(int(values[0])):
        end = values.index(0, offset)
        constraints.append(row[offset:end])
        offset = end + 1
    return constraints


class ConstraintNode:
    """A trie node: `terminal` constraints end here; `num_constraints` end here or below."""

    def __init__(self, token: int | None = None, parent: "ConstraintNode | None" = None):
        self.token = None if token is None else int(token)
        self.parent = parent
        self.terminal = 0
        self.num_constraints = 0
        self.children: dict[int, ConstraintNode] = {}

    def __getitem__(self, token: int) -> "ConstraintNode | None":
        return self.children.get(token)

    def next_tokens(self) -> set[int]:
        return set(self.children)

    @staticmethod
    def create(constraints: Sequence[Sequence[int]]) -> "ConstraintNode":
        root = ConstraintNode()
        for sequence in constraints:
            root.add_sequence([int(t) for t in sequence])
        return root

    def add_sequence(self, sequence: list[int]) -> None:
        if not sequence:
            raise ValueError("a constraint must have at least one token")
        node = self
        for token in sequence:
            node = node.children.setdefault(token, ConstraintNode(token, parent=node))
        node.terminal += 1
        while node is not None:
            node.num_constraints += 1
            node = node.parent

    def token_counts(self) -> Counter:
        """How often each token occurs in the constraints below this node."""
        counts: Counter = Counter()
        stack = list(self.children.values())
        while stack:
            node = stack.pop()
            counts[node.token] += node.num_constraints
            stack.extend(node.children.values())
        return counts

    def tokens(self) -> set[int]:
        return set(self.token_counts())


class UnorderedConstraintState:
    """Progress through unordered (phrasal) constraints: the trie node reached, how often each node was
    generated (`generated`), and which constraint ends were completed."""

    def __init__(self, node: ConstraintNode, copy_from: "UnorderedConstraintState | None" = None):
        self.node = node
        if copy_from is None:
            self.root = node
            self.completed: Counter = Counter()
            self.generated: Counter = Counter()
        else:
            self.root = copy_from.root
            self.completed = Counter(copy_from.completed)
            self.generated = Counter(copy_from.generated)
        if self.node is not self.root:
            self.generated[node] += 1

    @staticmethod
    def create(row: Tensor) -> "UnorderedConstraintState":
        return UnorderedConstraintState(ConstraintNode.create(unpack_constraints(row)))

    @property
    def bank(self) -> int:
        return sum(self.generated.values())

    @property
    def num_completed(self) -> int:
        # the node reached counts as completed once it is a constraint's end not yet completed
        in_final = bool(self.node.terminal) and self.completed[self.node] < self.node.terminal
        return sum(self.completed.values()) + int(in_final)

    @property
    def finished(self) -> bool:
        return self.root.num_constraints == self.num_completed

    @property
    def tokens(self) -> set[int]:
        return self.root.tokens()

    def next_tokens(self) -> set[int]:
        """Tokens that start a constraint, and those that continue the one in progress."""
        if self.node is self.root:
            return self.root.next_tokens()
        return self.root.next_tokens() | self.node.next_tokens()

    def advance(self, token: int) -> "UnorderedConstraintState":
        """The state after `token`: down the trie where a child matches and its constraints are not all
        generated yet; otherwise back to the root (starting a new constraint if `token` starts one),
        keeping a completed prefix of the path left as completed."""
        token = int(token)
        child = self.node[token]
        if child is not None and self.generated[child] < child.num_constraints:
            return UnorderedConstraintState(child, copy_from=self)
        restart = self.root[token]
        if restart is not None and self.generated[restart] < restart.num_constraints:
            state = UnorderedConstraintState(restart, copy_from=self)
        else:
            state = UnorderedConstraintState(self.root, copy_from=self)
        # leaving the path: the deepest constraint end on it is completed, the nodes below it are undone
        node = self.node
        while node is not self.root:
            if node.terminal and self.completed[node] < node.terminal:
                state.completed[node] += 1
                break
            state.generated[node] -= 1
            node = node.parent
        return state


class OrderedConstraintState:
    """Progress through the constraints in their order, concatenated: `state` is the index of the last
    constraint token met (-1: none)."""

    def __init__(self, sequence: list[int], endpoints: list[bool], state: int = -1):
        self.sequence = sequence
        self.endpoints = endpoints  # True where a constraint ends
        self.state = state

    @staticmethod
    def create(row: Tensor) -> "OrderedConstraintState":
        sequence, endpoints = [], []
        for constraint in unpack_constraints(row):
            tokens = [int(t) for t in constraint]
            sequence += tokens
            endpoints += [False] * (len(tokens) - 1) + [True]
        return OrderedConstraintState(sequence, endpoints)

    @property
    def bank(self) -> int:
        return self.state + 1

    @property
    def num_completed(self) -> int:
        return sum(self.endpoints[: self.state + 1])

    @property
    def finished(self) -> bool:
        return self.state + 1 == len(self.sequence)

    @property
    def tokens(self) -> set[int]:
        return set(self.sequence)

    def next_tokens(self) -> set[int]:
        tokens = set()
        if self.state > 0:
            tokens.add(self.sequence[0])
        if not self.finished:
            tokens.add(self.sequence[self.state + 1])
        return tokens

    def advance(self, token: int) -> "OrderedConstraintState":
        """The next constraint token moves on; within a constraint anything else starts over (at its
        first token if it is the first one); after a whole constraint, other tokens may come between."""
        token = int(token)
        if self.finished:
            state = self.state
        elif self.sequence[self.state + 1] == token:
            state = self.state + 1
        elif self.endpoints[self.state]:  # between constraints (state -1 reads the last endpoint: True)
            state = self.state
        elif token == self.sequence[0]:
            state = 0
        else:
            state = -1
        return OrderedConstraintState(self.sequence, self.endpoints, state)


ConstraintState = OrderedConstraintState | UnorderedConstraintState
STATES = {"ordered": OrderedConstraintState, "unordered": UnorderedConstraintState}
