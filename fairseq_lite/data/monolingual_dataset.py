"""Language-modelling samples (source, target) and their collation into padded batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from fairseq_lite.data.data_utils import collate_tokens
from fairseq_lite.data.fairseq_dataset import FairseqDataset
from fairseq_lite.errors import ConfigError

__all__ = ["MonolingualDataset", "collate"]

TARGET_KINDS = ("self", "future", "past")


class _Vocab(Protocol):
    def pad(self) -> int: ...
    def eos(self) -> int: ...
    def bos(self) -> int: ...
    def unk(self) -> int: ...
    def __len__(self) -> int: ...


def collate(
    samples: list[dict[str, Any]],
    pad_idx: int,
    eos_idx: int,
    fixed_pad_length: int | None = None,
    pad_to_bsz: int | None = None,
) -> dict[str, Any]:
    """Right-pad the samples' sources and targets into a batch dict (``{}`` for no samples)."""
    if len(samples) == 0:
        return {}

    def merge(tensors: list[torch.Tensor]) -> torch.Tensor:
        return collate_tokens(
            tensors,
            pad_idx,
            eos_idx,
            left_pad=False,
            pad_to_length=fixed_pad_length,
            pad_to_bsz=pad_to_bsz,
        )

    src_tokens = merge([s["source"] for s in samples])
    first_target = samples[0]["target"]
    if first_target is None:
        target: Any = src_tokens
    elif isinstance(first_target, list):
        target = [merge([s["target"][i] for s in samples]) for i in range(len(first_target))]
    else:
        target = merge([s["target"] for s in samples])

    return {
        "id": torch.LongTensor([int(s["id"]) for s in samples]),
        "nsentences": len(samples),
        # fairseq counts the (unpadded) source tokens; with LM targets that equals the target
        # tokens, which is what the loss is normalized by
        "ntokens": sum(len(s["source"]) for s in samples),
        "net_input": {
            "src_tokens": src_tokens,
            "src_lengths": torch.LongTensor([s["source"].numel() for s in samples]),
        },
        "target": target,
    }


class MonolingualDataset(FairseqDataset):
    """Wrap a token dataset for language modelling.

    Args:
        dataset: dataset of 1-D token tensors, or, when ``targets`` is given, of
            ``(source, future_target, past_target)`` triples (a :class:`TokenBlockDataset`
            built with ``include_targets=True``).
        sizes: length of every sample.
        src_vocab: input dictionary; ``tgt_vocab`` (default: the same) is the output one, and
            target ids outside a smaller ``tgt_vocab`` are mapped to its unk.
        add_eos_for_other_targets: append eos to sources lacking it when "self"/"past" targets
            are requested, so every position has a target.
        shuffle: break length ties randomly in :meth:`ordered_indices` (numpy's global RNG).
        targets: which targets to produce: "future" (next token, left-to-right LM), "self"
            (the input itself) and/or "past" (previous token); several give a list of targets.
        add_bos_token: prepend bos to the source (and tgt bos to the target).
        fixed_pad_length: pad batches to at least this length.
        pad_to_bsz: pad batches with pad-only rows up to this batch size.
    """

    def __init__(
        self,
        dataset: Any,
        sizes: Sequence[int] | np.ndarray,
        src_vocab: _Vocab,
        tgt_vocab: _Vocab | None = None,
        add_eos_for_other_targets: bool = False,
        shuffle: bool = False,
        targets: Sequence[str] | None = None,
        add_bos_token: bool = False,
        fixed_pad_length: int | None = None,
        pad_to_bsz: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.sizes = np.array(sizes)
        self.vocab = src_vocab
        self.tgt_vocab = tgt_vocab or src_vocab
        self.add_eos_for_other_targets = add_eos_for_other_targets
        self.shuffle = shuffle
        self.add_bos_token = add_bos_token
        self.fixed_pad_length = fixed_pad_length
        self.pad_to_bsz = pad_to_bsz

        if targets is not None:
            unknown = [t for t in targets if t not in TARGET_KINDS]
            if unknown:
                raise ConfigError(f"unknown LM target(s) {unknown}; allowed values: {', '.join(TARGET_KINDS)}")
            targets = list(targets) or None
        self.targets = targets

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.targets is not None:
            source, future_target, past_target = self.dataset[index]
            source, target = self._make_source_target(source, future_target, past_target)
        else:
            source, target = self.dataset[index], None
        source, target = self._maybe_add_bos(source, target)
        return {"id": index, "source": source, "target": target}

    def _make_source_target(
        self, source: torch.Tensor, future_target: torch.Tensor, past_target: torch.Tensor
    ) -> tuple[torch.Tensor, Any]:
        assert self.targets is not None
        eos = self.vocab.eos()
        pad = self.vocab.pad()
        wants_self_or_past = "self" in self.targets or "past" in self.targets
        if self.add_eos_for_other_targets and wants_self_or_past and source[-1] != eos:
            # without a final eos, the "self"/"past" targets would have nothing to predict at the
            # end; append one and pad the future target to keep the lengths equal
            source = torch.cat([source, source.new([eos])])
            if "future" in self.targets:
                future_target = torch.cat([future_target, future_target.new([pad])])
            if "past" in self.targets:
                # the first past token lies before the sentence (only meaningful in "none" break
                # mode), so it becomes pad
                past_target = torch.cat([past_target.new([pad]), past_target[1:], source[-2, None]])

        by_kind = {"self": source, "future": future_target, "past": past_target}
        chosen = [by_kind[t] for t in self.targets]
        target: Any = chosen[0] if len(chosen) == 1 else chosen
        return source, self._filter_vocab(target)

    def _maybe_add_bos(self, source: torch.Tensor, target: Any) -> tuple[torch.Tensor, Any]:
        if self.add_bos_token:
            source = torch.cat([source.new([self.vocab.bos()]), source])
            if target is not None:
                target = torch.cat([target.new([self.tgt_vocab.bos()]), target])
        return source, target

    def _filter_vocab(self, target: Any) -> Any:
        if len(self.tgt_vocab) == len(self.vocab):
            return target

        def replace_oov(t: torch.Tensor) -> torch.Tensor:
            oov = t.ge(len(self.tgt_vocab))
            if oov.any():
                t = t.masked_fill(oov, self.tgt_vocab.unk())
            return t

        if isinstance(target, list):
            return [replace_oov(t) for t in target]
        return replace_oov(target)

    def collater(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Merge samples into a batch: ``id``, ``nsentences``, ``ntokens``, ``net_input``
        (``src_tokens`` B x T right-padded, ``src_lengths``) and ``target`` (B x T)."""
        return collate(samples, self.vocab.pad(), self.vocab.eos(), self.fixed_pad_length, self.pad_to_bsz)

    def num_tokens(self, index: int) -> int:
        return int(self.sizes[index])

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        return self.sizes[indices]

    def size(self, index: int) -> int:
        return int(self.sizes[index])

    def ordered_indices(self) -> np.ndarray:
        """Indices sorted by size; ties in random order (numpy's global RNG) when shuffling.

        The caller seeds the RNG (``numpy_seed(seed, epoch)``) so the order is reproducible.
        """
        if self.shuffle:
            tie_break = np.random.permutation(len(self))
        else:
            tie_break = np.arange(len(self))
        return np.lexsort([tie_break, self.sizes])

    @property
    def supports_prefetch(self) -> bool:
        return getattr(self.dataset, "supports_prefetch", False)

    def prefetch(self, indices: np.ndarray) -> None:
        self.dataset.prefetch(indices)
