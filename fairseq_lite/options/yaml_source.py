"""fairseq's YAML files, read as fairseq (on Hydra 1.0) read them.

fairseq's config files start with `# @package _group_`: "this file's package is its group" (a file
`model/transformer_lm/2_layers.yaml` configures `model`). Hydra 1.1 made that the default and Hydra 1.2
dropped the keyword, so Hydra 1.3 reads `_group_` as a literal key and the file lands at `_group_:`.

`FairseqYamlSource` is a Hydra ConfigSource (scheme `fairseq://`) that loads YAML like Hydra's own file
source but takes `# @package _group_` for what it meant; `FairseqSearchPath`, a Hydra SearchPathPlugin,
turns the directory entries of the search path (the primary config directory, `--config-path`) into such
sources, and `as_source_path` does the same for the directories fairseq-lite adds itself (`--config-dir`,
`hydra.searchpath`). Everything else is Hydra's: composition, defaults lists, overrides.
"""

import os

from hydra._internal.core_plugins.file_config_source import FileConfigSource
from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.plugins import Plugins
from hydra.plugins.config_source import ConfigResult
from hydra.plugins.search_path_plugin import SearchPathPlugin

SCHEME = "fairseq"


class FairseqYamlSource(FileConfigSource):
    @staticmethod
    def scheme() -> str:
        return SCHEME

    def load_config(self, config_path: str) -> ConfigResult:
        result = super().load_config(config_path)
        if result.header.get("package") == "_group_":
            # Hydra 1.0's meaning: the group's own package (for a primary config: the root).
            result.header["package"] = None
        return result


def as_source_path(path: str) -> str:
    """A directory (or a file:// URL) as a search-path entry read by FairseqYamlSource."""
    if path.startswith("file://"):
        path = path[len("file://") :]
    if "://" in path:
        return path  # pkg://, structured://, ...: not a directory of ours to read
    return f"{SCHEME}://{os.path.abspath(os.path.expanduser(path))}"


class FairseqSearchPath(SearchPathPlugin):
    """Every directory on the search path is read as fairseq's YAML (Hydra's own pkg:// configs are not)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for element in search_path.get_path():
            if element.provider != "hydra" and (element.path.startswith("file://") or "://" not in element.path):
                element.path = as_source_path(element.path)


def register() -> None:
    """Make both known to Hydra (idempotent)."""
    plugins = Plugins.instance()
    plugins.register(FairseqYamlSource)
    plugins.register(FairseqSearchPath)
