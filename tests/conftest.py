"""Shared fixtures: a tiny real corpus (from the embedded Shakespeare plays), binarized once."""

import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLAYS = ROOT / "examples" / "language_model" / "data" / "shakespeare"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tests run on 2 cores next to each other: keep torch to one thread each so they don't thrash.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def tokenized_lines(play: str, start: int, count: int):
    token = re.compile(r"\w+(?:'\w+)*|[^\w\s]")
    lines = [" ".join(token.findall(line)) for line in (PLAYS / play).read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    return lines[start : start + count]


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """train/valid/test text files: a few hundred lines of Macbeth."""
    out = tmp_path_factory.mktemp("corpus")
    for split, start, count in (("train", 0, 600), ("valid", 600, 80), ("test", 680, 80)):
        (out / f"{split}.tokens").write_text("\n".join(tokenized_lines("macbeth_gut.txt", start, count)) + "\n")
    return out


@pytest.fixture(scope="session")
def tiny_data_bin(tiny_corpus, tmp_path_factory) -> Path:
    from fairseq_cli.preprocess import main as preprocess

    dest = tmp_path_factory.mktemp("data-bin")
    preprocess(
        [
            "--only-source",
            "--trainpref",
            str(tiny_corpus / "train.tokens"),
            "--validpref",
            str(tiny_corpus / "valid.tokens"),
            "--testpref",
            str(tiny_corpus / "test.tokens"),
            "--destdir",
            str(dest),
            "--workers",
            "1",
        ]
    )
    return dest


def tiny_lm_overrides(data: Path, save_dir: Path, max_update: int = 12, extra=()):
    """Hydra overrides for a model small enough to train in about a second."""
    return [
        "task=language_modeling",
        f"task.data={data}",
        "task.tokens_per_sample=32",
        "model=transformer_lm/transformer_lm_gpt",
        "model.decoder_layers=1",
        "model.decoder_embed_dim=32",
        # the arch YAML's embedding and output widths are 768, as fairseq's: this model is 32 wide throughout
        "model.decoder_input_dim=32",
        "model.decoder_output_dim=32",
        "model.decoder_ffn_embed_dim=64",
        "model.decoder_attention_heads=2",
        "optimizer=adam",
        "optimization.lr=[0.003]",
        "lr_scheduler=inverse_sqrt",
        "lr_scheduler.warmup_updates=4",
        f"optimization.max_update={max_update}",
        "dataset.max_tokens=256",
        "dataset.num_workers=0",
        f"checkpoint.save_dir={save_dir}",
        "common.log_format=json",
        "common.log_interval=1",
        *extra,
    ]


def reduced_metrics(reduce_metrics, logging_outputs, rounded=False):
    """What `reduce_metrics(logging_outputs)` (fairseq's contract: it logs with metrics.log_*) logs, as
    {name: value}: the meters' unrounded averages and sums unless `rounded` (what a log line shows)."""
    from fairseq_lite.logging import metrics
    from fairseq_lite.logging.meters import AverageMeter, SumMeter

    with metrics.aggregate(new_root=True) as agg:
        reduce_metrics(list(logging_outputs))
    if rounded:
        return dict(agg.get_smoothed_values())
    values = {}
    for name, meter in agg.items():
        if isinstance(meter, AverageMeter):
            values[name] = meter.avg
        elif isinstance(meter, SumMeter):
            values[name] = meter.sum
        else:
            values[name] = agg.get_smoothed_value(name)
    return values
