"""Data: dictionaries, indexed datasets, binarization, and the dataset classes fairseq plugins
import from ``fairseq.data`` (under the same names, with fairseq 0.12.2's signatures)."""

from fairseq_lite.data import data_utils, indexed_dataset, iterators
from fairseq_lite.data.append_token_dataset import AppendTokenDataset
from fairseq_lite.data.base_wrapper_dataset import BaseWrapperDataset
from fairseq_lite.data.concat_dataset import ConcatDataset
from fairseq_lite.data.dictionary import Dictionary
from fairseq_lite.data.fairseq_dataset import FairseqDataset
from fairseq_lite.data.fairseq_iterable_dataset import FairseqIterableDataset
from fairseq_lite.data.id_dataset import IdDataset
from fairseq_lite.data.indexed_dataset import (
    MMapIndexedDataset,
    MMapIndexedDatasetBuilder,
    best_fitting_int_dtype,
)
from fairseq_lite.data.iterators import CountingIterator, EpochBatchIterator, GroupedIterator, ShardedIterator
from fairseq_lite.data.language_pair_dataset import LanguagePairDataset
from fairseq_lite.data.list_dataset import ListDataset
from fairseq_lite.data.lm_context_window_dataset import LMContextWindowDataset
from fairseq_lite.data.monolingual_dataset import MonolingualDataset
from fairseq_lite.data.nested_dictionary_dataset import NestedDictionaryDataset
from fairseq_lite.data.num_samples_dataset import NumSamplesDataset
from fairseq_lite.data.numel_dataset import NumelDataset
from fairseq_lite.data.pad_dataset import LeftPadDataset, PadDataset, RightPadDataset
from fairseq_lite.data.prepend_token_dataset import PrependTokenDataset
from fairseq_lite.data.raw_label_dataset import RawLabelDataset
from fairseq_lite.data.raw_text_dataset import IndexedRawTextDataset
from fairseq_lite.data.resampling_dataset import ResamplingDataset
from fairseq_lite.data.round_robin_zip_datasets import RoundRobinZipDatasets
from fairseq_lite.data.shorten_dataset import RandomCropDataset, TruncateDataset
from fairseq_lite.data.sort_dataset import SortDataset
from fairseq_lite.data.strip_token_dataset import StripTokenDataset
from fairseq_lite.data.subsample_dataset import SubsampleDataset
from fairseq_lite.data.token_block_dataset import TokenBlockDataset
from fairseq_lite.data.transform_eos_lang_pair_dataset import TransformEosLangPairDataset

__all__ = [
    "AppendTokenDataset",
    "BaseWrapperDataset",
    "ConcatDataset",
    "CountingIterator",
    "Dictionary",
    "EpochBatchIterator",
    "FairseqDataset",
    "FairseqIterableDataset",
    "GroupedIterator",
    "IdDataset",
    "LMContextWindowDataset",
    "LanguagePairDataset",
    "LeftPadDataset",
    "ListDataset",
    "MMapIndexedDataset",
    "MMapIndexedDatasetBuilder",
    "MonolingualDataset",
    "NestedDictionaryDataset",
    "NumSamplesDataset",
    "NumelDataset",
    "PadDataset",
    "PrependTokenDataset",
    "RandomCropDataset",
    "RawLabelDataset",
    "IndexedRawTextDataset",
    "ResamplingDataset",
    "RoundRobinZipDatasets",
    "RightPadDataset",
    "ShardedIterator",
    "SortDataset",
    "StripTokenDataset",
    "SubsampleDataset",
    "TokenBlockDataset",
    "TransformEosLangPairDataset",
    "TruncateDataset",
    "best_fitting_int_dtype",
    "data_utils",
    "indexed_dataset",
    "iterators",
]
