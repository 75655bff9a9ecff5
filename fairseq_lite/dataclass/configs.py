"""The top-level config: fairseq's groups, each a typed dataclass with fairseq's field names.

Component slots (task, model, criterion, ...) are `Any` here: Hydra fills them with the dataclass of
the component the user selects (see fairseq_lite/options/initialize.py), so this module never
imports a component and components never import it.
"""

import sys
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import II

from fairseq_lite.dataclass.base import ChoiceEnum, FairseqDataclass, cfg_field

LOG_FORMAT_CHOICES = ChoiceEnum(["json", "none", "simple", "tqdm"])
DDP_BACKEND_CHOICES = ChoiceEnum(["pytorch_ddp", "c10d", "no_c10d", "legacy_ddp", "fully_sharded"])
DATASET_IMPL_CHOICES = ChoiceEnum(["mmap"])
COMPILE_MODE_CHOICES = ChoiceEnum(["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"])


@dataclass
class CommonConfig(FairseqDataclass):
    no_progress_bar: bool = cfg_field(False, "disable progress bar")
    log_interval: int = cfg_field(100, "log progress every N batches (when progress bar is disabled)")
    log_format: LOG_FORMAT_CHOICES | None = cfg_field(
        None, "log format to use (default: tqdm on a terminal, else simple)"
    )
    log_file: str | None = cfg_field(None, "log file to copy metrics to")
    tensorboard_logdir: str | None = cfg_field(None, "path to save logs for tensorboard")
    seed: int = cfg_field(1, "pseudo random number generator seed")
    cpu: bool = cfg_field(False, "use CPU instead of CUDA")
    bf16: bool = cfg_field(False, "use bfloat16 (autocast; works on CPU and CUDA)")
    fp16: bool = cfg_field(
        False, "use FP16 (CUDA only): an fp16 model with fp32 master weights and dynamic loss scaling"
    )
    memory_efficient_fp16: bool = cfg_field(
        False,
        "use a memory-efficient version of FP16 training: no fp32 copy of the "
        "weights (implies --fp16; adam, adafactor, adamax, lamb, nag and sgd)",
    )
    fp16_no_flatten_grads: bool = cfg_field(
        False,
        "--fp16: one fp32 master tensor per parameter instead of one flat buffer per parameter group (optimizers "
        "whose update depends on each tensor's shape or norm, adafactor and lamb, always get them)",
    )
    amp: bool = cfg_field(False, "use automatic mixed precision (torch.autocast + GradScaler)")
    fp16_init_scale: int = cfg_field(2**7, "default FP16 loss scale")
    fp16_scale_window: int | None = cfg_field(None, "number of updates before increasing loss scale")
    fp16_scale_tolerance: float = cfg_field(0.0, "pct of updates that can overflow before decreasing the loss scale")
    threshold_loss_scale: float | None = cfg_field(None, "threshold FP16 loss scale from below")
    min_loss_scale: float = cfg_field(1e-4, "minimum FP16/AMP loss scale, after which training is stopped")
    user_dir: str | None = cfg_field(
        None, "path to a python module containing custom extensions (tasks and/or architectures)"
    )
    empty_cache_freq: int = cfg_field(0, "how often to clear the PyTorch CUDA cache (0 to disable)")
    profile: bool = cfg_field(False, "enable autograd profiler emit_nvtx")
    compile: bool = cfg_field(
        False, "torch.compile the model for training (the first updates are slow while it compiles)"
    )
    compile_mode: COMPILE_MODE_CHOICES = cfg_field(
        "default",
        "torch.compile mode with --compile: reduce-overhead uses CUDA "
        "graphs (best with fixed batch shapes, e.g. language models)",
    )


@dataclass
class CommonEvalConfig(FairseqDataclass):
    path: str | None = cfg_field(None, "path to model file")
    post_process: str | None = cfg_field(None, "post-process text by removing BPE, letter segmentation, etc.")
    quiet: bool = cfg_field(False, "only print final scores")
    model_overrides: str = cfg_field("{}", "a dictionary used to override model args at generation time")
    results_path: str | None = cfg_field(None, "path to save eval results (optional)")


