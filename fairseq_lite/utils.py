"""Small helpers every stage shares: which device a run uses, moving a batch onto it, and the helpers
fairseq's `fairseq.utils` gives plugins, with fairseq's names and signatures (docs/porting.md lists them).
"""

import builtins
import contextlib
import importlib
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor

from fairseq_lite.errors import ConfigError, key


def select_device(cfg: Any) -> torch.device:
    """The CUDA device `distributed_training.device_id` unless there is none or `common.cpu` is set."""
    if torch.cuda.is_available() and not cfg.common.cpu:
        return torch.device("cuda", cfg.distributed_training.device_id)
    return torch.device("cpu")


def move_to_device(sample: Any, device: torch.device) -> Any:
    """The same nested dicts/lists/tuples of tensors, on `device` (asynchronously from pinned memory)."""
    if torch.is_tensor(sample):
        return sample.to(device, non_blocking=True)
    if isinstance(sample, dict):
        return {k: move_to_device(v, device) for k, v in sample.items()}
    if isinstance(sample, (list, tuple)):
        return type(sample)(move_to_device(v, device) for v in sample)
    return sample


def get_perplexity(loss: float | None, round: int = 2, base: float = 2) -> float:
    """base**loss rounded to `round` digits (inf when it overflows), as fairseq logs ppl."""
    if loss is None:
        return 0.0
    try:
        return builtins.round(base**loss, round)
    except OverflowError:
        return float("inf")


# --- samples and tensors --------------------------------------------------------------------------
def apply_to_sample(f: Callable[[Tensor], Any], sample: Any) -> Any:
    """`f` applied to every tensor in nested dicts/lists/tuples/sets (other values kept)."""
    if torch.is_tensor(sample):
        return f(sample)
    if isinstance(sample, dict):
        return type(sample)((k, apply_to_sample(f, v)) for k, v in sample.items())
    if isinstance(sample, (list, tuple)):
        values = [apply_to_sample(f, v) for v in sample]
        return type(sample)(*values) if hasattr(sample, "_fields") else type(sample)(values)
    if isinstance(sample, set):
        return {apply_to_sample(f, v) for v in sample}
    return sample


def move_to_cuda(sample: Any, device: torch.device | None = None) -> Any:
    device = device or torch.cuda.current_device()
    return apply_to_sample(lambda t: t.to(device=device, non_blocking=True), sample)


def move_to_cpu(sample: Any) -> Any:
    # Half precision goes back as float, as fairseq does (numpy and most CPU kernels want fp32).
    return apply_to_sample(lambda t: t.float().cpu() if t.dtype in (torch.float16, torch.bfloat16) else t.cpu(), sample)


def item(tensor: Any) -> Any:
    """A Python number from a one-element tensor (other values as they are)."""
    if hasattr(tensor, "item"):
        return tensor.item()
    if hasattr(tensor, "__getitem__") and not isinstance(tensor, (str, dict)):
        return tensor[0]
    return tensor


def strip_pad(tensor: Tensor, pad: int) -> Tensor:
    return tensor[tensor.ne(pad)]


def make_positions(tensor: Tensor, padding_idx: int, onnx_trace: bool = False) -> Tensor:
    """Positions of the non-pad tokens, counted from padding_idx + 1; pads get padding_idx."""
    mask = tensor.ne(padding_idx).int()
    return (torch.cumsum(mask, dim=1).type_as(mask) * mask).long() + padding_idx


def buffered_arange(max: int) -> Tensor:
    return torch.arange(max)


def convert_padding_direction(
    src_tokens: Tensor, padding_idx: int, right_to_left: bool = False, left_to_right: bool = False
) -> Tensor:
    """Move the padding of each row from one side to the other (exactly one of the two flags)."""
    if right_to_left == left_to_right:
        raise ValueError("convert_padding_direction: set exactly one of right_to_left and left_to_right")
    pad_mask = src_tokens.eq(padding_idx)
    if not pad_mask.any():
        return src_tokens
    if left_to_right and not pad_mask[:, 0].any():
        return src_tokens  # already right-padded
    if right_to_left and not pad_mask[:, -1].any():
        return src_tokens  # already left-padded
    max_len = src_tokens.size(1)
    arange = torch.arange(max_len, device=src_tokens.device).expand_as(src_tokens)
    num_pads = pad_mask.long().sum(dim=1, keepdim=True)
    shifted = arange - num_pads if right_to_left else arange + num_pads
    index = torch.remainder(shifted, max_len)
    return src_tokens.gather(1, index)


def fill_with_neg_inf(t: Tensor) -> Tensor:
    return t.float().fill_(float("-inf")).type_as(t)


def index_put(tensor: Tensor, indices: Tensor, value: Any) -> Tensor:
    tensor[indices] = value
    return tensor


def softmax(x: Tensor, dim: int, onnx_trace: bool = False) -> Tensor:
    return F.softmax(x.float(), dim=dim, dtype=torch.float32)


def log_softmax(x: Tensor, dim: int, onnx_trace: bool = False) -> Tensor:
    return F.log_softmax(x.float(), dim=dim, dtype=torch.float32)


