"""fairseq-eval-lm, fairseq-generate and fairseq-preprocess speed of fairseq-lite vs fairseq 0.12.2, side by side.

    python benchmarks/inference_speed.py                          # all three, ~4 minutes on 2 CPU cores
    python benchmarks/inference_speed.py --only eval-lm,generate  # a subset
    python benchmarks/inference_speed.py --fairseq-python /tmp/fairseq-ref/bin/python --repeats 5

Needs the reference fairseq 0.12.2 in a scratch virtualenv (never a dependency of fairseq-lite):
`bash benchmarks/setup_fairseq_reference.sh` creates /tmp/fairseq-ref (about 4 minutes).

Each command runs --repeats times per tool, alternating the tools (a shared machine's load changes within a
minute), and the median is reported. eval-lm and generate run with --threads 1 by default, the same for both
tools: with 2 threads on a 2-core machine that another job is using, every small decoder op waits in an
OpenMP barrier for a descheduled thread (8-second generate runs took 50-110 s here), so single-threaded runs
are the ones that compare reproducibly; pass --threads 2 on a quiet machine. Everything happens in a temp
dir; figures come from each tool's own summary line, which both tools print in fairseq's words:

- eval-lm: the demo's Shakespeare split binarized once (fairseq-lite's preprocess, byte-identical to fairseq's);
  each tool trains its own copy of train_speed.py's tiny LM for --lm-updates updates (same flags, same
  1.6M-parameter model: the two tools' perplexities agree to 3-4 digits, printed) and scores the test split
  with the same --tokens-per-sample 128 --max-tokens 8192, no context window. Figure: "Evaluated N tokens in
  Xs (Y tokens/s)", which times the scoring loop only (model loading excluded, in both tools).
- generate: examples/translation's data (prepare_kjv_rv1909.py with its defaults: the same split and
  sentencepiece model as the example), binarized once with a joined dictionary; the "test" subset is the first
  --gen-sentences verses of the example's test split. Each tool trains the example's transformer (3+3 layers,
  256 wide) for --mt-updates updates and translates with beam 5, batch 64. A barely trained model would
  babble to max length, and each tool would babble differently; --min-len N --max-len-a 0 --max-len-b N
  makes every hypothesis exactly N tokens (+ EOS) in both tools, so they do the same number of decoder
  steps on the same batches and sentences/s compares like with like (the token counts are printed to show
  it). Figure: "Translated N sentences (T tokens) in Xs (Y sentences/s)", decoding only.
- generate-ensemble: the same, with each tool's model twice (--path a.pt:a.pt), an ensemble of two.
- constraints: fairseq-interactive --constraints on the same verses, each with one constraint (the second
  piece of its reference), the same decoding flags; figure: lines / interactive's "translation time".
- preprocess: the full raw text of the embedded plays (all examples/language_model/data/shakespeare/*_gut.txt,
  66,684 lines as Python's text mode reads them; fairseq-lite needs less than a second for it, less than
  either tool's start-up) repeated --repeat times, `--only-source` with --workers 1 and 2. fairseq-preprocess
  prints no timing, so the whole command is timed from outside; lines/s is also given net of the start-up (the wall
  time of the same command with --help, interpreter start and imports). The outputs of the two tools are
  checked to be byte-identical.

Prints `name: value` lines with ratio lines lite/fairseq (`generate_sentences_per_s_ratio: 2.10x`).
"""

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fairseq_compare import (  # noqa: E402
    ROOT,
    TINY_LM_FLAGS,
    add_fairseq_python_arg,
    check_fairseq_python,
    machine_line,
    prepare_lm_data,
    print_ratio,
    print_value,
    run_tool,
    startup_seconds,
)

TOOLS = ("fairseq", "lite")
PLAYS = ROOT / "examples" / "language_model" / "data" / "shakespeare"
# examples/translation/run.sh's model; dropout and the label-smoothed loss do not change decoding speed.
MT_FLAGS = [
    "--task",
    "translation",
    "--source-lang",
    "en",
    "--target-lang",
    "es",
    "--arch",
    "transformer_iwslt_de_en",
    "--share-all-embeddings",
    "--encoder-layers",
    "3",
    "--decoder-layers",
    "3",
    "--encoder-embed-dim",
    "256",
    "--decoder-embed-dim",
    "256",
    "--encoder-ffn-embed-dim",
    "512",
    "--decoder-ffn-embed-dim",
    "512",
    "--encoder-attention-heads",
    "4",
    "--decoder-attention-heads",
    "4",
    "--dropout",
    "0.2",
    "--criterion",
    "label_smoothed_cross_entropy",
    "--label-smoothing",
    "0.1",
    "--optimizer",
    "adam",
    "--adam-betas",
    "(0.9, 0.98)",
    "--lr",
    "0.002",
    "--lr-scheduler",
    "inverse_sqrt",
    "--warmup-updates",
    "200",
    "--max-tokens",
    "4096",
    "--num-workers",
    "0",
    "--seed",
    "1",
    "--cpu",
]


