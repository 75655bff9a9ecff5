"""Language tokens of the multilingual tasks: their spelling (`__en__`, or mBART's `[en_XX]`) and the
dictionary rows they take, appended in fairseq's order so that a fairseq-trained model's embeddings line up."""

from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

from fairseq_lite.errors import ConfigError

__all__ = ["EncoderLangtok", "LangTokSpec", "LangTokStyle", "augment_dictionary", "get_lang_tok"]


class EncoderLangtok(Enum):
    """Which language's token goes in front of the source (--encoder-langtok)."""

    src = "src"
    tgt = "tgt"


class LangTokSpec(Enum):
    main = "main"
    mono_dae = "mono_dae"


class LangTokStyle(Enum):
    multilingual = "multilingual"
    mbart = "mbart"


TOKEN_STYLES = {LangTokStyle.mbart.value: "[{}]", LangTokStyle.multilingual.value: "__{}__"}


def get_lang_tok(lang: str, lang_tok_style: str, spec: str = LangTokSpec.main.value) -> str:
    """The token of `lang`: `__en__` (multilingual) or `[en_XX]` (mbart, whose language codes carry the
    region); a spec ending in "dae" or "mined" names the data type's own token (`__en_dae__`)."""
    if lang_tok_style not in TOKEN_STYLES:
        raise ConfigError(f"lang_tok_style={lang_tok_style!r} is invalid: it must be one of: {', '.join(TOKEN_STYLES)}")
    if spec.endswith("dae"):
        lang = f"{lang}_dae"
    elif spec.endswith("mined"):
        lang = f"{lang}_mined"
    return TOKEN_STYLES[lang_tok_style].format(lang)


def augment_dictionary(
    dictionary: Any,
    language_list: Sequence[str],
    lang_tok_style: str,
    langtoks_specs: Sequence[str] = (LangTokSpec.main.value,),
    extra_data: Mapping[str, str] | None = None,
) -> None:
    """Append every language's token to `dictionary`, spec by spec in the language list's order (that
    order fixes the token ids), then `<mask>` for mBART style or denoising data, as fairseq does."""
    for spec in langtoks_specs:
        for language in language_list:
            dictionary.add_symbol(get_lang_tok(language, lang_tok_style, spec))
    if lang_tok_style == LangTokStyle.mbart.value or (
        extra_data is not None and LangTokSpec.mono_dae.value in extra_data
    ):
        dictionary.add_symbol("<mask>")