def has_parameters(module: torch.nn.Module) -> bool:
    return any(True for _ in module.parameters())


@contextlib.contextmanager
def model_eval(model: torch.nn.Module) -> Iterator[None]:
    """The model in eval mode inside the block, its training mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


# --- incremental decoding state -------------------------------------------------------------------
def get_incremental_state(module: Any, incremental_state: dict[str, Any] | None, key: str) -> Any:
    """`module`'s value of `key` in the decoding cache (FairseqIncrementalState keys it per module)."""
    return module.get_incremental_state(incremental_state, key)


def set_incremental_state(module: Any, incremental_state: dict[str, Any] | None, key: str, value: Any) -> Any:
    if incremental_state is not None:
        result = module.set_incremental_state(incremental_state, key, value)
        if result is not None:
            incremental_state = result
    return incremental_state


# --- activations ------------------------------------------------------------------------------------
def gelu_accurate(x: Tensor) -> Tensor:
    # The tanh approximation of GELU (fairseq's `gelu_accurate`, originally from BERT/GPT).
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


def gelu(x: Tensor) -> Tensor:
    return F.gelu(x.float()).type_as(x)  # the exact (erf) form, as fairseq's `gelu`


def get_available_activation_fns() -> list[str]:
    return ["relu", "gelu", "gelu_fast", "gelu_accurate", "tanh", "linear"]


def get_activation_fn(activation: str) -> Callable[[Tensor], Tensor]:
    """The function fairseq's activation name stands for."""
    name = str(activation)
    if name == "relu":
        return F.relu
    if name == "gelu":
        return F.gelu
    if name in ("gelu_fast", "gelu_accurate"):  # fairseq renamed gelu_fast to gelu_accurate
        return gelu_accurate
    if name == "tanh":
        return torch.tanh
    if name == "linear":
        return lambda x: x
    choices = ", ".join(get_available_activation_fns())
    raise RuntimeError(f"activation_fn '{name}' not supported; choose from: {choices}")


# --- values from strings and configs --------------------------------------------------------------
def eval_bool(x: Any, default: bool = False) -> bool:
    if x is None:
        return default
    try:
        return bool(eval(str(x)))  # fairseq's semantics: "True", "1", "0", "False"
    except Exception:
        return default


def eval_str_list(x: Any, type: Callable[[Any], Any] = float) -> list[Any] | None:
    if x is None:
        return None
    if isinstance(x, str):
        x = eval(x)
    try:
        return list(builtins.map(type, x))
    except TypeError:
        return [type(x)]


def eval_str_dict(x: Any, type: Callable[[Any], Any] = dict) -> Any:
    if x is None:
        return None
    if isinstance(x, str):
        x = eval(x)
    return x


def safe_hasattr(obj: Any, k: str) -> bool:
    """hasattr that is False for a key set to None too (a config field left unset), as fairseq's."""
    return getattr(obj, k, None) is not None


def safe_getattr(obj: Any, k: str, default: Any = None) -> Any:
    """getattr; on an OmegaConf config also `default` for a field set to None (fairseq's rule)."""
    if OmegaConf.is_config(obj):
        return obj[k] if k in obj and obj[k] is not None else default
    return getattr(obj, k, default)


def split_paths(paths: str, separator: str = ":") -> list[str]:
    """Several paths joined by ':' (fairseq's task.data), split; "a::b" keeps its empty part, as fairseq."""
    return paths.split(separator) if "://" not in paths else paths.split("|")


def resolve_max_positions(*args: Any) -> Any:
    """The tightest of several max-position limits (ints, tuples, dicts of them; None: no limit)."""

    def smaller(a: Any, b: Any) -> Any:
        if a is None:
            return b
        if b is None:
            return a
        if isinstance(a, dict) and isinstance(b, dict):
            return {k: smaller(a.get(k), b.get(k)) for k in set(a) | set(b)}
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return min(a, b)
        if isinstance(a, (int, float)):
            a = tuple([a] * len(b))
        if isinstance(b, (int, float)):
            b = tuple([b] * len(a))
        return tuple(smaller(x, y) for x, y in zip(a, b))

    result = None
    for arg in args:
        result = smaller(result, arg)
    return result


def deprecation_warning(message: str, stacklevel: int = 3) -> None:
    warnings.warn(message, DeprecationWarning, stacklevel=stacklevel)


# --- embeddings from text files -------------------------------------------------------------------
def parse_embedding(embed_path: str) -> dict[str, Tensor]:
    """A word2vec/GloVe text file (a header line "count dim", then "word v1 v2 ...") as {word: vector}."""
    embed_dict = {}
    with open(embed_path) as f:
        next(f)  # the header
        for line in f:
            pieces = line.rstrip().split(" ")
            embed_dict[pieces[0]] = torch.tensor([float(w) for w in pieces[1:]])
    return embed_dict


def load_embedding(embed_dict: dict[str, Tensor], vocab: Any, embedding: torch.nn.Embedding) -> torch.nn.Embedding:
    """Copy the vectors of the words `vocab` has into `embedding`'s rows."""
    for idx in range(len(vocab)):
        token = vocab[idx]
        if token in embed_dict:
            embedding.weight.data[idx] = embed_dict[token]
    return embedding


