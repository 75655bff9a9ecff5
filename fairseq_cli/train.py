"""fairseq-train: fairseq's legacy flags, resolved to the same config as fairseq-hydra-train."""

import logging
import os
import sys
from collections.abc import Sequence

from fairseq_lite.cli_utils import setup_logging, user_errors_exit
from fairseq_lite.options.compose import compose_config
from fairseq_lite.options.legacy_args import LegacyParser
from fairseq_lite.training import call_main, check_training_config, train

logger = logging.getLogger("fairseq_cli.train")

TRAIN_GROUPS = ("common", "distributed_training", "dataset", "optimization", "checkpoint")
TRAIN_COMPONENTS = ("task", "model", "criterion", "optimizer", "lr_scheduler")
# fairseq's defaults where it has them; optimizer has none in fairseq ("optimizer is required!").
TRAIN_DEFAULTS = {
    "task": "translation",  # fairseq's default: fairseq-train without --task trains a translation model
    "criterion": "cross_entropy",
    "optimizer": "adam",
    "lr_scheduler": "fixed",
}


def train_parser() -> LegacyParser:
    return LegacyParser(
        "fairseq-train",
        "Train a model (fairseq's legacy command-line interface).",
        TRAIN_GROUPS,
        TRAIN_COMPONENTS,
        positional_data=True,
        defaults=TRAIN_DEFAULTS,
    )


def legacy_overrides(argv: Sequence[str]) -> list[str]:
    return train_parser().to_overrides(argv)


def main(argv: Sequence[str] | None = None) -> float | None:
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = compose_config(legacy_overrides(argv))
    check_training_config(cfg)  # every mistake is one line, before anything is printed or built
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun starts every rank with this command: say it once
        logger.info(f"config: {dict(cfg)}")
    return call_main(cfg, train, prog="fairseq-train", flags=True)


@user_errors_exit("fairseq-train", flags=True)
def cli_main() -> None:
    setup_logging()
    main()


if __name__ == "__main__":
    cli_main()
