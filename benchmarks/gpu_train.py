"""Training throughput and MFU of transformer_lm_gpt (GPT-2 124M size) on one GPU, through the real
`fairseq-hydra-train` command, for several precisions and with/without `common.compile`.

    python benchmarks/gpu_train.py                          # bf16 eager vs bf16 compiled, plus fp32/fp16/amp
    python benchmarks/gpu_train.py --modes bf16 bf16+compile --updates 80
    python benchmarks/gpu_train.py --tiny --updates 6       # a CPU smoke test of the script itself

The data are random tokens over a GPT-2-sized vocabulary (50,257 symbols with fairseq's 4 specials,
padded to 50,304), written as a fairseq data-bin: throughput does not depend on what the tokens are,
and this makes the model GPT-2 small (124M parameters with tied input/output embeddings).

MFU (model FLOPs utilisation) = model FLOPs per token x tokens per second / the GPU's peak dense bf16
FLOP/s. Model FLOPs per token = 6 x (parameters used in matrix products: all but the position
embeddings) + 12 x layers x width x context (attention scores and values; PaLM's appendix B).
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

# Peak dense (no sparsity) bf16 tensor-core FLOP/s, from NVIDIA's data sheets.
PEAK_BF16_FLOPS = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}


def make_data_bin(directory: str, vocab_words: int, train_tokens: int, line_len: int, seed: int = 0) -> None:
    from fairseq_lite.data.dictionary import Dictionary
    from fairseq_lite.data.indexed_dataset import MMapIndexedDatasetBuilder, data_file_path, index_file_path

    d = Dictionary()
    for i in range(vocab_words):
        d.add_symbol(f"w{i}", n=vocab_words - i)  # distinct counts keep the order fixed
    # Padded to a multiple of 64 (50,304 for GPT-2's 50,257), as GPT-2 trainers do for tensor-core
    # friendly output projections; fairseq-preprocess --padding-factor 64 gives the same.
    d.finalize(padding_factor=64)
    d.save(os.path.join(directory, "dict.txt"))
    rng = np.random.default_rng(seed)
    for split, n_tokens in (("train", train_tokens), ("valid", line_len * 8)):
        prefix = os.path.join(directory, split)
        builder = MMapIndexedDatasetBuilder(data_file_path(prefix), dtype=np.uint16 if len(d) < 65500 else np.int32)
        n_lines = max(1, n_tokens // line_len)
        tokens = rng.integers(d.nspecial, len(d), size=(n_lines, line_len))
        tokens[:, -1] = d.eos()
        builder.add_items(tokens.reshape(-1), np.full(n_lines, line_len, dtype=np.int64))
        builder.finalize(index_file_path(prefix))


def model_flops_per_token(n_params: int, position_params: int, layers: int, width: int, context: int) -> float:
    return 6.0 * (n_params - position_params) + 12.0 * layers * width * context


def run_mode(mode: str, data: str, args, workdir: str) -> dict:
    precision, _, compiled = mode.partition("+")
    overrides = [
        "task=language_modeling",
        f"task.data={data}",
        f"task.tokens_per_sample={args.tokens_per_sample}",
        f"model=transformer_lm/{args.arch}",
        "model.dropout=0.0",
        "model.attention_dropout=0.0",
        "model.share_decoder_input_output_embed=true",
        f"dataset.batch_size={args.batch_size}",
        "dataset.max_tokens=null",
        "dataset.disable_validation=true",
        "dataset.num_workers=2",
        f"optimization.max_update={args.updates}",
        "optimization.lr=[0.0003]",
        "optimization.clip_norm=1.0",
        "lr_scheduler=inverse_sqrt",
        "lr_scheduler.warmup_updates=10",
        "optimizer.adam_betas='(0.9,0.95)'",
        "checkpoint.no_save=true",
        f"common.log_interval={args.log_interval}",
        "common.log_format=json",
        f"common.compile={'true' if compiled else 'false'}",
        f"hydra.run.dir={workdir}/{mode.replace('=', '_')}",
    ]
    if "=" in compiled:  # e.g. bf16+compile=reduce-overhead
        overrides.append(f"common.compile_mode={compiled.split('=', 1)[1]}")
    if precision in ("fp16", "bf16", "amp", "memory_efficient_fp16"):
        overrides.append(f"common.{precision}=true")
    if args.tiny:
        overrides += [
            "common.cpu=true",
            "model.decoder_layers=2",
            "model.decoder_embed_dim=64",
            "model.decoder_input_dim=64",
            "model.decoder_output_dim=64",
            "model.decoder_ffn_embed_dim=128",
            "model.decoder_attention_heads=2",
        ]
    cmd = [sys.executable, "-m", "fairseq_cli.hydra_train", *overrides]
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - start
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        return {"mode": mode, "error": "\n".join(tail)}
    records = []
    for line in (proc.stdout + proc.stderr).splitlines():
        m = re.search(r"(\{.*\"wps\".*\})", line)
        if m and '"epoch"' in m.group(1) and '"train_loss"' not in m.group(1):  # intervals, not the epoch summary
            try:
                records.append(json.loads(m.group(1)))
            except json.JSONDecodeError:
                pass
    params = re.search(r"num\. model params: ([\d,]+)", proc.stdout + proc.stderr)
    # The first interval holds start-up (and compilation): the steady state is the rest.
    steady = [float(r["wps"]) for r in records[1:]] or [float(r["wps"]) for r in records]
    return {
        "mode": mode,
        "wps": statistics.median(steady) if steady else float("nan"),
        "intervals": len(records),
        "loss": float(records[-1]["loss"]) if records else float("nan"),
        "wall_s": wall,
        "params": int(params.group(1).replace(",", "")) if params else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["bf16", "bf16+compile", "fp32", "fp16", "memory_efficient_fp16", "amp"],
        help="precision[+compile[=MODE]] for each run: fp32, bf16, fp16, memory_efficient_fp16, amp; "
        "MODE is a torch.compile mode, e.g. reduce-overhead",
    )
    parser.add_argument("--arch", default="transformer_lm_gpt")
    parser.add_argument("--updates", type=int, default=60)
    parser.add_argument("--log-interval", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per batch")
    parser.add_argument("--tokens-per-sample", type=int, default=1024)
    parser.add_argument("--tiny", action="store_true", help="a tiny model on CPU: checks the script, not speed")
    args = parser.parse_args()
    if args.tiny:
        args.tokens_per_sample, args.batch_size, args.log_interval = 64, 4, 2

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in gpu), None)
    print(f"device: {gpu}")
    print(f"torch: {torch.__version__}")
    vocab_words = 256 if args.tiny else 50253
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data-bin")
        os.makedirs(data)
        make_data_bin(
            data,
            vocab_words,
            train_tokens=args.tokens_per_sample * args.batch_size * (args.updates + 5),
            line_len=args.tokens_per_sample,
        )
        results = [run_mode(mode, data, args, tmp) for mode in args.modes]
    layers, width = (2, 64) if args.tiny else (12, 768)
    baseline = None
    for r in results:
        name = r["mode"].replace("+", "_").replace("=", "_").replace("-", "_")
        if "error" in r:
            print(f"{name}_error: {r['error']!r}")
            continue
        print(f"{name}_tokens_per_s: {r['wps']:.0f}")
        print(f"{name}_final_loss: {r['loss']:.3f}")
        print(f"{name}_wall_s: {r['wall_s']:.1f}")
        if r["params"]:
            print(f"{name}_params: {r['params']}")
            flops = model_flops_per_token(
                r["params"], args.tokens_per_sample * width, layers, width, args.tokens_per_sample
            )
            if peak:
                print(f"{name}_mfu: {100 * flops * r['wps'] / peak:.1f}%")
        baseline = baseline or (r if r["mode"] == "bf16" else None)
    for r in results:
        if baseline and "error" not in r and r is not baseline:
            print(
                f"{r['mode'].replace('+', '_').replace('=', '_').replace('-', '_')}_vs_bf16: "
                f"{r['wps'] / baseline['wps']:.2f}x"
            )


if __name__ == "__main__":
    main()