@dataclass
class DistributedTrainingConfig(FairseqDataclass):
    distributed_world_size: int = cfg_field(
        max(1, torch.cuda.device_count()), "total number of GPUs across all nodes (default: all visible GPUs)"
    )
    distributed_rank: int | None = cfg_field(0, "rank of the current worker")
    distributed_backend: str | None = cfg_field(
        None, "distributed backend: nccl, gloo, mpi or ucc (unset: nccl on GPUs, gloo on CPU)"
    )
    distributed_init_method: str | None = cfg_field(None, "typically tcp://hostname:port")
    distributed_port: int = cfg_field(-1, "port number (not required if using --distributed-init-method)")
    device_id: int = cfg_field(0, "which GPU to use (usually configured automatically)")
    distributed_no_spawn: bool = cfg_field(False, "do not spawn multiple processes even if multiple GPUs are visible")
    ddp_backend: DDP_BACKEND_CHOICES = cfg_field("pytorch_ddp", "DistributedDataParallel backend")
    bucket_cap_mb: int = cfg_field(25, "bucket size for reduction")
    find_unused_parameters: bool = cfg_field(
        False, "disable unused parameter detection (not applicable to --ddp-backend=legacy_ddp)"
    )
    heartbeat_timeout: int = cfg_field(
        -1,
        "end the job when a rank stops answering (hangs, is stopped, loses its host) for N seconds, naming it; "
        "collectives then wait at most 2N seconds. -1: no heartbeat, collectives wait 30 minutes",
    )


@dataclass
class DatasetConfig(FairseqDataclass):
    num_workers: int = cfg_field(1, "how many subprocesses to use for data loading")
    data_buffer_size: int = cfg_field(10, "number of batches to preload (per data-loading worker)")
    skip_invalid_size_inputs_valid_test: bool = cfg_field(
        False, "ignore too long or too short lines in valid and test set"
    )
    max_tokens: int | None = cfg_field(None, "maximum number of tokens in a batch")
    batch_size: int | None = cfg_field(None, "number of examples in a batch", argparse_alias="--max-sentences")
    required_batch_size_multiple: int = cfg_field(8, "batch size will be a multiplier of this value")
    dataset_impl: DATASET_IMPL_CHOICES | None = cfg_field(None, "output dataset implementation")
    train_subset: str = cfg_field("train", "data subset to use for training (e.g. train, valid, test)")
    valid_subset: str = cfg_field(
        "valid", "comma separated list of data subsets to use for validation (e.g. train, valid, test)"
    )
    validate_interval: int = cfg_field(1, "validate every N epochs")
    validate_interval_updates: int = cfg_field(0, "validate every N updates")
    validate_after_updates: int = cfg_field(0, "dont validate until reaching this many updates")
    fixed_validation_seed: int | None = cfg_field(None, "specified random seed for validation")
    disable_validation: bool = cfg_field(False, "disable validation")
    max_tokens_valid: int | None = cfg_field(
        II("dataset.max_tokens"), "maximum number of tokens in a validation batch (defaults to --max-tokens)"
    )
    batch_size_valid: int | None = cfg_field(
        II("dataset.batch_size"),
        "batch size of the validation batch (defaults to --batch-size)",
        argparse_alias="--max-sentences-valid",
    )
    max_valid_steps: int | None = cfg_field(None, "how many batches to evaluate")
    gen_subset: str = cfg_field("test", "data subset to generate (train, valid, test)")
    num_shards: int = cfg_field(1, "shard generation over N shards")
    shard_id: int = cfg_field(0, "id of the shard to generate (id < num_shards)")


@dataclass
class OptimizationConfig(FairseqDataclass):
    max_epoch: int = cfg_field(0, "force stop training at specified epoch")
    max_update: int = cfg_field(0, "force stop training at specified update")
    stop_time_hours: float = cfg_field(0, "force stop training after specified cumulative time (if >0)")
    clip_norm: float = cfg_field(0.0, "clip threshold of gradients")
    skip_nonfinite_loss: bool = cfg_field(
        False,
        "skip an update whose loss is NaN/inf (logged) instead of stopping "
        "with a report of the first module whose output went non-finite",
    )
    max_oom_skips: int = cfg_field(
        10,
        "on one GPU, skip at most this many updates that run out of GPU memory "
        "(each logged), then stop; 0 stops at the first",
    )
    sentence_avg: bool = cfg_field(
        False, "normalize gradients by the number of sentences in a batch (default is to normalize by number of tokens)"
    )
    update_freq: list[int] = cfg_field(
        default_factory=lambda: [1], help="update parameters every N_i batches, when in epoch i"
    )
    # fairseq's default is 0.25, a learning rate for NAG; with Adam (our default optimizer, where
    # fairseq has none) it diverges at once, so the default is one that trains with Adam.
    lr: list[float] = cfg_field(
        default_factory=lambda: [0.0005],
        help="learning rate for the first N epochs; all epochs >N using LR_N (note: this may be interpreted "
        "differently depending on --lr-scheduler)",
    )
    stop_min_lr: float = cfg_field(-1.0, "stop training when the learning rate reaches this minimum")
    skip_remainder_batch: bool = cfg_field(
        False, "if set, include the last (partial) batch of each epoch in training (default is to skip it)"
    )


