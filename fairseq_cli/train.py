"""fairseq-train: fairseq's legacy flags, resolved to the same config as fairseq-hydra-train."""

import logging
import sys
from collections.abc import Sequence

from fairseq_lite.cli_utils import setup_logging, user_errors_exit
from fairseq_lite.dataclass.compose import compose_config
from fairseq_lite.dataclass.legacy_args import LegacyParser

logger = logging.getLogger("fairseq_cli.train")

TRAIN_GROUPS = ("common", "distributed_training", "dataset", "optimization", "checkpoint")
TRAIN_COMPONENTS = ("task", "model", "criterion", "optimizer", "lr_scheduler")
# fairseq's defaults where it has them; optimizer has none in fairseq ("optimizer is required!").
TRAIN_DEFAULTS = {
    "task": "language_modeling",
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
    from fairseq_lite.distributed import call_main
    from fairseq_lite.training import train

    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = compose_config(legacy_overrides(argv))
    logger.info(f"config: {dict(cfg)}")
    return call_main(cfg, train)


@user_errors_exit("fairseq-train")
def cli_main() -> None:
    setup_logging()
    main()


if __name__ == "__main__":
    cli_main()
