"""fairseq's multilingual Transformer (`--arch multilingual_transformer*`, with `--task multilingual_translation`):
one Transformer encoder-decoder per language pair, all of one architecture, whose encoders, decoders and
embeddings may be shared between the pairs (`--share-encoders`, `--share-decoders`, `--share-*-embeddings`).

With `--share-decoders` on de-en,fr-en the two pairs hold the same decoder object; its weights appear in the
state dict under both pairs' names, as in fairseq, so checkpoints are interchangeable.
"""

import argparse
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from fairseq_lite.dataclass.base import cfg_field
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.models.fairseq_model import FairseqMultiModel
from fairseq_lite.models.transformer import (
    TransformerConfig,
    TransformerModel,
    _WithOverrides,
    base_architecture,
    complete_legacy_args,
)
from fairseq_lite.registry import register_model, register_model_architecture


@dataclass
class MultilingualTransformerConfig(TransformerConfig):
    share_encoder_embeddings: bool = cfg_field(False, help="share encoder embeddings across languages")
    share_decoder_embeddings: bool = cfg_field(False, help="share decoder embeddings across languages")
    share_encoders: bool = cfg_field(False, help="share encoders across languages")
    share_decoders: bool = cfg_field(False, help="share decoders across languages")


@register_model("multilingual_transformer", dataclass=MultilingualTransformerConfig)
class MultilingualTransformerModel(FairseqMultiModel):
    """Requires a task with per-language dictionaries (`task.dicts`) and the pairs to build
    (`task.model_lang_pairs`), as multilingual_translation has."""

    def __init__(self, encoders: dict, decoders: dict, cfg: Any = None):
        super().__init__(encoders, decoders)
        self.cfg = cfg
        self.args = cfg

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        TransformerModel.check_config(cfg)

    @classmethod
    def build_model(cls, cfg: Any, task: Any) -> "MultilingualTransformerModel":
        if isinstance(cfg, argparse.Namespace):
            base_multilingual_architecture(cfg)
            cfg = complete_legacy_args(cfg)
        cls.check_config(cfg)
        pairs = list(getattr(task, "model_lang_pairs", None) or [])
        if not pairs or not hasattr(task, "dicts"):
            raise ConfigError(
                f"{key('model.arch')}=multilingual_transformer needs {key('task._name')}=multilingual_translation "
                f"(a dictionary per language and --lang-pairs)"
            )
        src_langs = [pair.split("-")[0] for pair in pairs]
        tgt_langs = [pair.split("-")[1] for pair in pairs]
        share_encoder_embeddings = cfg.share_encoder_embeddings or cfg.share_encoders
        share_decoder_embeddings = cfg.share_decoder_embeddings or cfg.share_decoders
        build_cfg = cfg

        def build_embedding(dictionary: Any, embed_dim: int, path: str | None = None) -> Any:
            return TransformerModel.build_embedding(cfg, dictionary, embed_dim)

        def shared(langs: list[str], embed_dim: int, flag: str) -> Any:
            try:
                return FairseqMultiModel.build_shared_embeddings(task.dicts, langs, embed_dim, build_embedding)
            except ValueError:
                raise ConfigError(
                    f"{key('model.' + flag)} requires one dictionary for {', '.join(sorted(set(langs)))}: binarize "
                    f"them with the same dictionary (fairseq-preprocess --srcdict/--tgtdict)"
                ) from None

        shared_encoder_embed = shared_decoder_embed = None
        if cfg.share_all_embeddings:
            shared_encoder_embed = shared(list(task.langs), cfg.encoder_embed_dim, "share_all_embeddings")
            shared_decoder_embed = shared_encoder_embed
            build_cfg = _WithOverrides(cfg, share_decoder_input_output_embed=True)  # as fairseq: outputs tied too
        else:
            if share_encoder_embeddings:
                shared_encoder_embed = shared(src_langs, cfg.encoder_embed_dim, "share_encoder_embeddings")
            if share_decoder_embeddings:
                shared_decoder_embed = shared(tgt_langs, cfg.decoder_embed_dim, "share_decoder_embeddings")

        lang_encoders: dict[str, Any] = {}
        lang_decoders: dict[str, Any] = {}

        def encoder_for(lang: str) -> Any:
            if lang not in lang_encoders:
                embed = shared_encoder_embed or build_embedding(task.dicts[lang], cfg.encoder_embed_dim)
                lang_encoders[lang] = TransformerModel.build_encoder(build_cfg, task.dicts[lang], embed)
            return lang_encoders[lang]

        def decoder_for(lang: str) -> Any:
            if lang not in lang_decoders:
                embed = shared_decoder_embed or build_embedding(task.dicts[lang], cfg.decoder_embed_dim)
                lang_decoders[lang] = TransformerModel.build_decoder(build_cfg, task.dicts[lang], embed)
            return lang_decoders[lang]

        # built in fairseq's order (the shared ones first), so that a seed gives fairseq's initial weights
        shared_encoder = encoder_for(src_langs[0]) if cfg.share_encoders else None
        shared_decoder = decoder_for(tgt_langs[0]) if cfg.share_decoders else None
        encoders, decoders = OrderedDict(), OrderedDict()
        for pair, src, tgt in zip(pairs, src_langs, tgt_langs):
            encoders[pair] = shared_encoder or encoder_for(src)
            decoders[pair] = shared_decoder or decoder_for(tgt)
        return cls(encoders, decoders, cfg)


@register_model_architecture("multilingual_transformer", "multilingual_transformer")
def base_multilingual_architecture(args: Any) -> None:
    base_architecture(args)
    args.share_encoder_embeddings = getattr(args, "share_encoder_embeddings", False)
    args.share_decoder_embeddings = getattr(args, "share_decoder_embeddings", False)
    args.share_encoders = getattr(args, "share_encoders", False)
    args.share_decoders = getattr(args, "share_decoders", False)


@register_model_architecture("multilingual_transformer", "multilingual_transformer_iwslt_de_en")
def multilingual_transformer_iwslt_de_en(args: Any) -> None:
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 512)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 1024)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 4)
    args.encoder_layers = getattr(args, "encoder_layers", 6)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 512)
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", 1024)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 4)
    args.decoder_layers = getattr(args, "decoder_layers", 6)
    base_multilingual_architecture(args)
