"""A LanguagePairDataset whose batches say their languages (--enable-lang-ids): fairseq's `src_lang_id` and
`tgt_lang_id` arguments of LanguagePairDataset, as a subclass."""

from typing import Any

import torch

from fairseq_lite.data.language_pair_dataset import LanguagePairDataset

__all__ = ["LangIdLanguagePairDataset"]


class LangIdLanguagePairDataset(LanguagePairDataset):
    """Batches get `net_input["src_lang_id"]` and `tgt_lang_id`, (batch, 1) tensors of the languages' ids
    in the task's language dictionary, as fairseq puts them there for a model that reads them."""

    def __init__(self, *args: Any, src_lang_id: int | None = None, tgt_lang_id: int | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.src_lang_id = src_lang_id
        self.tgt_lang_id = tgt_lang_id

    def collater(self, samples: list[dict[str, Any]], pad_to_length: dict[str, int] | None = None) -> dict[str, Any]:
        batch = super().collater(samples, pad_to_length=pad_to_length)
        if not batch:
            return batch
        src_tokens = batch["net_input"]["src_tokens"]
        bsz = src_tokens.size(0)
        if self.src_lang_id is not None:
            batch["net_input"]["src_lang_id"] = torch.full((bsz, 1), self.src_lang_id, dtype=src_tokens.dtype)
        if self.tgt_lang_id is not None:
            batch["tgt_lang_id"] = torch.full((bsz, 1), self.tgt_lang_id, dtype=src_tokens.dtype)
        return batch
