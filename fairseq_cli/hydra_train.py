"""fairseq-hydra-train: Hydra's command line (dotted overrides, --config-dir/--config-name, -m)."""

import logging
import os
import sys

from omegaconf import DictConfig, OmegaConf

from fairseq_lite.cli_utils import one_line, user_errors_exit
from fairseq_lite.dataclass.compose import bundled_config_dir, finalize_config, user_dir_from_overrides
from fairseq_lite.dataclass.initialize import hydra_init, import_components
from fairseq_lite.errors import FairseqLiteError

logger = logging.getLogger("fairseq_cli.hydra_train")


def hydra_main(cfg: DictConfig):
    """Hydra's task function. Returns the best validation value, for Hydra sweepers to optimize."""
    from fairseq_lite.training import train

    try:
        cfg = finalize_config(cfg)
        logger.info("\n" + OmegaConf.to_yaml(cfg))
        return train(cfg)
    except FairseqLiteError as e:
        # Hydra would print our error with a traceback hint; a user error is one line.
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"fairseq-hydra-train: error: {one_line(str(e))}", file=sys.stderr)
        sys.exit(1)


@user_errors_exit("fairseq-hydra-train")
def cli_main() -> None:
    import hydra

    # Plugins must register before Hydra composes, so that their names can be selected.
    import_components(user_dir_from_overrides(sys.argv[1:]))
    hydra_init()
    main = hydra.main(config_path=bundled_config_dir(), config_name="config", version_base="1.3")(hydra_main)
    main()


if __name__ == "__main__":
    cli_main()
