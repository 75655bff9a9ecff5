"""fairseq-hydra-train: Hydra's command line (dotted overrides, --config-dir/--config-name, -m sweeps).

Before Hydra runs, the command line is checked by composing it once with the compose API, so a
mistake is one line (`fairseq-hydra-train: error: ...`) instead of Hydra's multi-line report.
"""

import logging
import os
import sys

from omegaconf import DictConfig, OmegaConf

from fairseq_lite.cli_utils import one_line, user_errors_exit
from fairseq_lite.dataclass.compose import (
    CONFIG_NAME,
    bundled_config_dir,
    compose_config,
    finalize_config,
    user_dir_from_overrides,
)
from fairseq_lite.dataclass.initialize import hydra_init, import_components
from fairseq_lite.dataclass.overrides import first_sweep_values, normalize_overrides
from fairseq_lite.errors import FairseqLiteError, TrainingInterrupted

logger = logging.getLogger("fairseq_cli.hydra_train")

# Hydra's own flags: (names, takes a value).
_HYDRA_FLAGS = {
    "--config-path": True,
    "-cp": True,
    "--config-name": True,
    "-cn": True,
    "--config-dir": True,
    "-cd": True,
    "--cfg": True,
    "-c": True,
    "--package": True,
    "-p": True,
    "--info": False,
    "-i": False,
    "--experimental-rerun": True,
    "--shell-completion": False,
    "-sc": False,
}
# Flags after which Hydra prints something instead of running a job.
_NO_RUN_FLAGS = {
    "--cfg",
    "-c",
    "--help",
    "-h",
    "--hydra-help",
    "--info",
    "-i",
    "--version",
    "--shell-completion",
    "-sc",
}


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Hydra flags (kept as given) and overrides (to normalize)."""
    flags, overrides = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if arg.startswith("-") and not arg.startswith(("+", "~")):
            flags.append(arg)
            if _HYDRA_FLAGS.get(name) and "=" not in arg and i + 1 < len(argv):
                flags.append(argv[i + 1])
                i += 1
        else:
            overrides.append(arg)
        i += 1
    return flags, overrides


def flag_value(flags: list[str], *names: str) -> str | None:
    for i, flag in enumerate(flags):
        name, sep, value = flag.partition("=")
        if name in names:
            return value if sep else (flags[i + 1] if i + 1 < len(flags) else None)
    return None


def check_before_running(flags: list[str], overrides: list[str]) -> None:
    """Compose once (the first job of a sweep) so that user errors surface as one line."""
    if any(f.split("=", 1)[0] in _NO_RUN_FLAGS for f in flags):
        return
    if "-m" in flags or "--multirun" in flags:
        first = first_sweep_values(overrides)
        if first is None:
            return
        overrides = first
    task_overrides = [
        o for o in overrides if not o.lstrip("+~").startswith("hydra.") and not o.lstrip("+~").startswith("hydra/")
    ]
    compose_config(
        task_overrides,
        config_dir=flag_value(flags, "--config-dir", "-cd"),
        config_name=flag_value(flags, "--config-name", "-cn") or CONFIG_NAME,
    )


def place_outputs_in_run_dir(cfg: DictConfig) -> None:
    """Checkpoints and tensorboard logs default to the run's own directory, so runs (and the jobs of
    a sweep) never overwrite each other."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    given = {o.lstrip("+~").split("=", 1)[0] for o in hydra_cfg.overrides.task}
    run_dir = hydra_cfg.runtime.output_dir
    if "checkpoint.save_dir" not in given and cfg.checkpoint.save_dir == "checkpoints":
        cfg.checkpoint.save_dir = os.path.join(run_dir, "checkpoints")
    if "common.tensorboard_logdir" not in given and cfg.common.tensorboard_logdir is None:
        cfg.common.tensorboard_logdir = os.path.join(run_dir, "tensorboard")


def hydra_main(cfg: DictConfig) -> float | None:
    """Hydra's task function. Returns the best validation value, for Hydra sweepers to optimize."""
    from fairseq_lite.distributed import call_main
    from fairseq_lite.training import train

    try:
        # Each job of a sweep (possibly in a fresh process, e.g. on SLURM) needs the plugins too.
        import_components(
            OmegaConf.select(cfg, "common.user_dir", default=None)
            or OmegaConf.select(cfg, "_group_.common.user_dir", default=None)
        )
        cfg = finalize_config(cfg)
        place_outputs_in_run_dir(cfg)
        logger.info("\n" + OmegaConf.to_yaml(cfg))
        return call_main(cfg, train)
    except FairseqLiteError as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"fairseq-hydra-train: error: {one_line(str(e))}", file=sys.stderr)
        sys.exit(1)
    except TrainingInterrupted as e:  # Hydra would report it as a failed job with a traceback
        print(f"fairseq-hydra-train: {e}", file=sys.stderr)
        sys.exit(128 + e.signum)


@user_errors_exit("fairseq-hydra-train")
def cli_main() -> None:
    import hydra

    flags, overrides = split_argv(sys.argv[1:])
    # Plugins must register before Hydra composes, so that their names can be selected.
    import_components(user_dir_from_overrides(overrides))
    check_before_running(flags, overrides)
    hydra_init()
    given = {o.lstrip("+~").split("=", 1)[0] for o in overrides}
    run_defaults = [
        o
        for o in ("hydra/job_logging=fairseq_lite", "hydra.job.name=train", "hydra.help.app_name=fairseq-hydra-train")
        if o.split("=", 1)[0] not in given
    ]
    sys.argv = [sys.argv[0], *flags, *run_defaults, *normalize_overrides(overrides)]
    main = hydra.main(config_path=bundled_config_dir(), config_name=CONFIG_NAME, version_base="1.3")(hydra_main)
    main()


if __name__ == "__main__":
    cli_main()
