"""Index builders and n-gram blocking: compiled (fairseq_lite._C) vs the numpy / PyTorch references,
side by side in one run, with fairseq 0.12.2's Cython batch_by_size when it is installed.

    python benchmarks/batching.py                                 # 10M sentences, ~100M tokens
    python benchmarks/batching.py --sentences 1000000 --tokens 10000000   # quicker
    python benchmarks/batching.py --fairseq-python /path/to/python        # where fairseq 0.12.2 lives

Prints `name: value` lines (seconds unless the name says otherwise). Each figure is the best of
--repeats runs; the machines are noisy, so compare ratios taken within one run. Both paths must give
identical output, and the script checks that (and fairseq's batches too, when it runs).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fairseq_lite import kernels  # noqa: E402
from fairseq_lite.data.data_utils import batch_by_size  # noqa: E402
from fairseq_lite.data.token_block_dataset import _build_blocks  # noqa: E402
from fairseq_lite.generation import NGramRepeatBlock  # noqa: E402

FAIRSEQ_PYTHON = "/tmp/fairseq-ref/bin/python"
MAX_TOKENS = 4096

# fairseq's own batch_by_size, timed in its interpreter on the arrays this script saved.
FAIRSEQ_SCRIPT = textwrap.dedent("""
    import sys, time, logging
    import numpy as np
    logging.disable(logging.CRITICAL)
    from fairseq.data.data_utils import batch_by_size
    workdir, max_tokens, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for order in ("sorted", "random"):
        indices = np.load(f"{workdir}/{order}_indices.npy")
        ntok = np.load(f"{workdir}/{order}_ntok.npy")
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            batches = batch_by_size(indices, num_tokens_fn=None, num_tokens_vec=ntok, max_tokens=max_tokens)
            best = min(best, time.perf_counter() - start)
        np.save(f"{workdir}/{order}_fairseq_lengths.npy", np.array([len(b) for b in batches], dtype=np.int64))
        print(order, best)
