"""Fused softmax cross-entropy vs log_softmax + nll_loss: forward+backward time and peak memory.

    python benchmarks/fused_cross_entropy.py                       # CPU, 2048 tokens (about 40 s on 2 cores)
    python benchmarks/fused_cross_entropy.py --device cuda          # GPU, 8192 tokens
    python benchmarks/fused_cross_entropy.py --tokens 8192 --repeats 2

Three implementations of the summed token loss, each run forward and backward from a leaf
[tokens, V] logits tensor (requires_grad) as the criteria use it:
  fused      the compiled kernel (fairseq_lite.kernels.cross_entropy, extension forced on)
  reference  the same function on its PyTorch reference (log_softmax in fp32, gather, sum)
  torch      F.nll_loss(F.log_softmax(logits.float()), target, reduction="sum")  (the criteria's old path)
at vocabularies 32000 and 50257 (GPT-2's), fp32 and bf16 logits, 5% of the targets ignored, label
smoothing 0 (the fused kernel computes the smoothing term anyway; torch does not).

The implementations run interleaved, round after round, so that load from other processes hits them
alike; times are the best of --repeats rounds. Peak memory is what a run adds on top of the inputs:
on CPU the process's peak resident set (VmHWM, reset before each run through /proc/self/clear_refs;
torch's CPU allocator returns large blocks to the system, so freed tensors do not count), on CUDA
torch.cuda.max_memory_allocated. Prints `name: value` lines; compare the ratios, not absolute times
taken at different moments.
"""

import argparse
import os
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from fairseq_lite import kernels
from fairseq_lite.kernels.cross_entropy import FORWARD_OP, softmax_cross_entropy

IGNORE_INDEX = 1
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def fused(logits, target):
    with kernels.force_reference(False):
        return softmax_cross_entropy(logits, target, ignore_index=IGNORE_INDEX)[0]


def reference(logits, target):
    with kernels.force_reference(True):
        return softmax_cross_entropy(logits, target, ignore_index=IGNORE_INDEX)[0]


def torch_log_softmax_nll(logits, target):
    return F.nll_loss(F.log_softmax(logits.float(), dim=-1), target, ignore_index=IGNORE_INDEX, reduction="sum")


IMPLEMENTATIONS: dict[str, Callable] = {"fused": fused, "reference": reference, "torch": torch_log_softmax_nll}


class PeakMemory:
    """Bytes a block of code adds at its peak, on top of what was allocated when it started."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cpu_supported = os.path.exists("/proc/self/clear_refs")

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        elif self.cpu_supported:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak resident set size to the current one
            self.base = self._status_kb("VmRSS") * 1024

    def peak(self) -> int | None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - self.base
        if self.cpu_supported:
            return self._status_kb("VmHWM") * 1024 - self.base
        return None

    @staticmethod
    def _status_kb(field: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise RuntimeError(f"no {field} in /proc/self/status")


def fwd_bwd(impl: Callable, logits: torch.Tensor, target: torch.Tensor, memory: PeakMemory):
    logits.grad = None
    memory.start()
    start = time.perf_counter()
    loss = impl(logits, target)
    loss.backward()
    if logits.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = memory.peak()
    value = float(loss.detach())
    del loss
    return seconds, peak, value


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--tokens", type=int, default=None, help="rows of logits (default: 2048 on CPU, 8192 on CUDA)")
    parser.add_argument("--vocabs", type=int, nargs="+", default=[32000, 50257])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=sorted(DTYPES))
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (best of)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the cores available)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no GPU available")
    tokens = args.tokens or (8192 if device.type == "cuda" else 2048)
    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    torch.set_num_threads(threads)
    impls = dict(IMPLEMENTATIONS)
    with kernels.force_reference(False):
        if kernels.compiled_op(FORWARD_OP, device) is None:
            print(f"note: no compiled kernel for {device.type} (fairseq_lite._C not built for it): fused is skipped")
            del impls["fused"]
    memory = PeakMemory(device)
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu, {threads} threads"
    print(f"device: {where}")
    print(f"tokens: {tokens}")

    # One small run of each first: one-time costs (the extension's import, first dispatch) stay out.
    warm_logits = torch.randn(8, 64, device=device, requires_grad=True)
    for impl in impls.values():
        fwd_bwd(impl, warm_logits, torch.zeros(8, dtype=torch.long, device=device), memory)

    for vocab in args.vocabs:
        for dtype_name in args.dtypes:
            case = f"v{vocab // 1000}k_{dtype_name}"
            g = torch.Generator().manual_seed(0)
            logits = (torch.randn(tokens, vocab, generator=g) * 2).to(device=device, dtype=DTYPES[dtype_name])
            logits.requires_grad_()
            target = torch.randint(0, vocab, (tokens,), generator=g)
            target[::20] = IGNORE_INDEX
            target = target.to(device)
            times: dict[str, float] = {}
            peaks: dict[str, int | None] = {}
            losses: dict[str, float] = {}
            for _ in range(args.repeats):
                for name, impl in impls.items():
                    seconds, peak, value = fwd_bwd(impl, logits, target, memory)
                    times[name] = min(times.get(name, float("inf")), seconds)
                    peaks[name] = None if peak is None else max(peaks.get(name) or 0, peak)
                    losses[name] = value
            del logits
            for name in impls:
                print(f"{name}_fwd_bwd_ms_{case}: {times[name] * 1e3:.1f}")
            for name in impls:
                if peaks[name] is not None:
                    print(f"{name}_peak_mb_{case}: {peaks[name] / 2**20:.1f}")
            for name in impls:
                if name != "fused" and "fused" in impls:
                    print(f"fused_vs_{name}_speedup_{case}: {times[name] / times['fused']:.2f}x")
                    if peaks["fused"] is not None and peaks[name]:
                        print(f"fused_vs_{name}_memory_{case}: {peaks['fused'] / peaks[name]:.2f}x")
            spread = max(abs(v - losses["torch"]) / abs(losses["torch"]) for v in losses.values())
            print(f"loss_max_rel_diff_{case}: {spread:.1e}")
            if spread > 1e-4:
                sys.exit(f"{case}: the implementations disagree on the loss: {losses}")


if __name__ == "__main__":
    main()
