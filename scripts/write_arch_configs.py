"""Write config/model/<model>/<arch>.yaml for every registered architecture.

The Python architecture functions are the source of truth (fairseq-train --arch uses them); these
YAML files give fairseq-hydra-train the same values (`model=transformer_lm/transformer_lm_gpt`).
tests/test_config.py fails when the two disagree: rerun this script after changing an architecture.

    python scripts/write_arch_configs.py
"""

from pathlib import Path

from omegaconf import OmegaConf

from fairseq_lite.options.initialize import import_components
from fairseq_lite.registry import ARCH_REGISTRY

ROOT = Path(__file__).resolve().parent.parent


def arch_yaml(arch_name: str) -> str:
    arch = ARCH_REGISTRY[arch_name]
    filled = dict(sorted(arch.values().items()))
    values = OmegaConf.to_yaml(OmegaConf.create(filled)) if filled else ""  # no values: the model's defaults
    return (
        f"# Architecture {arch_name}: the model '{arch.model}' with these values (written by\n"
        f"# scripts/write_arch_configs.py from the architecture's Python function; do not edit).\n"
        f"defaults:\n  - /model/{arch.model}@_here_\n  - _self_\n\n{values}"
    )


def main():
    import_components()
    for name, arch in sorted(ARCH_REGISTRY.items()):
        path = ROOT / "config" / "model" / arch.model / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(arch_yaml(name))
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
