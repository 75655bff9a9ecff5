"""Training words/s of fairseq-lite vs fairseq 0.12.2, side by side, on the same tiny LM and data.

    python benchmarks/train_speed.py                           # ~3 minutes on 2 CPU cores
    python benchmarks/train_speed.py --fairseq-python /tmp/fairseq-ref/bin/python --updates 300
    python benchmarks/train_speed.py --no-bf16                 # fp32 only
    python benchmarks/train_speed.py --lite-env THP_MEM_ALLOC_ENABLE=1   # + lite with a candidate setting

Needs the reference fairseq 0.12.2 in a scratch virtualenv (never a dependency of fairseq-lite):
`bash benchmarks/setup_fairseq_reference.sh` creates /tmp/fairseq-ref (about 4 minutes).

What it does:
- binarizes the language-model demo's Shakespeare split once (examples/language_model/prepare_shakespeare.py,
  then fairseq-lite's fairseq-preprocess, whose output is byte-identical to fairseq's), in a temp dir;
- runs the same `fairseq-train` command line with each tool: transformer_lm, 2 layers, embed 128, ffn 512,
  4 heads, tokens_per_sample 128, max_tokens 2048, Adam, inverse_sqrt with 100 warm-up updates, fp32 on CPU,
  no validation, no checkpoints, a log line per update. Both tools build the same 1,585,408-parameter model
  and their losses agree to 3 digits (printed at the end);
- runs the two at the same time but in turns (SIGSTOP/SIGCONT, --slice seconds each): the load that other
  jobs put on a shared machine changes 2-5x within a minute, and turns of a few seconds make both tools see
  the same load. Each update's time is the gap between two consecutive log lines as this script receives
  them (the same clock for both tools; gaps that straddle a pause are dropped), after --skip warm-up updates;
- reports the median words/s over the timed updates (robust to bursts of load), the pooled figure (total
  words / total time) and the ratio lite/fairseq;
- fairseq-lite with --bf16 (CPU autocast). fairseq 0.12.2's --bf16 means "TPU" and fails on a CPU (the
  script tries it and says so), so lite-bf16 is compared with fairseq fp32. On a CPU without native bf16
  matrix instructions (avx512_bf16/AMX) torch emulates bf16 matmuls 30-400x slower than fp32, so the bf16
  run is cut to --bf16-updates updates there (the script says so).

Prints `name: value` lines, ratios last (`train_wps_ratio_fp32: 1.62x`).
"""

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fairseq_compare import (  # noqa: E402
    TINY_LM_FLAGS,
    SlicedProcesses,
    add_fairseq_python_arg,
    check_fairseq_python,
    command,
    machine_line,
    prepare_lm_data,
    print_ratio,
    print_value,
    run_tool,
    tool_env,
)


