"""fairseq-hydra-train: Hydra's command line (dotted overrides, --config-dir/--config-name, -m sweeps).

Before Hydra runs, the command line is composed once and the run checked, so that a mistake is one line
(`fairseq-hydra-train: error: ...`) before anything is printed or written, instead of Hydra's report.
"""

import logging
import os
import sys

from omegaconf import DictConfig, OmegaConf

from fairseq_lite.cli_utils import print_user_error, user_errors_exit
from fairseq_lite.errors import FairseqLiteError, TrainingInterrupted
from fairseq_lite.options.compose import user_dir_from_overrides
from fairseq_lite.options.hydra_cli import compose_first_job, finish_job_config, hydra_argv, split_argv
from fairseq_lite.options.initialize import CONFIG_NAME, bundled_config_dir, hydra_init, import_components
from fairseq_lite.training import call_main, check_training_config, train

logger = logging.getLogger("fairseq_cli.hydra_train")
PROG = "fairseq-hydra-train"


def hydra_main(cfg: DictConfig) -> float | None:
    """Hydra's task function. Returns the best validation value, for Hydra sweepers to optimize."""
    try:
        cfg = finish_job_config(cfg)
        check_training_config(cfg)
        if int(os.environ.get("RANK", "0")) == 0:  # torchrun starts every rank with this command: say it once
            logger.info("\n" + OmegaConf.to_yaml(cfg))
        return call_main(cfg, train, prog=PROG, flags=False)
    except FairseqLiteError as e:  # Hydra would report it as a failed job with a traceback
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print_user_error(PROG, e)
        sys.exit(1)
    except TrainingInterrupted as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        sys.exit(128 + e.signum)


@user_errors_exit(PROG)
def cli_main() -> None:
    import hydra

    flags, overrides = split_argv(sys.argv[1:])
    # Plugins must register before Hydra composes, so that their names can be selected.
    import_components(user_dir_from_overrides(overrides))
    first_job = compose_first_job(flags, overrides, app_dir=os.path.dirname(os.path.abspath(__file__)))
    if first_job is not None:
        cfg, save_dir_known = first_job
        check_training_config(cfg, resume=save_dir_known)
    hydra_init()
    sys.argv = [sys.argv[0], *hydra_argv(flags, overrides)]
    hydra.main(config_path=bundled_config_dir(), config_name=CONFIG_NAME, version_base="1.3")(hydra_main)()


if __name__ == "__main__":
    cli_main()
