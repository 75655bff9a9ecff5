"""Where a fairseq-lite training step spends its time, on the tiny LM config of train_speed.py.

    python benchmarks/profile_train_step.py                 # fp32: torch.profiler op table + cProfile
    python benchmarks/profile_train_step.py --bf16 --steps 3
    python benchmarks/profile_train_step.py --data DATA-BIN # an already binarized corpus

Builds the task, model and Trainer exactly as `fairseq-train` does (same config composition), runs
--warmup updates unprofiled (first-call allocations, lazy dataset indexing), then --steps updates under
torch.profiler (top operators by self CPU time) and under cProfile (top Python functions by cumulative
time, which shows the data pipeline, logging and optimizer overhead around the operators).
Prints `name: value` lines first (time per step, the share spent outside torch operators), then tables.
"""

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from fairseq_compare import TINY_LM_FLAGS, prepare_lm_data  # noqa: E402  (one definition of the config)


def build(data: str, bf16: bool):
    from fairseq_cli.train import legacy_overrides
    from fairseq_lite.options.compose import compose_config
    from fairseq_lite.training import build_trainer

    # The very flags train_speed.py gives `fairseq-train`, resolved as that command resolves them.
    flags = [data, *TINY_LM_FLAGS, "--disable-validation", "--no-save"] + (["--bf16"] if bf16 else [])
    trainer = build_trainer(compose_config(legacy_overrides(flags)))
    itr = trainer.get_train_iterator(epoch=1).next_epoch_itr(shuffle=True)
    return trainer, itr


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="binarized LM data (default: the demo's Shakespeare, binarized in a temp dir)")
    parser.add_argument("--bf16", action="store_true", help="profile common.bf16=true (CPU autocast)")
    parser.add_argument("--warmup", type=int, default=5, help="updates before profiling")
    parser.add_argument("--steps", type=int, default=20, help="profiled updates")
    parser.add_argument("--top", type=int, default=25, help="rows per table")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="profile_train_") as tmp:
        data = args.data or prepare_lm_data(Path(tmp))
        trainer, itr = build(data, args.bf16)
        for _ in range(args.warmup):
            trainer.train_step([next(itr)])

        # 1. Plain timing, nothing attached.
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step([next(itr)])
        plain = (time.perf_counter() - start) / args.steps

        # 2. torch.profiler: operator self times (CPU).
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                trainer.train_step([next(itr)])
        averages = prof.key_averages()
        op_total_us = sum(e.self_cpu_time_total for e in averages)

        # 3. cProfile: Python functions (data loading, optimizer wrapper, logging outputs).
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.steps):
            trainer.train_step([next(itr)])
        profiler.disable()

    mode = "bf16" if args.bf16 else "fp32"
    print(f"precision: {mode}")
    print(f"torch_threads: {torch.get_num_threads()}")
    print(f"step_ms_{mode}: {plain * 1000:.1f}")
    print(f"words_per_s_{mode}: {2048 / plain:.0f}  (2048-token batches)")
    print(f"profiled_op_self_ms_per_step_{mode}: {op_total_us / 1000 / args.steps:.1f}")
    print()
    print(f"== torch.profiler, top {args.top} operators by self CPU time ({args.steps} steps)")
    print(averages.table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=45))
    print(f"== cProfile, top {args.top} functions by cumulative time ({args.steps} steps)")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.top)
    print(out.getvalue())


if __name__ == "__main__":
    main()