def native_bf16_matmul() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (else torch's fallback is very slow)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def train_args(data: str, workdir: Path, max_update: int, bf16: bool = False) -> list[str]:
    args = [
        data,
        *TINY_LM_FLAGS,
        "--max-update",
        str(max_update),
        "--log-format",
        "simple",
        "--log-interval",
        "1",
        "--disable-validation",
        "--no-save",
        "--save-dir",
        str(workdir / "unused"),
    ]
    return args + (["--bf16"] if bf16 else [])


def timed_training(
    runs: dict[str, tuple[str, bool, dict[str, str]]],
    data: str,
    fairseq_python: str,
    workdir: Path,
    skip: int,
    updates: int,
    slice_s: float,
    threads: int,
) -> dict[str, dict]:
    """Train every run (name -> (tool, bf16, extra environment)) in turns until each has `updates` timed updates."""
    max_update = skip + 3 * updates  # a margin for the updates dropped at pauses; killed once timed enough
    commands = {
        name: (
            command(tool, "train", fairseq_python) + train_args(data, workdir, max_update, bf16),
            {**tool_env(tool, threads), **env},
        )
        for name, (tool, bf16, env) in runs.items()
    }
    procs = SlicedProcesses(commands, cwd=workdir)
    results: dict[str, dict] = {}

    def check(name: str) -> None:
        if not procs.alive(name) and name not in results:
            procs.stop_all()
            sys.exit(
                f"error: {name} stopped early (exit {procs.procs[name].returncode}):\n"
                + "\n".join(procs.output(name).splitlines()[-25:])
            )

    def last_update(name: str) -> int:
        found = re.findall(r"num_updates=(\d+)", procs.output(name)[-2000:])
        return int(found[-1]) if found else 0

    try:
        # Warm-up together (not timed): start-up, first allocations. Each pauses once past `skip`.
        waiting = set(runs)
        while waiting:
            for name in list(waiting):
                check(name)
                if last_update(name) >= skip:
                    procs.pause(name)
                    waiting.discard(name)
            time.sleep(0.05)
        # Timed turns.
        active = list(runs)
        while active:
            for name in list(active):
                procs.resume(name)
                deadline = time.perf_counter() + slice_s
                while time.perf_counter() < deadline:
                    check(name)
                    time.sleep(0.05)
                if len(active) > 1:
                    procs.pause(name)
                timed = procs.update_times(name, after_update=skip)
                if len(timed) >= updates:
                    procs.stop(name)
                    active.remove(name)
                    output = procs.output(name)
                    params = re.search(r"model params: ([\d,]+)", output)
                    losses = {
                        int(u): float(loss)
                        for loss, u in re.findall(r" loss=([-0-9.e]+),.* num_updates=(\d+),", output)
                    }
                    results[name] = {
                        "timed": timed[:updates],
                        "losses": losses,
                        "params": int(params.group(1).replace(",", "")) if params else None,
                    }
    finally:
        procs.stop_all()
    return results


def words_per_second(result: dict) -> dict[str, float]:
    per_update = [fields["wpb"] / seconds for seconds, fields in result["timed"]]
    words = sum(fields["wpb"] for _, fields in result["timed"])
    return {
        "median": statistics.median(per_update),
        "pooled": words / sum(s for s, _ in result["timed"]),
        "ms_per_update": 1000 * statistics.median(s for s, _ in result["timed"]),
    }


def fairseq_bf16_error(data: str, fairseq_python: str, workdir: Path) -> str | None:
    """fairseq 0.12.2's --bf16 on CPU: None if it trains, else its error's last line."""
    run = run_tool(
        "fairseq", "train", train_args(data, workdir, 1, bf16=True), fairseq_python, cwd=workdir, check=False
    )
    if not run.output.startswith("exit "):
        return None
    lines = [line for line in run.output.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "failed"


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_fairseq_python_arg(parser)
    parser.add_argument("--updates", type=int, default=150, help="timed updates per tool (after --skip)")
    parser.add_argument("--skip", type=int, default=10, help="warm-up updates per run, not timed")
    parser.add_argument("--slice", type=float, default=3.0, help="seconds per turn")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 runs")
    parser.add_argument(
        "--bf16-updates",
        type=int,
        default=None,
        help="timed bf16 updates (default: --updates, or 4 when this CPU has no native bf16)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="intra-op threads for both tools (default: torch's default here)",
    )
    parser.add_argument("--data", help="binarized LM data dir (default: the demo corpus, binarized in a temp dir)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="fp32 comparisons with fresh processes; with more than one, the ratio reported is the "
        "median of the rounds' ratios (one process's speed varies from start to start)",
    )
    parser.add_argument(
        "--lite-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="also time fairseq-lite with this environment variable set (repeatable), in the same "
        "turns, e.g. THP_MEM_ALLOC_ENABLE=1",
    )
    args = parser.parse_args()
    bad = [kv for kv in args.lite_env if "=" not in kv]
    if bad:
        parser.error(f"--lite-env expects KEY=VALUE, got {bad}")
    lite_env = dict(kv.split("=", 1) for kv in args.lite_env)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")

    version = check_fairseq_python(args.fairseq_python)
    print_value("machine", machine_line())
    print_value("reference", f"fairseq {version} ({args.fairseq_python})")
    print_value(
        "config",
        "transformer_lm 2 layers, embed 128, ffn 512, 4 heads, tokens_per_sample 128, "
        "max_tokens 2048, adam, inverse_sqrt warmup 100, fp32 on cpu",
    )
    print_value(
        "method",
        f"both tools in turns of {args.slice:g}s, {args.updates} timed updates each after "
        f"{args.skip} warm-up, {args.threads} threads each",
    )

    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp:
        workdir = Path(tmp)
        data = args.data or prepare_lm_data(workdir)
        runs = {"fairseq_fp32": ("fairseq", False, {}), "lite_fp32": ("lite", False, {})}
        if lite_env:  # a third run in the same turns: fairseq-lite under a candidate setting
            runs["lite_fp32_env"] = ("lite", False, lite_env)
        rounds = [
            timed_training(runs, data, args.fairseq_python, workdir, args.skip, args.updates, args.slice, args.threads)
            for _ in range(args.rounds)
        ]
        results = dict(rounds[0])
        bf16_note = None
        if not args.no_bf16:
            native = native_bf16_matmul()
            bf16_updates = args.bf16_updates or (args.updates if native else 4)
            bf16_skip = args.skip if native else 2
            if not native:
                bf16_note = (
                    f"this CPU has no avx512_bf16/AMX, torch emulates bf16 matmuls: "
                    f"{bf16_updates} timed updates after {bf16_skip}, run alone"
                )
            results.update(
                timed_training(
                    {"lite_bf16": ("lite", True, {})},
                    data,
                    args.fairseq_python,
                    workdir,
                    bf16_skip,
                    bf16_updates,
                    args.slice,
                    args.threads,
                )
            )
            error = fairseq_bf16_error(data, args.fairseq_python, workdir)
            print_value("fairseq_bf16", "trains on CPU" if error is None else f"unavailable on CPU ({error})")
            if bf16_note:
                print_value("note_bf16", bf16_note)

    summary = {name: words_per_second(r) for name, r in results.items()}
    for name, r in results.items():
        s = summary[name]
        print_value(
            f"{name}_wps",
            f"{s['median']:.0f} (median of {len(r['timed'])} updates; pooled {s['pooled']:.0f}; "
            f"{s['ms_per_update']:.0f} ms/update)",
        )
        print_value(f"{name}_params", f"{r['params']:,}")
    # Same model, data order and seed: the two tools' losses at the same update should agree closely.
    common = max(set(results["fairseq_fp32"]["losses"]) & set(results["lite_fp32"]["losses"]))
    print_value(
        f"train_loss_at_update_{common}",
        f"fairseq {results['fairseq_fp32']['losses'][common]:.3f}, lite {results['lite_fp32']['losses'][common]:.3f}",
    )
    ref = summary["fairseq_fp32"]
    print_ratio("train_wps_ratio_fp32", summary["lite_fp32"]["median"], ref["median"], target=1.5)
    print_ratio("train_wps_ratio_fp32_pooled", summary["lite_fp32"]["pooled"], ref["pooled"])
    if len(rounds) > 1:
        ratios = []
        for i, round_results in enumerate(rounds, 1):
            lite, fairseq = (words_per_second(round_results[name]) for name in ("lite_fp32", "fairseq_fp32"))
            ratios.append(lite["median"] / fairseq["median"])
            print_value(
                f"round_{i}",
                f"fairseq {fairseq['ms_per_update']:.0f} ms/update, lite "
                f"{lite['ms_per_update']:.0f} ms/update: {ratios[-1]:.2f}x",
            )
        print_ratio(f"train_wps_ratio_fp32_median_of_{len(rounds)}_rounds", statistics.median(ratios), 1.0, target=1.5)
    if "lite_fp32_env" in summary:
        setting = " ".join(args.lite_env)
        print_ratio(f"train_wps_ratio_fp32_with_{setting}", summary["lite_fp32_env"]["median"], ref["median"], 1.5)
        print_ratio(
            f"lite_fp32_with_{setting}_vs_lite_fp32", summary["lite_fp32_env"]["median"], summary["lite_fp32"]["median"]
        )
    if "lite_bf16" in summary:
        # fairseq 0.12.2 cannot train in bf16 on a CPU, so lite-bf16 is compared with fairseq fp32.
        print_ratio(
            "train_wps_ratio_bf16_lite_vs_fairseq_fp32", summary["lite_bf16"]["median"], ref["median"], target=2.5
        )
        print_ratio("lite_bf16_vs_lite_fp32", summary["lite_bf16"]["median"], summary["lite_fp32"]["median"])


if __name__ == "__main__":
    main()
