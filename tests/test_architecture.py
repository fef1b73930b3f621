"""The layering of ARCHITECTURE.md, enforced on the source.

Every ``import`` and ``from ... import`` in ``src/dropkit`` is read with
``ast`` -- module level and inside functions alike, since a lazy import is
still a dependency -- and so are string literals naming a dropkit module
(``importlib.import_module("dropkit.x")``), so that hiding an import in a
string does not get past the check. Two rules:

1. A core module (the layers up to ``uncertainty``) imports nothing from a
   leaf package (``integrations``, ``training``, ``bench``, ``report``,
   ``cli``, ``demo``, ``sweep``, ``active``, ``baselines``, ``score``), and
   no core layer imports a layer above it.
2. There is no import cycle between modules, other than a package's
   ``__init__`` re-exporting its own submodules.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Core layers, lowest first: a module may import its own layer and those below.
CORE_LAYERS: dict[str, int] = {
    "dropkit._validation": 0,
    "dropkit._optional": 0,
    "dropkit._io": 0,
    "dropkit._call": 0,
    "dropkit._moved": 0,
    "dropkit._patch": 0,
    "dropkit.kernels": 1,
    "dropkit.schedules": 1,
    "dropkit.functional": 2,
    "dropkit.nn": 2,
    "dropkit._registry": 2,
    "dropkit.metrics": 2,
    "dropkit.sites": 3,
    "dropkit.modes": 3,
    "dropkit.swap": 3,
    "dropkit.uncertainty": 4,
}
LEAVES = (
    "integrations",
    "training",
    "bench",
    "report",
    "cli",
    "demo",
    "sweep",
    "active",
    "baselines",
    "score",
)
# Where the core may NAME a leaf module in a string (never import it):
# - the package root maps public names to their modules lazily (PEP 562);
# - swap.ATTENTION_ADAPTERS, the documented extension point of fast_dropout:
#   the adapter is imported only once its framework is in sys.modules.
NAMING_ALLOWED: dict[str, set[str] | None] = {
    "dropkit": None,  # any
    "dropkit.swap": {"dropkit.integrations.hf_attention"},
}

_MODULE_STRING = re.compile(r"^dropkit(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def _name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_name(p): p for p in sorted((SRC / "dropkit").rglob("*.py"))}


MODULES = _modules()


def _resolve(target: str) -> str | None:
    """The module a dotted import target lives in (``dropkit.a.B`` -> ``dropkit.a``)."""
    while target and target not in MODULES:
        if "." not in target:
            return None
        target = target.rsplit(".", 1)[0]
    return target or None


def _imports(name: str) -> tuple[set[str], set[str]]:
    """(imported modules, modules named in string literals) of one module."""
    path = MODULES[name]
    return _read(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")


def _read(source: str, name: str, is_package: bool) -> tuple[set[str], set[str]]:
    tree = ast.parse(source)
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    named: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from pkg import sub` imports the submodule pkg.sub
            targets = [f"{module}.{alias.name}" for alias in node.names] + [module]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _MODULE_STRING.match(node.value):
                resolved = _resolve(node.value)
                if resolved:
                    named.add(resolved)
            continue
        for target in targets:
            if target.startswith("dropkit"):
                resolved = _resolve(target)
                if resolved and resolved != name:
                    found.add(resolved)
    return found, named


GRAPH = {name: _imports(name) for name in MODULES}


def _leaf(name: str) -> bool:
    parts = name.split(".")
    return len(parts) > 1 and parts[1] in LEAVES


def _core_layer(name: str) -> int | None:
    for prefix, layer in sorted(CORE_LAYERS.items(), key=lambda kv: -len(kv[0])):
        if name == prefix or name.startswith(prefix + "."):
            return layer
    return None


def test_every_module_has_a_layer() -> None:
    """A new top-level module must be placed in ARCHITECTURE.md and here."""
    unplaced = [n for n in MODULES if n != "dropkit" and not _leaf(n) and _core_layer(n) is None]
    assert unplaced == []


@pytest.mark.parametrize("name", [n for n in MODULES if not _leaf(n)])
def test_core_imports_no_leaf_and_no_higher_layer(name: str) -> None:
    imported, named = GRAPH[name]
    leaves = sorted(m for m in imported if _leaf(m))
    assert leaves == [], f"{name} imports leaf modules"
    allowed = NAMING_ALLOWED.get(name, set())
    if allowed is not None:
        assert sorted(m for m in named if _leaf(m) and m not in allowed) == [], (
            f"{name} names leaf modules"
        )
    layer = _core_layer(name)
    if layer is None:  # the package root: lazy re-exports only
        return
    higher = sorted(m for m in imported if (other := _core_layer(m)) is not None and other > layer)
    assert higher == [], f"{name} (layer {layer}) imports higher core layers"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, (imported, _named) in GRAPH.items():
        # a package __init__ re-exporting its own submodules is not a dependency
        edges[name] = {m for m in imported if not m.startswith(name + ".")}
    return edges


def test_no_import_cycles() -> None:
    assert _cycles(_edges()) == []


def test_cycle_finder_finds_a_cycle() -> None:
    """The check above can fail: a planted cycle is reported."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_reader_sees_lazy_relative_and_string_imports() -> None:
    """The checks above can fail: imports hidden in functions, relative or in strings are read."""
    source = (
        "import importlib\n"
        "def f():\n"
        "    from dropkit.bench import mc\n"
        "    from ..metrics import ece\n"
        "    return importlib.import_module('dropkit.report.render')\n"
    )
    imported, named = _read(source, "dropkit.uncertainty.predict", is_package=False)
    assert {"dropkit.bench.mc", "dropkit.metrics"} <= imported
    assert named == {"dropkit.report.render"}
    assert _leaf("dropkit.bench.mc") and _core_layer("dropkit.metrics") == 2
