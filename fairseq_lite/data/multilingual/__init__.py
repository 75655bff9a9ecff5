"""fairseq's `fairseq.data.multilingual`: language tokens, sampling of language pairs, the sampled datasets
and the data manager of the translation_multi_simple_epoch task."""

from fairseq_lite.data.multilingual.multilingual_data_manager import MultilingualDatasetManager
from fairseq_lite.data.multilingual.multilingual_utils import (
    EncoderLangtok,
    LangTokSpec,
    LangTokStyle,
    augment_dictionary,
    get_lang_tok,
)
from fairseq_lite.data.multilingual.sampled_multi_dataset import (
    CollateFormat,
    SampledMultiDataset,
    default_virtual_size_func,
)
from fairseq_lite.data.multilingual.sampled_multi_epoch_dataset import SampledMultiEpochDataset
from fairseq_lite.data.multilingual.sampling_method import SamplingMethod

__all__ = [
    "CollateFormat",
    "EncoderLangtok",
    "LangTokSpec",
    "LangTokStyle",
    "MultilingualDatasetManager",
    "SampledMultiDataset",
    "SampledMultiEpochDataset",
    "SamplingMethod",
    "augment_dictionary",
    "default_virtual_size_func",
    "get_lang_tok",
]