def alternate(repeats: int, run: Callable[[str], float]) -> dict[str, list[float]]:
    """run(tool) `repeats` times per tool, fairseq and lite taking turns (and turns going first)."""
    values: dict[str, list[float]] = {tool: [] for tool in TOOLS}
    for i in range(repeats):
        for tool in TOOLS if i % 2 == 0 else TOOLS[::-1]:
            values[tool].append(run(tool))
    return values


def report(prefix: str, unit: str, values: dict[str, list[float]], target: float) -> None:
    for tool in TOOLS:
        runs = ", ".join(f"{v:.1f}" for v in values[tool])
        print_value(f"{prefix}_{tool}", f"{statistics.median(values[tool]):.1f} {unit} (median; runs: {runs})")
    print_ratio(f"{prefix}_ratio", statistics.median(values["lite"]), statistics.median(values["fairseq"]), target)


def train(tool: str, flags: list[str], updates: int, save_dir: Path, args, workdir: Path) -> str:
    run_tool(
        tool,
        "train",
        [
            *flags,
            "--max-update",
            updates,
            "--disable-validation",
            "--no-epoch-checkpoints",
            "--save-dir",
            save_dir,
            "--log-format",
            "simple",
        ],
        args.fairseq_python,
        workdir,
    )
    return str(save_dir / "checkpoint_last.pt")


def bench_eval_lm(args, workdir: Path) -> None:
    data = prepare_lm_data(workdir / "lm")
    ckpts = {
        tool: train(tool, [data, *TINY_LM_FLAGS], args.lm_updates, workdir / f"lm_{tool}", args, workdir)
        for tool in TOOLS
    }
    ppl: dict[str, str] = {}

    def run(tool: str) -> float:
        out = run_tool(
            tool,
            "eval-lm",
            [
                data,
                "--path",
                ckpts[tool],
                "--gen-subset",
                "test",
                "--tokens-per-sample",
                "128",
                "--max-tokens",
                "8192",
                "--num-workers",
                "0",
                "--cpu",
            ],
            args.fairseq_python,
            workdir,
            threads=args.threads,
        ).output
        found = re.search(r"Evaluated ([\d,]+) tokens in [\d.]+s \(([\d.]+) tokens/s\)", out)
        ppl[tool] = re.search(r"Perplexity: ([\d.]+)", out).group(1)
        if not found or found.group(1) == "0":
            sys.exit(f"error: {tool} eval-lm scored nothing:\n{out[-2000:]}")
        ppl[tool] += f" on {found.group(1)} tokens"
        return float(found.group(2))

    values = alternate(args.repeats, run)
    print_value(
        "eval_lm_model",
        f"tiny LM of train_speed.py, {args.lm_updates} updates; test perplexity: "
        f"fairseq {ppl['fairseq']}, lite {ppl['lite']}",
    )
    report("eval_lm_tokens_per_s", f"tokens/s at {args.threads} thread(s)", values, target=1.5)


_TRANSLATION: dict[str, object] = {}


