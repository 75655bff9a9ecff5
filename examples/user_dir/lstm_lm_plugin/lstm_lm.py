"""Model `toy_lstm_lm`: embedding -> LSTM layers -> (tied) output projection."""

from dataclasses import dataclass

import torch.nn as nn
import torch.nn.functional as F

from fairseq_lite.dataclass import FairseqDataclass, cfg_field
from fairseq_lite.models.fairseq_model import FairseqDecoder, FairseqLanguageModel
from fairseq_lite.registry import register_model, register_model_architecture


@dataclass
class LSTMLanguageModelConfig(FairseqDataclass):
    embed_dim: int = cfg_field(256, "embedding and hidden size")
    num_layers: int = cfg_field(2, "number of LSTM layers")
    dropout: float = cfg_field(0.1, "dropout on embeddings and between layers")
    share_embeddings: bool = cfg_field(True, "tie the output projection to the input embedding")


class LSTMDecoder(FairseqDecoder):
    def __init__(self, cfg, dictionary):
        super().__init__(dictionary)
        self.embed = nn.Embedding(len(dictionary), cfg.embed_dim, padding_idx=dictionary.pad())
        self.dropout = cfg.dropout
        self.lstm = nn.LSTM(
            cfg.embed_dim,
            cfg.embed_dim,
            cfg.num_layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
        )
        self.out = nn.Linear(cfg.embed_dim, len(dictionary), bias=False)
        if cfg.share_embeddings:
            self.out.weight = self.embed.weight

    def extract_features(self, prev_output_tokens, encoder_out=None, **kwargs):
        x = F.dropout(self.embed(prev_output_tokens), self.dropout, self.training)
        x, _ = self.lstm(x)
        return F.dropout(x, self.dropout, self.training), {}

    def output_layer(self, features):
        return self.out(features)


@register_model("toy_lstm_lm", dataclass=LSTMLanguageModelConfig)
class LSTMLanguageModel(FairseqLanguageModel):
    @classmethod
    def build_model(cls, cfg, task):
        return cls(LSTMDecoder(cfg, task.target_dictionary))


@register_model_architecture("toy_lstm_lm", "toy_lstm_lm_tiny")
def toy_lstm_lm_tiny(args) -> None:
    args.embed_dim = getattr(args, "embed_dim", 32)
    args.num_layers = getattr(args, "num_layers", 1)
    args.dropout = getattr(args, "dropout", 0.0)
