"""Make every registered component known to Hydra.

Each component's dataclass goes into Hydra's ConfigStore under its group and registered name, so
`model=transformer_lm` composes the typed, validated `TransformerLanguageModelConfig`, and the
bundled YAML (config/model/transformer_lm/<arch>.yaml) layers an architecture's values on top.
"""

import importlib
import logging
from pathlib import Path

from hydra.core.config_store import ConfigStore

import fairseq_lite
from fairseq_lite.dataclass.configs import FairseqConfig
from fairseq_lite.errors import ConfigError
from fairseq_lite.options.yaml_source import register as register_yaml_source
from fairseq_lite.registry import COMPONENT_REGISTRIES, component_node
from fairseq_lite.utils import import_user_module

logger = logging.getLogger(__name__)

SCHEMA_NAME = "fairseq_lite_schema"
CONFIG_NAME = "config"  # the primary config of the bundled tree: config/config.yaml
_COMPONENT_PACKAGES = (
    "fairseq_lite.tasks",
    "fairseq_lite.models",
    "fairseq_lite.criterions",
    "fairseq_lite.optim",
    "fairseq_lite.optim.lr_scheduler",
    "fairseq_lite.data.encoders",
    "fairseq_lite.scoring",
)


def import_components(user_dir: str | None = None) -> None:
    """Import the built-in components (which registers them) and, optionally, a user's plugin dir."""
    for package in _COMPONENT_PACKAGES:
        importlib.import_module(package)
    if user_dir:
        import_user_module(user_dir)


# fairseq's log line format for Hydra runs (selected by fairseq-hydra-train as hydra/job_logging=fairseq_lite),
# so that fairseq users' log parsers keep working; the run's log file is <run dir>/train.log.
JOB_LOGGING = {
    "version": 1,
    "formatters": {
        "fairseq": {"format": "%(asctime)s | %(levelname)s | %(name)s | %(message)s", "datefmt": "%Y-%m-%d %H:%M:%S"}
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "fairseq", "stream": "ext://sys.stdout"},
        "file": {
            "class": "logging.FileHandler",
            "formatter": "fairseq",
            "filename": "${hydra.runtime.output_dir}/${hydra.job.name}.log",
        },
    },
    "root": {"level": "INFO", "handlers": ["console", "file"]},
    "disable_existing_loggers": False,
}


def hydra_init() -> None:
    """Store the schema and every registered component in Hydra's ConfigStore, and make Hydra read YAML
    as fairseq does (options/yaml_source.py). Idempotent."""
    register_yaml_source()
    cs = ConfigStore.instance()
    cs.store(name=SCHEMA_NAME, node=FairseqConfig, provider="fairseq_lite")
    cs.store(group="hydra/job_logging", name="fairseq_lite", node=JOB_LOGGING, provider="fairseq_lite")
    for kind, registry in COMPONENT_REGISTRIES.items():
        for name in registry.choices():
            cs.store(group=kind, name=name, node=component_node(kind, name), provider="fairseq_lite")


def bundled_config_dir() -> str:
    """The config/ tree shipped with fairseq-lite, for both editable and regular installs."""
    package_dir = Path(fairseq_lite.__file__).resolve().parent
    for candidate in (package_dir / "config", package_dir.parent / "config"):
        if (candidate / f"{CONFIG_NAME}.yaml").is_file():
            return str(candidate)
    raise ConfigError(
        f"fairseq-lite's bundled config tree is missing (looked in {package_dir / 'config'} "
        f"and {package_dir.parent / 'config'}); reinstall fairseq-lite"
    )
