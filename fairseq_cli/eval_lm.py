"""fairseq-eval-lm: loss (base 2) and perplexity of a trained language model on a data split."""

import logging
import sys
from collections.abc import Sequence

from fairseq_lite.cli_utils import setup_logging, user_errors_exit
from fairseq_lite.dataclass.legacy_args import LegacyParser
from fairseq_lite.errors import ConfigError

logger = logging.getLogger("fairseq_cli.eval_lm")

EVAL_GROUPS = ("common", "common_eval", "dataset", "eval_lm")


def main(argv: Sequence[str] | None = None) -> dict[str, float | None]:
    from fairseq_lite.checkpoint import load_for_command
    from fairseq_lite.eval_lm import evaluate
    from fairseq_lite.optim.precision import Precision
    from fairseq_lite.trainer import select_device

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = LegacyParser(
        "fairseq-eval-lm",
        "Evaluate a language model (loss in base 2, perplexity).",
        EVAL_GROUPS,
        ("task",),
        positional_data=True,
        defaults={"task": "language_modeling"},
    )
    _, given, targets = parser.parse(argv)
    values = {key: value for dest, value in given.items() for key in targets[dest]}
    path = values.get("common_eval.path")
    if not path:
        raise ConfigError("--path is required: the checkpoint to evaluate (e.g. checkpoints/checkpoint_best.pt)")
    if ":" in path:
        raise ConfigError(f"--path {path}: evaluating an ensemble of checkpoints is not supported; give one file")

    cfg, task, model = load_for_command(path, values, EVAL_GROUPS)
    if cfg.dataset.max_tokens is None and cfg.dataset.batch_size is None:
        cfg.dataset.max_tokens = cfg.task.tokens_per_sample * 8

    device = select_device(cfg)
    model.to(device)
    precision = Precision(cfg.common, device)
    logger.info(f"evaluating {path} on '{cfg.dataset.gen_subset}' of {cfg.task.data} ({device}, {precision.mode})")
    return evaluate(cfg, task, model, device, autocast=precision.autocast)


@user_errors_exit("fairseq-eval-lm")
def cli_main() -> None:
    setup_logging()
    main()


if __name__ == "__main__":
    cli_main()
