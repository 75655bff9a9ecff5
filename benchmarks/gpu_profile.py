"""Where a GPT-2-small training step spends its time on the GPU (companion of gpu_train.py).

    python benchmarks/gpu_profile.py                  # bf16, batch 16 x 1024, 10 profiled updates
    python benchmarks/gpu_profile.py --batch-size 32 --compile

Builds the Trainer as fairseq-hydra-train does (same overrides as gpu_train.py), runs a few warm-up
updates, then profiles updates with torch.profiler. Prints `name: value` lines (wall time per update,
GPU kernel time per update, and their ratio: the share of the wall time the GPU was busy), then the
top kernels by GPU time and the top operators by CPU time.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_train import make_data_bin  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tokens-per-sample", type=int, default=1024)
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16", "amp"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    from fairseq_lite.options.compose import compose_config
    from fairseq_lite.training import build_trainer

    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data-bin")
        os.makedirs(data)
        make_data_bin(
            data,
            50253,
            train_tokens=args.tokens_per_sample * args.batch_size * (args.warmup + args.steps + 5),
            line_len=args.tokens_per_sample,
        )
        overrides = [
            "task=language_modeling",
            f"task.data={data}",
            f"task.tokens_per_sample={args.tokens_per_sample}",
            "model=transformer_lm/transformer_lm_gpt",
            "model.dropout=0.0",
            "model.attention_dropout=0.0",
            "model.share_decoder_input_output_embed=true",
            f"dataset.batch_size={args.batch_size}",
            "dataset.max_tokens=null",
            "dataset.num_workers=2",
            "optimization.clip_norm=1.0",
            f"common.compile={'true' if args.compile else 'false'}",
            f"checkpoint.save_dir={tmp}/ckpt",
        ] + ([f"common.{args.precision}=true"] if args.precision != "fp32" else [])
        trainer = build_trainer(compose_config(overrides))
        itr = trainer.get_train_iterator(epoch=1).next_epoch_itr(shuffle=True)
        for _ in range(args.warmup):
            trainer.train_step([next(itr)])
        sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
        sync()
        activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        with torch.profiler.profile(activities=activities) as prof:
            start = time.perf_counter()
            for _ in range(args.steps):
                trainer.train_step([next(itr)])
            sync()
            wall = (time.perf_counter() - start) / args.steps
    events = prof.key_averages()
    # Kernels only (they have no CPU time of their own); operators report their kernels' time again.
    gpu_us = sum(e.self_device_time_total for e in events if e.self_cpu_time_total == 0) / args.steps
    tokens = args.batch_size * args.tokens_per_sample
    print(f"update_wall_ms: {1000 * wall:.1f}")
    print(f"update_gpu_kernel_ms: {gpu_us / 1000:.1f}")
    print(f"gpu_busy_share: {100 * gpu_us / 1e6 / wall:.0f}%")
    print(f"tokens_per_s_under_profiler: {tokens / wall:.0f}")
    print(events.table(sort_by="self_device_time_total", row_limit=args.top, max_name_column_width=60))
    print(events.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=60))


if __name__ == "__main__":
    main()