def translation_setup(args, workdir: Path) -> tuple[Path, dict[str, str], Path]:
    """(data-bin, each tool's trained checkpoint, the sentencepiece-encoded text), made once per run."""
    if _TRANSLATION:
        return _TRANSLATION["data"], _TRANSLATION["ckpts"], _TRANSLATION["spm"]  # type: ignore[return-value]
    spm = workdir / "mt" / "spm"
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "translation" / "prepare_kjv_rv1909.py"), "--out", str(spm)],
        check=True,
        capture_output=True,
    )
    for lang in ("en", "es"):  # the benchmark's test subset: the first verses of the example's test split
        lines = (spm / f"test.{lang}").read_text(encoding="utf-8").splitlines(keepends=True)
        (spm / f"bench.{lang}").write_text("".join(lines[: args.gen_sentences]), encoding="utf-8")
    data = workdir / "mt" / "data-bin"
    from fairseq_cli.preprocess import main as preprocess

    # fairseq-train 0.12.2 loads the valid split even with --disable-validation.
    preprocess(
        [
            "--source-lang",
            "en",
            "--target-lang",
            "es",
            "--joined-dictionary",
            "--trainpref",
            str(spm / "train"),
            "--validpref",
            str(spm / "valid"),
            "--testpref",
            str(spm / "bench"),
            "--destdir",
            str(data),
            "--workers",
            "2",
        ]
    )
    ckpts = {
        tool: train(tool, [str(data), *MT_FLAGS], args.mt_updates, workdir / f"mt_{tool}", args, workdir)
        for tool in TOOLS
    }
    _TRANSLATION.update(data=data, ckpts=ckpts, spm=spm)
    return data, ckpts, spm


def decoding_flags(args) -> list[str]:
    n = args.gen_len
    return ["--beam", "5", "--batch-size", "64", "--min-len", n, "--max-len-a", "0", "--max-len-b", n]


def bench_generate(args, workdir: Path, ensemble: bool = False) -> None:
    """fairseq-generate on the test verses; with `ensemble`, each tool's model twice (--path a.pt:a.pt)."""
    data, ckpts, _ = translation_setup(args, workdir)
    counts: dict[str, str] = {}

    def run(tool: str) -> float:
        path = f"{ckpts[tool]}:{ckpts[tool]}" if ensemble else ckpts[tool]
        out = run_tool(
            tool,
            "generate",
            [data, "--path", path, "--gen-subset", "test", *decoding_flags(args), "--num-workers", "0", "--cpu"],
            args.fairseq_python,
            workdir,
            threads=args.threads,
        ).output
        found = re.search(r"Translated ([\d,]+) sentences \(([\d,]+) tokens\) in [\d.]+s \(([\d.]+) sentences/s", out)
        if not found:
            sys.exit(f"error: no 'Translated ...' line from {tool} generate:\n{out[-2000:]}")
        counts[tool] = f"{found.group(1)} sentences, {found.group(2)} tokens"
        return float(found.group(3))

    name = "generate_ensemble" if ensemble else "generate"
    values = alternate(args.repeats, run)
    print_value(
        f"{name}_setup",
        f"beam 5, batch 64, every hypothesis {args.gen_len} tokens + EOS{', an ensemble of 2' if ensemble else ''}; "
        f"translated: fairseq {counts['fairseq']}, lite {counts['lite']}",
    )
    report(f"{name}_sentences_per_s", f"sentences/s at {args.threads} thread(s)", values, target=2.0)


def bench_generate_ensemble(args, workdir: Path) -> None:
    bench_generate(args, workdir, ensemble=True)


def bench_constraints(args, workdir: Path) -> None:
    """fairseq-interactive --constraints on the test verses, each with one constraint: the second piece of
    its reference translation. Figure: sentences over interactive's "translation time" (decoding only)."""
    data, ckpts, spm = translation_setup(args, workdir)
    sources = (spm / "bench.en").read_text(encoding="utf-8").splitlines()
    references = (spm / "bench.es").read_text(encoding="utf-8").splitlines()
    lines = [f"{src}\t{ref.split()[min(1, len(ref.split()) - 1)]}" for src, ref in zip(sources, references)]
    inputs = spm.parent / "constrained.en"  # next to the shared data (made under the first benchmark's dir)
    inputs.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def run(tool: str) -> float:
        out = run_tool(
            tool,
            "interactive",
            [data, "--path", ckpts[tool], "--constraints", "--input", inputs, "--buffer-size", "64"]
            + [*decoding_flags(args), "--cpu"],
            args.fairseq_python,
            workdir,
            threads=args.threads,
        ).output
        found = re.search(r"translation time: ([\d.]+)", out)
        if not found or out.count("\nH-") != len(lines):
            sys.exit(f"error: {tool} interactive did not translate every line:\n{out[-2000:]}")
        return len(lines) / float(found.group(1))

    values = alternate(args.repeats, run)
    print_value("constraints_setup", f"{len(lines)} verses, one constraint each, --constraints (ordered), beam 5")
    report("constraints_sentences_per_s", f"sentences/s at {args.threads} thread(s)", values, target=2.0)


