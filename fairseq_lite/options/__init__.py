"""From a command line (or a user's YAML, or a checkpoint's stored config) to a validated config:

initialize.py   components and plugins registered in Hydra's ConfigStore; the bundled config tree
compose.py      compose_config / finalize_config / config_from_dict: the one way to a config
schema.py       the schema check: typed_config, one-line messages, renamed fields
overrides.py    fairseq users' overrides made to work on any primary config; error explanations
legacy_args.py  fairseq-train's argparse flags, generated from the dataclasses
hydra_cli.py    fairseq-hydra-train's command line around Hydra
"""

from fairseq_lite.options.compose import compose_config, config_from_dict, finalize_config

__all__ = ["compose_config", "config_from_dict", "finalize_config"]
