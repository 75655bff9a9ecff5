"""Write config/model/<model>/<arch>.yaml for every registered architecture.

The Python architecture functions are the source of truth (fairseq-train --arch uses them); these
YAML files give fairseq-hydra-train the same values (`model=transformer_lm/transformer_lm_gpt`).
tests/test_config.py fails when the two disagree: rerun this script after changing an architecture.

    python scripts/write_arch_configs.py
"""

import dataclasses
from pathlib import Path

from omegaconf import OmegaConf

from fairseq_lite.dataclass.legacy import NO_FLAG
from fairseq_lite.options.initialize import import_components
from fairseq_lite.registry import ARCH_REGISTRY, MODEL_REGISTRY

ROOT = Path(__file__).resolve().parent.parent


PROBE = 987_654_321  # a value no architecture uses: where it comes out, the field follows the one probed


def followed_field(arch, name: str, filled: dict) -> str | None:
    """The field a flag-less field (an architecture's own, e.g. lightconv's decoder_output_dim) copies, if any:
    the YAML then interpolates it (`${.decoder_embed_dim}`), so that overriding that field moves this one too,
    as the architecture function does for fairseq-train."""
    sources = [other for other in filled if other != name and arch.values({other: PROBE}).get(name) == PROBE]
    if not sources:
        return None
    # the nearest source: the one the others feed (decoder_embed_dim, not the encoder_embed_dim it copies)
    return min(sources, key=lambda other: sum(v == PROBE for v in arch.values({other: PROBE}).values()))


def arch_yaml(arch_name: str) -> str:
    arch = ARCH_REGISTRY[arch_name]
    filled = dict(sorted(arch.values().items()))
    schema = MODEL_REGISTRY.get(arch.model).dataclass
    flagless = {f.name for f in dataclasses.fields(schema) if f.metadata.get(NO_FLAG)} if schema else set()
    for name in sorted(flagless & set(filled)):
        source = followed_field(arch, name, filled)
        if source is not None:
            filled[name] = "${." + source + "}"
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
