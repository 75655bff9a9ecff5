"""From a command line (or a user's YAML, or a checkpoint's stored config) to a validated config:

initialize.py   components and plugins registered in Hydra's ConfigStore; the bundled config tree
compose.py      compose_config / finalize_config / config_from_dict: the one way to a config
schema.py       the schema check: typed_config, one-line messages, renamed fields
overrides.py    fairseq users' overrides made to work on any primary config; error explanations
legacy_args.py  fairseq-train's argparse flags, generated from the dataclasses
fairseq_parsers.py  fairseq's `options` for scripts: get_*_parser and parse_args_and_arch
hydra_cli.py    fairseq-hydra-train's command line around Hydra
"""

from fairseq_lite.options.compose import compose_config, config_from_dict, finalize_config
from fairseq_lite.options.fairseq_parsers import (
    get_eval_lm_parser,
    get_generation_parser,
    get_interactive_generation_parser,
    get_parser,
    get_training_parser,
    parse_args_and_arch,
)
from fairseq_lite.utils import eval_bool, eval_str_dict, eval_str_list

__all__ = [
    "compose_config",
    "config_from_dict",
    "eval_bool",
    "eval_str_dict",
    "eval_str_list",
    "finalize_config",
    "get_eval_lm_parser",
    "get_generation_parser",
    "get_interactive_generation_parser",
    "get_parser",
    "get_training_parser",
    "parse_args_and_arch",
]