""")


def best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def on_both_paths(repeats: int, fn: Callable[[], Any]) -> tuple[float, float, Any, Any]:
    with kernels.force_reference(False):
        compiled_s, compiled = best_of(repeats, fn)
    with kernels.force_reference(True):
        reference_s, reference = best_of(repeats, fn)
    return compiled_s, reference_s, compiled, reference


def report(name: str, compiled_s: float, reference_s: float, identical: bool, unit: str = "s") -> None:
    scale = 1000.0 if unit == "ms" else 1.0
    print(f"{name}.compiled_{unit}: {compiled_s * scale:.4f}")
    print(f"{name}.reference_{unit}: {reference_s * scale:.4f}")
    print(f"{name}.speedup: {reference_s / compiled_s:.1f}x")
    print(f"{name}.identical: {'yes' if identical else 'NO'}")


def bench_batch_by_size(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, args.max_len + 1, size=args.sentences, dtype=np.int64)
    orders = {
        # what fairseq's datasets hand to batch_by_size: indices sorted by length
        "sorted": np.argsort(sizes, kind="stable"),
        "random": rng.permutation(args.sentences),
    }
    print(f"batch_by_size.sentences: {args.sentences}")
    print(f"batch_by_size.lengths: uniform 1..{args.max_len}")
    print(f"batch_by_size.max_tokens: {MAX_TOKENS}")
    lengths = {}
    for order, indices in orders.items():
        ntok = sizes[indices]
        compiled_s, reference_s, compiled, reference = on_both_paths(
            args.repeats, lambda: batch_by_size(indices, num_tokens_vec=ntok, max_tokens=MAX_TOKENS)
        )
        lengths[order] = np.array([len(b) for b in compiled], dtype=np.int64)
        identical = len(compiled) == len(reference) and all(np.array_equal(a, b) for a, b in zip(compiled, reference))
        print(f"batch_by_size.{order}.batches: {len(compiled)}")
        report(f"batch_by_size.{order}", compiled_s, reference_s, identical)
        with kernels.force_reference(False):
            op_s, _ = best_of(
                args.repeats, lambda: torch.ops.fairseq_lite.batch_by_size(torch.from_numpy(ntok), MAX_TOKENS, -1, 1)
            )
        print(f"batch_by_size.{order}.compiled_op_only_s: {op_s:.4f}")
    fairseq_batch_by_size(args, orders, sizes, lengths)


def fairseq_batch_by_size(args: argparse.Namespace, orders, sizes: np.ndarray, lengths) -> None:
    if not os.path.exists(args.fairseq_python):
        print(f"batch_by_size.fairseq_cython: skipped ({args.fairseq_python} not found)")
        return
    with tempfile.TemporaryDirectory() as workdir:
        for order, indices in orders.items():
            np.save(f"{workdir}/{order}_indices.npy", indices.astype(np.int64))
            np.save(f"{workdir}/{order}_ntok.npy", sizes[indices])
        proc = subprocess.run(
            [args.fairseq_python, "-c", FAIRSEQ_SCRIPT, workdir, str(MAX_TOKENS), str(args.repeats)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"batch_by_size.fairseq_cython: skipped (fairseq failed: {last})")
            return
        for line in proc.stdout.splitlines():
            order, seconds = line.split()
            same = np.array_equal(np.load(f"{workdir}/{order}_fairseq_lengths.npy"), lengths[order])
            print(f"batch_by_size.{order}.fairseq_cython_s: {float(seconds):.4f}")
            print(f"batch_by_size.{order}.identical_to_fairseq: {'yes' if same else 'NO'}")


def bench_token_blocks(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(1)
    # sentence lengths 1..50 (mean 25.5); 5% are 1-token document separators for complete_doc
    num_sentences = int(args.tokens / 25.5)
    sizes = rng.integers(1, 51, size=num_sentences, dtype=np.int64)
    sizes[rng.random(num_sentences) < 0.05] = 1
    print(f"token_blocks.tokens: {int(sizes.sum())}")
    print(f"token_blocks.sentences: {num_sentences}")
    print(f"token_blocks.block_size: {args.block_size}")
    for mode in ("complete", "complete_doc", "none", "eos"):
        compiled_s, reference_s, compiled, reference = on_both_paths(
            args.repeats, lambda: _build_blocks(sizes, mode, args.block_size, 1)
        )
        identical = all(np.array_equal(a, b) for a, b in zip(compiled, reference))
        print(f"token_blocks.{mode}.blocks: {len(compiled[0])}")
        report(f"token_blocks.{mode}", compiled_s, reference_s, identical)


def bench_ngram(args: argparse.Namespace) -> None:
    rows, step, vocab, n = 640, 50, 32000, 3
    gen = torch.Generator().manual_seed(2)
    # hypotheses over a handful of tokens, so that n-grams repeat (about one banned token per row)
    tokens = torch.randint(4, 12, (rows, step + 1), generator=gen)
    lprobs = torch.log_softmax(torch.randn(rows, vocab, generator=gen), dim=1)
    block = NGramRepeatBlock(n)
    print(
        f"ngram_block.shape: bsz*beam={rows} step={step} vocab={vocab} n={n} device=cpu "
        f"torch_threads={torch.get_num_threads()}"
    )
    # Blocking is in place and costs the same whether or not an entry is already -inf, so the steps are
    # timed on one lprobs tensor (no clone in the timing); the outputs are compared on fresh copies.
    steps, repeats = 20, max(args.repeats, 5)
    work = lprobs.clone()
    compiled_s, reference_s, _, _ = on_both_paths(repeats, lambda: [block(tokens, work) for _ in range(steps)])
    with kernels.force_reference(False):
        compiled = block(tokens, lprobs.clone())
    with kernels.force_reference(True):
        reference = block(tokens, lprobs.clone())
    print(f"ngram_block.banned_per_row: {torch.isneginf(compiled).sum().item() / rows:.2f}")
    report("ngram_block.per_step", compiled_s / steps, reference_s / steps, torch.equal(compiled, reference), unit="ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=10_000_000, help="items to batch")
    parser.add_argument("--max-len", type=int, default=256, help="sentence lengths are uniform in 1..max-len")
    parser.add_argument("--tokens", type=int, default=100_000_000, help="tokens to cut into blocks")
    parser.add_argument("--block-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--fairseq-python",
        default=FAIRSEQ_PYTHON,
        help="python with fairseq 0.12.2 installed, for its Cython batch_by_size",
    )
    args = parser.parse_args()

    if not kernels.extension_available():
        sys.exit("fairseq_lite._C is not built: pip install --no-build-isolation -e .")
    bench_batch_by_size(args)
    bench_token_blocks(args)
    bench_ngram(args)


if __name__ == "__main__":
    main()
