"""A plugin in fairseq's older style, as fairseq plugins are written: no dataclasses; flags declared by
`add_args(parser)`; components built from the flat `args` Namespace; an architecture function that
fills `args` with getattr. Only the package name differs from a fairseq plugin."""

import torch
import torch.nn as nn
from torch.optim import SGD

from fairseq_lite import utils
from fairseq_lite.criterions import LegacyFairseqCriterion, register_criterion
from fairseq_lite.criterions.cross_entropy import CrossEntropyCriterion
from fairseq_lite.models import FairseqDecoder, FairseqLanguageModel, register_model, register_model_architecture
from fairseq_lite.optim import LegacyFairseqOptimizer, register_optimizer


class GRUDecoder(FairseqDecoder):
    def __init__(self, dictionary, embed_dim, hidden_dim, dropout):
        super().__init__(dictionary)
        self.embed = nn.Embedding(len(dictionary), embed_dim, padding_idx=dictionary.pad())
        self.gru = nn.GRU(embed_dim, hidden_dim, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, len(dictionary))

    def forward(self, prev_output_tokens, encoder_out=None, **kwargs):
        x, _ = self.gru(self.dropout(self.embed(prev_output_tokens)))
        return self.out(self.dropout(x)), {"attn": None}


@register_model("legacy_gru_lm")
class LegacyGRULanguageModel(FairseqLanguageModel):
    @staticmethod
    def add_args(parser):
        parser.add_argument("--gru-embed-dim", type=int, metavar="N", help="dimension of the token embeddings")
        parser.add_argument("--gru-hidden-dim", type=int, metavar="N", help="dimension of the GRU state")
        parser.add_argument("--gru-dropout", type=float, default=0.1, help="dropout on embeddings and outputs")
        parser.add_argument("--gru-tie", action="store_true", help="(unused by this model) a store_true flag")

    @classmethod
    def build_model(cls, args, task):
        gru_tiny(args)  # as fairseq's models call their base architecture
        model = cls(GRUDecoder(task.target_dictionary, args.gru_embed_dim, args.gru_hidden_dim, args.gru_dropout))
        model.built_with = args
        return model

    def max_positions(self):
        return 1024


@register_model_architecture("legacy_gru_lm", "gru_tiny")
def gru_tiny(args):
    args.gru_embed_dim = getattr(args, "gru_embed_dim", 16)
    args.gru_hidden_dim = getattr(args, "gru_hidden_dim", args.gru_embed_dim * 2)
    args.gru_layers_hint = getattr(args, "gru_layers_hint", 1)  # set by the architecture, no flag


@register_criterion("legacy_scaled_ce")
class LegacyScaledCrossEntropy(LegacyFairseqCriterion):
    @staticmethod
    def add_args(parser):
        parser.add_argument("--loss-scale-factor", type=float, default=1.0, help="multiply the loss by this")

    def __init__(self, args, task):
        super().__init__(args, task)
        self.inner = CrossEntropyCriterion(task, sentence_avg=False)
        self.factor = args.loss_scale_factor

    def forward(self, model, sample, reduce=True):
        loss, sample_size, logging_output = self.inner(model, sample, reduce)
        return loss * self.factor, sample_size, logging_output

    @classmethod
    def reduce_metrics(cls, logging_outputs):
        CrossEntropyCriterion.reduce_metrics(logging_outputs)

    @staticmethod
    def logging_outputs_can_be_summed():
        return True


@register_optimizer("legacy_sgd")
class LegacySGD(LegacyFairseqOptimizer):
    def __init__(self, args, params):
        super().__init__(args)
        self._optimizer = SGD(params, **self.optimizer_config)

    @staticmethod
    def add_args(parser):
        parser.add_argument("--legacy-momentum", "--lm", default=0.0, type=float, metavar="M", help="momentum factor")
        parser.add_argument("--legacy-nesterov", default="False", type=utils.eval_bool, help="use Nesterov momentum")

    @property
    def optimizer_config(self):
        return {
            "lr": self.args.lr[0],
            "momentum": self.args.legacy_momentum,
            "nesterov": self.args.legacy_nesterov,
        }


__all__ = ["torch"]
