"""A plugin in fairseq's add_args style that extends the built-in Transformer and translation task, as
fairseq plugins do: `TransformerModel.add_args(parser)` then its own flag, `super().build_model(args, task)`,
its own decoder from `build_decoder`, an architecture that calls `base_architecture(args)`, and a task
that extends `TranslationTask.add_args`. Only the package name differs from a fairseq plugin."""

from fairseq_lite.logging import metrics
from fairseq_lite.models import register_model, register_model_architecture
from fairseq_lite.models.transformer import TransformerDecoder, TransformerModel, base_architecture
from fairseq_lite.tasks import register_task
from fairseq_lite.tasks.translation import TranslationTask


class TemperedDecoder(TransformerDecoder):
    """Divides the logits by a temperature. It reads encoder_out as fairseq's decoders may: one row per
    hypothesis, time-first (it does not opt in to grouped encoder outputs in beam search)."""

    def __init__(self, args, dictionary, embed_tokens, no_encoder_attn=False):
        super().__init__(args, dictionary, embed_tokens, no_encoder_attn)
        self.logit_temperature = args.logit_temperature

    def forward(self, prev_output_tokens, encoder_out=None, incremental_state=None, **kwargs):
        encoder_rows = encoder_out["encoder_out"][0].size(1)
        if encoder_rows != prev_output_tokens.size(0):
            raise RuntimeError(f"{encoder_rows} encoder rows for {prev_output_tokens.size(0)} hypotheses")
        x, extra = super().forward(prev_output_tokens, encoder_out, incremental_state, **kwargs)
        return x / self.logit_temperature, extra


@register_model("tempered_transformer")
class TemperedTransformer(TransformerModel):
    @staticmethod
    def add_args(parser):
        TransformerModel.add_args(parser)
        parser.add_argument("--logit-temperature", type=float, metavar="T", help="divide the logits by T")

    @classmethod
    def build_model(cls, args, task):
        tempered_transformer(args)
        return super().build_model(args, task)

    @classmethod
    def build_decoder(cls, args, tgt_dict, embed_tokens):
        return TemperedDecoder(args, tgt_dict, embed_tokens, no_encoder_attn=getattr(args, "no_cross_attention", False))


@register_model_architecture("tempered_transformer", "tempered_transformer")
def tempered_transformer(args):
    args.logit_temperature = getattr(args, "logit_temperature", 2.0)
    base_architecture(args)


@register_model_architecture("tempered_transformer", "tempered_transformer_tiny")
def tempered_transformer_tiny(args):
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 32)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 64)
    args.encoder_layers = getattr(args, "encoder_layers", 1)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 2)
    args.decoder_layers = getattr(args, "decoder_layers", 1)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 2)
    tempered_transformer(args)


@register_task("counted_translation")
class CountedTranslationTask(TranslationTask):
    """Translation that also logs the number of target tokens per update, times its own flag."""

    @staticmethod
    def add_args(parser):
        TranslationTask.add_args(parser)
        parser.add_argument("--count-scale", type=float, default=1.0, help="multiply the logged count by this")

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        ntokens = sum(log.get("ntokens", 0) for log in logging_outputs)
        metrics.log_scalar("scaled_ntokens", ntokens * self.args.count_scale, round=1)
