"""Every name docs/porting.md lists imports from the module it is listed under: the list a fairseq user
ports against stays true."""

import importlib
import re
from pathlib import Path

import pytest

PORTING = Path(__file__).resolve().parents[1] / "docs" / "porting.md"


def listed_names() -> list[tuple[str, str]]:
    names = []
    for line in PORTING.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^- `(fairseq_lite[\w.]*)`: (.+)$", line)
        if match:
            names += [(match.group(1), name) for name in re.findall(r"`(\w+)`", match.group(2))]
    return names


NAMES = listed_names()


def test_the_list_is_there():
    modules = {module for module, _ in NAMES}
    assert len(NAMES) > 100 and {"fairseq_lite.models", "fairseq_lite.utils", "fairseq_lite.data"} <= modules


@pytest.mark.parametrize("module, name", NAMES, ids=[f"{m}.{n}" for m, n in NAMES])
def test_each_listed_name_imports(module, name):
    assert hasattr(importlib.import_module(module), name)