def print_embed_overlap(embed_dict: dict[str, Tensor], vocab_dict: Any) -> None:
    overlap = len(set(embed_dict) & set(vocab_dict.symbols))
    print(f"found {overlap}/{len(vocab_dict)} types in embedding file")


# --- plugins ----------------------------------------------------------------------------------------
def import_user_module(args: Any) -> None:
    """Import a plugin directory: `args.user_dir` (a Namespace or config, as fairseq's) or the path itself.
    Importing it registers its components; importing it again is a no-op."""
    user_dir = args if isinstance(args, (str, os.PathLike)) else getattr(args, "user_dir", None)
    if not user_dir:
        return
    path = Path(os.path.expanduser(str(user_dir))).resolve()
    if not path.exists():
        raise ConfigError(f"{key('common.user_dir')}: '{user_dir}' does not exist")
    name = path.name
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__file__", None) and Path(module.__file__).resolve().parent == path:
        return  # already imported: importing twice would re-run its registrations
    if module is not None:
        raise ConfigError(
            f"{key('common.user_dir')}: cannot import '{path}' as module '{name}', a different module "
            f"of that name is already imported; rename the directory"
        )
    sys.path.insert(0, str(path.parent))
    try:
        importlib.import_module(name)
    finally:
        sys.path.remove(str(path.parent))


def get_token_to_word_mapping(tokens: Tensor, exclude_list: list[int]) -> dict[int, int]:
    """Position -> 1-based index of the word it belongs to, counting only tokens not in exclude_list."""
    counts = torch.cumsum(torch.tensor([int(int(t) not in exclude_list) for t in tokens]), dim=0)
    return dict(enumerate(counts.tolist()))


def extract_hard_alignment(attn: Tensor, src_sent: Tensor, tgt_sent: Tensor, pad: int, eos: int) -> list[tuple]:
    """fairseq's hard alignment: for each target token (not pad/eos), the source token (not pad/eos) it
    attends to most, as (source index, target index) pairs of 0-based positions among the real tokens.
    attn: target length x source length."""
    tgt_valid = ((tgt_sent != pad) & (tgt_sent != eos)).nonzero(as_tuple=False).squeeze(dim=-1)
    src_invalid = ((src_sent == pad) | (src_sent == eos)).nonzero(as_tuple=False).squeeze(dim=-1)
    if len(tgt_valid) == 0 or len(src_invalid) >= len(src_sent):
        return []
    src_word = get_token_to_word_mapping(src_sent, [eos, pad])
    tgt_word = get_token_to_word_mapping(tgt_sent, [eos, pad])
    scores = attn[tgt_valid].clone()
    scores[:, src_invalid] = float("-inf")
    best = scores.argmax(dim=1)
    return [(src_word[int(s)] - 1, tgt_word[int(t)] - 1) for t, s in zip(tgt_valid, best)]


def extract_soft_alignment(attn: Tensor, src_sent: Tensor, tgt_sent: Tensor, pad: int, eos: int) -> list[list[str]]:
    """fairseq's soft alignment: for each non-pad target token, its attention over the non-pad source
    tokens, as strings with 6 decimals. attn: target length x source length."""
    tgt_valid = (tgt_sent != pad).nonzero(as_tuple=False)
    src_valid = (src_sent != pad).nonzero(as_tuple=False).squeeze(dim=-1)
    if len(tgt_valid) == 0 or len(src_valid) == 0:
        return []
    return [[f"{p:.6f}" for p in row.tolist()] for row in attn[tgt_valid, src_valid]]


def load_align_dict(replace_unk: str | None) -> dict[str, str] | None:
    """--replace-unk's dictionary: None (no replacement), {} (copy the aligned source word: the flag alone),
    or "source target" pairs read from the file it names."""
    if replace_unk is None:
        return None
    if not replace_unk:
        return {}
    if not os.path.isfile(replace_unk):
        raise ConfigError(f"--replace-unk {replace_unk}: no alignment dictionary at that path")
    align_dict = {}
    with open(replace_unk, encoding="utf-8") as f:
        for line in f:
            cols = line.split()
            if len(cols) >= 2:
                align_dict[cols[0]] = cols[1]
    return align_dict


def replace_unk(hypo_str: str, src_str: str, alignment: list[tuple[int, int]], align_dict: dict, unk: str) -> str:
    """Each `unk` of the hypothesis becomes the source word it is aligned to (hard alignment pairs of
    (source index, target index)), or that word's entry in `align_dict`."""
    hypo_tokens = hypo_str.split()
    src_tokens = src_str.split() + ["<eos>"]
    source_of = {tgt: src for src, tgt in alignment}
    for i, token in enumerate(hypo_tokens):
        if token == unk and i in source_of and source_of[i] < len(src_tokens):
            src_token = src_tokens[source_of[i]]
            hypo_tokens[i] = align_dict.get(src_token, src_token)
    return " ".join(hypo_tokens)