@dataclass
class CheckpointConfig(FairseqDataclass):
    save_dir: str = cfg_field("checkpoints", "path to save checkpoints")
    restore_file: str = cfg_field(
        "checkpoint_last.pt", "filename from which to load checkpoint (default: <save-dir>/checkpoint_last.pt"
    )
    finetune_from_model: str | None = cfg_field(
        None, "finetune from a pretrained model; note that meters and lr scheduler will be reset"
    )
    reset_dataloader: bool = cfg_field(False, "if set, does not reload dataloader state from the checkpoint")
    reset_lr_scheduler: bool = cfg_field(False, "if set, does not load lr scheduler state from the checkpoint")
    reset_meters: bool = cfg_field(False, "if set, does not load meters from the checkpoint")
    reset_optimizer: bool = cfg_field(False, "if set, does not load optimizer state from the checkpoint")
    save_interval: int = cfg_field(1, "save a checkpoint every N epochs")
    save_interval_updates: int = cfg_field(0, "save a checkpoint (and validate) every N updates")
    keep_interval_updates: int = cfg_field(-1, "keep the last N checkpoints saved with --save-interval-updates")
    keep_last_epochs: int = cfg_field(-1, "keep last N epoch checkpoints")
    keep_best_checkpoints: int = cfg_field(-1, "keep best N checkpoints based on scores")
    no_save: bool = cfg_field(False, "don't save models or checkpoints")
    no_epoch_checkpoints: bool = cfg_field(False, "only store last and best checkpoints")
    no_last_checkpoints: bool = cfg_field(False, "don't store last checkpoints")
    no_save_optimizer_state: bool = cfg_field(False, "don't save optimizer-state as part of checkpoint")
    best_checkpoint_metric: str = cfg_field("loss", 'metric to use for saving "best" checkpoints')
    maximize_best_checkpoint_metric: bool = cfg_field(
        False, 'select the largest metric value for saving "best" checkpoints'
    )
    patience: int = cfg_field(
        -1,
        "early stop training if valid performance doesn't improve for N consecutive validation runs; note that "
        "this is influenced by --validate-interval",
    )
    checkpoint_suffix: str = cfg_field("", "suffix to add to the checkpoint file name")
    write_checkpoints_asynchronously: bool = cfg_field(
        False, "write checkpoints in a background thread, from a copy of the state, while training goes on"
    )


