"""A model made for Hydra's `_target_`: configured by constructor arguments, its sub-modules built by Hydra.

`FeedForwardLM(task, embed_dim, head)` embeds each token, runs it through `head` (any torch.nn.Module,
e.g. the Hydra tutorial's `torch.nn.Sequential` of two Linear layers) and projects to the vocabulary:
it predicts the next token from the current one (a neural bigram model). It is a FairseqLanguageModel,
so the language_modeling task, the criterions, eval-lm and generation all take it.
"""

from typing import Any

import torch.nn as nn
from hydra.utils import instantiate
from omegaconf import DictConfig

from fairseq_lite.models import FairseqDecoder, FairseqLanguageModel


def output_width(module: nn.Module) -> int:
    """The width of what `module` returns: the out_features of its last Linear layer."""
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"head {type(module).__name__} has no Linear layer to tell its output width")
    return linears[-1].out_features


class FeedForwardDecoder(FairseqDecoder):
    def __init__(self, dictionary: Any, embed_dim: int, head: nn.Module):
        super().__init__(dictionary)
        self.embed = nn.Embedding(len(dictionary), embed_dim, padding_idx=dictionary.pad())
        self.head = head
        self.out = nn.Linear(output_width(head), len(dictionary))

    def extract_features(self, prev_output_tokens, encoder_out=None, **kwargs):
        return self.head(self.embed(prev_output_tokens)), {"attn": None}

    def output_layer(self, features):
        return self.out(features)


class FeedForwardLM(FairseqLanguageModel):
    def __init__(self, task: Any, embed_dim: int, head: nn.Module | DictConfig):
        # With `_recursive_: false` Hydra hands over the head's config instead: build it here.
        self.head_was_built_by_hydra = isinstance(head, nn.Module)
        if isinstance(head, DictConfig):
            head = instantiate(head)
        super().__init__(FeedForwardDecoder(task.target_dictionary, embed_dim, head))