def bench_preprocess(args, workdir: Path) -> None:
    plays = [p.read_bytes() for p in sorted(PLAYS.glob("*_gut.txt"))]
    text = b"".join(t if t.endswith(b"\n") else t + b"\n" for t in plays)  # no two plays share a line
    raw = workdir / "shakespeare.raw.txt"
    raw.write_bytes(text * args.repeat)
    with open(raw, encoding="utf-8") as f:  # lines as both tools read them (text mode)
        lines = sum(1 for _ in f)
    print_value(
        "preprocess_input",
        f"{lines:,} lines ({raw.stat().st_size / 1e6:.1f} MB): the raw plays x{args.repeat}, --only-source",
    )
    startup = {
        tool: statistics.median(startup_seconds(tool, "preprocess", args.fairseq_python, workdir) for _ in range(2))
        for tool in TOOLS
    }
    print_value(
        "preprocess_startup_s",
        f"fairseq {startup['fairseq']:.2f}, lite {startup['lite']:.2f} (`fairseq-preprocess --help`)",
    )
    for workers in (1, 2):
        walls: dict[str, list[float]] = {}

        def run(tool: str) -> float:
            dest = workdir / f"pre_{tool}_{workers}"
            wall = run_tool(
                tool,
                "preprocess",
                ["--only-source", "--trainpref", raw, "--destdir", dest, "--workers", workers],
                args.fairseq_python,
                workdir,
            ).seconds
            walls.setdefault(tool, []).append(wall)
            return wall

        alternate(args.preprocess_repeats, run)
        for name in ("dict.txt", "train.bin", "train.idx"):
            if (workdir / f"pre_fairseq_{workers}" / name).read_bytes() != (
                workdir / f"pre_lite_{workers}" / name
            ).read_bytes():
                print_value(f"preprocess_workers{workers}_identical_outputs", f"NO ({name} differs)")
                break
        else:
            print_value(f"preprocess_workers{workers}_identical_outputs", "yes (dict.txt, train.bin, train.idx)")
        wall = {tool: statistics.median(walls[tool]) for tool in TOOLS}
        net = {tool: lines / max(wall[tool] - startup[tool], 1e-3) for tool in TOOLS}
        for tool in TOOLS:
            print_value(
                f"preprocess_workers{workers}_{tool}",
                f"{wall[tool]:.2f} s wall, {lines / wall[tool]:,.0f} lines/s end to end, "
                f"{net[tool]:,.0f} lines/s net of start-up",
            )
        print_ratio(f"preprocess_workers{workers}_lines_per_s_ratio", net["lite"], net["fairseq"], target=3.0)
        print_ratio(f"preprocess_workers{workers}_lines_per_s_ratio_end_to_end", wall["fairseq"], wall["lite"])


BENCHMARKS = {
    "eval-lm": bench_eval_lm,
    "generate": bench_generate,
    "generate-ensemble": bench_generate_ensemble,
    "constraints": bench_constraints,
    "preprocess": bench_preprocess,
}


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_fairseq_python_arg(parser)
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {list(BENCHMARKS)}")
    parser.add_argument("--repeats", type=int, default=3, help="eval-lm and generate runs per tool")
    parser.add_argument("--lm-updates", type=int, default=20, help="training updates of each tool's LM")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of eval-lm and generate, both tools")
    parser.add_argument("--mt-updates", type=int, default=5, help="training updates of each tool's translation model")
    parser.add_argument("--gen-sentences", type=int, default=192, help="test verses to translate")
    parser.add_argument("--gen-len", type=int, default=32, help="tokens per hypothesis (min-len = max-len-b)")
    parser.add_argument("--repeat", type=int, default=3, help="copies of the raw plays given to preprocess")
    parser.add_argument("--preprocess-repeats", type=int, default=1, help="preprocess runs per tool and --workers")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep data, checkpoints and outputs here (default: a temporary directory, removed)",
    )
    args = parser.parse_args()
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in BENCHMARKS]
    if unknown:
        parser.error(f"--only: unknown {unknown}; choose from {list(BENCHMARKS)}")

    version = check_fairseq_python(args.fairseq_python)
    print_value("machine", machine_line())
    print_value("reference", f"fairseq {version} ({args.fairseq_python})")
    with tempfile.TemporaryDirectory(prefix="inference_speed_") as tmp:
        for name in chosen:
            workdir = (args.workdir or Path(tmp)) / name
            workdir.mkdir(parents=True, exist_ok=args.workdir is not None)
            BENCHMARKS[name](args, workdir)


if __name__ == "__main__":
    main()