@dataclass
class GenerationConfig(FairseqDataclass):
    beam: int = cfg_field(5, "beam size")
    nbest: int = cfg_field(1, "number of hypotheses to output")
    max_len_a: float = cfg_field(0, "generate sequences of maximum length ax + b, where x is the source length")
    max_len_b: int = cfg_field(200, "generate sequences of maximum length ax + b, where x is the source length")
    min_len: int = cfg_field(1, "minimum generation length")
    lenpen: float = cfg_field(1, "length penalty: <1.0 favors shorter, >1.0 favors longer sentences")
    unkpen: float = cfg_field(0, "unknown word penalty: <0 produces more unks, >0 produces fewer")
    sampling: bool = cfg_field(False, "sample hypotheses instead of using beam search")
    sampling_topk: int = cfg_field(-1, "sample from top K likely next words instead of all words")
    sampling_topp: float = cfg_field(
        -1.0, "sample from the smallest set whose cumulative probability mass exceeds p for next words"
    )
    temperature: float = cfg_field(1.0, "temperature for generation")
    no_repeat_ngram_size: int = cfg_field(
        0, "ngram blocking such that this size ngram cannot be repeated in the generation"
    )
    prefix_size: int = cfg_field(0, "initialize generation by target prefix of given length")
    unnormalized: bool = cfg_field(False, "compare unnormalized hypothesis scores")
    match_source_len: bool = cfg_field(False, "generations should match the source length")
    no_early_stop: bool = cfg_field(
        False, "deprecated: has no effect, as in fairseq 0.12.2 (a sentence's search ends once it has beam hypotheses)"
    )
    constraints: str | None = cfg_field(
        None,
        "enables lexically constrained decoding (constraints follow the input line, tab-separated)",
        choices=["ordered", "unordered"],
        argparse_const="ordered",
    )
    replace_unk: str | None = cfg_field(
        None,
        "perform unknown replacement (optionally with alignment dictionary): each <unk> of a hypothesis becomes "
        "the source word it is most aligned to",
        argparse_const="",
    )
    diverse_beam_groups: int = cfg_field(-1, "number of groups for Diverse Beam Search")
    diverse_beam_strength: float = cfg_field(0.5, "strength of diversity penalty for Diverse Beam Search")
    diversity_rate: float = cfg_field(-1.0, "strength of diversity penalty for Diverse Siblings Search")
    sacrebleu: bool = cfg_field(
        False, "score with sacrebleu (the same as --scoring sacrebleu; fairseq 0.12.2 only silenced a warning with it)"
    )
    score_reference: bool = cfg_field(
        False, "just score the reference translation: its log-probability per token under the model(s)"
    )
    retain_dropout: bool = cfg_field(False, "Use dropout at inference time")
    retain_dropout_modules: list[str] | None = cfg_field(
        None,
        "if set, only retain dropout for the specified modules (class names, e.g. TransformerDecoderLayer); "
        "if not set, then dropout will be retained for all modules",
    )
    print_alignment: str | None = cfg_field(
        None,
        "if set, uses attention feedback to compute and print alignment to source tokens (valid options are: "
        "hard, soft, otherwise treated as hard alignment)",
        choices=["hard", "soft"],
        argparse_const="hard",
    )
    print_step: bool = cfg_field(
        False, "print steps: fairseq-generate's I- line, the decoding steps each hypothesis took (its tokens and eos)"
    )


@dataclass
class InteractiveConfig(FairseqDataclass):
    buffer_size: int = cfg_field(0, "read this many sentences into a buffer before processing them")
    input: str = cfg_field("-", "file to read from; use - for stdin")


@dataclass
class EvalLMConfig(FairseqDataclass):
    output_word_probs: bool = cfg_field(
        False, "if set, outputs words and their predicted log probabilities to standard output"
    )
    output_word_stats: bool = cfg_field(
        False, "if set, outputs word statistics such as word count, average probability, etc"
    )
    context_window: int = cfg_field(
        0, "ensures that every evaluated token has access to a context of at least this size, if possible"
    )
    softmax_batch: int = cfg_field(
        sys.maxsize,
        "if BxT is more than this, will batch the softmax over vocab to this amount of tokens, in order to fit "
        "into GPU memory",
    )


# The groups of FairseqConfig that are plain settings (not a choice of registered component).
SETTINGS_GROUPS = {
    "common": CommonConfig,
    "common_eval": CommonEvalConfig,
    "distributed_training": DistributedTrainingConfig,
    "dataset": DatasetConfig,
    "optimization": OptimizationConfig,
    "checkpoint": CheckpointConfig,
    "generation": GenerationConfig,
    "eval_lm": EvalLMConfig,
    "interactive": InteractiveConfig,
}

# The groups that name a registered component (see fairseq_lite/registry.py).
COMPONENT_GROUPS = ("task", "model", "criterion", "optimizer", "lr_scheduler", "bpe", "tokenizer", "scoring")


@dataclass
class FairseqConfig(FairseqDataclass):
    # Nested defaults must be default_factory: a dataclass instance as a default is exactly what
    # makes fairseq 0.12.2 fail to import on Python 3.11.
    common: CommonConfig = cfg_field(default_factory=CommonConfig)
    common_eval: CommonEvalConfig = cfg_field(default_factory=CommonEvalConfig)
    distributed_training: DistributedTrainingConfig = cfg_field(default_factory=DistributedTrainingConfig)
    dataset: DatasetConfig = cfg_field(default_factory=DatasetConfig)
    optimization: OptimizationConfig = cfg_field(default_factory=OptimizationConfig)
    checkpoint: CheckpointConfig = cfg_field(default_factory=CheckpointConfig)
    generation: GenerationConfig = cfg_field(default_factory=GenerationConfig)
    eval_lm: EvalLMConfig = cfg_field(default_factory=EvalLMConfig)
    interactive: InteractiveConfig = cfg_field(default_factory=InteractiveConfig)
    task: Any = None
    model: Any = None
    criterion: Any = None
    optimizer: Any = None
    lr_scheduler: Any = None
    bpe: Any = None
    tokenizer: Any = None
    scoring: Any = None
