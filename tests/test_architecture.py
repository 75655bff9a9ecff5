"""The layout docs/DESIGN.md promises, checked on the code: no import cycles, no import from a layer
above, and commands that only parse, compose and call.

Imports are read from the source (every `import` and `from ... import`, at module level and inside
functions alike), so an import hidden in a function to dodge a cycle counts like any other.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "fairseq_lite"


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of `package` under `root`."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module `name` refers to: itself, or the longest prefix that is a module."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """module -> the modules of `package` it imports, anywhere in its source."""
    modules = module_files(root, package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    targets.add(_resolve(alias.name, modules))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    # `from pkg import submodule` imports the submodule; `from pkg import name`, pkg.
                    full = f"{source}.{alias.name}"
                    targets.add(full if full in modules else _resolve(source, modules))
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def design_layers() -> list[str]:
    """The layer order of docs/DESIGN.md, bottom first: its numbered lines "N. `name` ..."."""
    text = (ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8")
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\d+\. `(\w+)`", section, flags=re.MULTILINE)


def unit_of(module: str) -> str | None:
    """The layer unit a module belongs to: its top-level package or module under fairseq_lite."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # None: fairseq_lite/__init__.py, below everything


# --- the checks' own checks: they can fail --------------------------------------------------------


def test_cycle_finder_finds_a_cycle_hidden_in_a_function(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from pkg import a  # hidden in a function\n    return a\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.c"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]


def test_cycle_finder_sees_a_package_init_importing_its_importer(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.impl import Thing\n")
    (pkg / "sub" / "impl.py").write_text("from pkg.sub import helper\n")  # `helper` lives in __init__
    assert cycles(import_graph(tmp_path, "pkg")) == [["pkg.sub", "pkg.sub.impl"]]


# --- fairseq_lite ------------------------------------------------------------------------------


def test_no_import_cycles():
    found = cycles(import_graph(ROOT, PACKAGE))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_design_lists_every_package_once():
    layers = design_layers()
    assert len(layers) == len(set(layers)), f"listed twice in docs/DESIGN.md: {layers}"
    units = {unit_of(m) for m in module_files(ROOT, PACKAGE)} - {None}
    assert sorted(units - set(layers)) == [], "packages/modules missing from docs/DESIGN.md's Layers"
    assert sorted(set(layers) - units) == [], "docs/DESIGN.md lists layers that do not exist"


def test_nothing_imports_from_a_layer_above_it():
    rank = {unit: i for i, unit in enumerate(design_layers())}
    upward = []
    for module, targets in import_graph(ROOT, PACKAGE).items():
        source = unit_of(module)
        for target in targets:
            dest = unit_of(target)
            if source is not None and dest is not None and rank[dest] > rank[source]:
                upward.append(f"{module} -> {target} ({source} is below {dest})")
    assert not upward, "imports from a layer above:\n" + "\n".join(sorted(upward))


# --- fairseq_cli ----------------------------------------------------------------------------------

# What a command may use: error reporting, the composition of a config, and the run it starts.
CLI_MAY_IMPORT = ("fairseq_lite.cli_utils", "fairseq_lite.errors", "fairseq_lite.options", "fairseq_lite.training",
                  "fairseq_lite.inference", "fairseq_lite.preprocess", "fairseq_lite.checkpoint")  # fmt: skip


@pytest.mark.parametrize("path", sorted((ROOT / "fairseq_cli").glob("*.py")), ids=lambda p: p.name)
def test_commands_only_parse_compose_and_call(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.While, ast.AsyncFor, ast.ClassDef)):
            pytest.fail(f"{path.name}:{node.lineno}: a {type(node).__name__} belongs in fairseq_lite, not in a command")
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
            assert node.module.startswith(CLI_MAY_IMPORT), f"{path.name} imports {node.module}"
        if isinstance(node, ast.FunctionDef) and not node.name.endswith("parser"):  # argparse definitions: parsing
            length = node.end_lineno - node.lineno + 1
            assert length <= 30, f"{path.name}: {node.name} is {length} lines; the work belongs in fairseq_lite"
