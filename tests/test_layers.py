"""The package's layout is its architecture: the import graph among symbptt's modules (lazy,
function-level imports included; ``if TYPE_CHECKING:`` imports left out) has no cycle, and each
layer imports only the layers below it:

    errors, limits, fileio, terminal          (base)
    core                                      (spec, cells, programs, rules, derivation)
    printing                                  (text, LaTeX, Markdown)
    codegen                                   (the generated module; owns its Jinja environment)
    api, arguments                            (the public Derivation; the layer options)
    verification                              (references, relative error, tolerances)
    explain, check, flow, scalar              (the learner tools, one package each)
    cli, examples, __init__, __main__         (the top)

The graph is read from the source with :mod:`ast`, nothing imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "symbptt"

LAYERS = {
    "base": 0,
    "core": 1,
    "printing": 2,
    "codegen": 3,
    "api": 4,
    "verification": 5,
    "learner": 6,
    "top": 7,
}
LAYER_OF = {
    "errors": "base",
    "limits": "base",
    "fileio": "base",
    "terminal": "base",
    "core": "core",
    "printing": "printing",
    "codegen": "codegen",
    "api": "api",
    "arguments": "api",
    "verification": "verification",
    "explain": "learner",
    "check": "learner",
    "flow": "learner",
    "scalar": "learner",
    "cli": "top",
    "examples": "top",
    "__main__": "top",
    "": "top",
}
"""Each top-level module or subpackage of symbptt (``""``: the package's ``__init__``) and its
layer."""

LEARNER_TOOLS = ("explain", "check", "flow", "scalar")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        found[".".join(parts)] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    return skipped


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The symbptt modules ``name`` imports anywhere in its source (relative to the package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    package = [part for part in package if part]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("symbptt."):
                    found.add(alias.name.removeprefix("symbptt."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
            elif (node.module or "").startswith("symbptt"):
                base = []
            else:
                continue
            module = (node.module or "").removeprefix("symbptt").lstrip(".")
            target = ".".join(base + ([module] if module else []))
            for alias in node.names:
                full = f"{target}.{alias.name}" if target else alias.name
                found.add(full if full in known else target)
    found.discard(name)
    return {module for module in found if module in known}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_is_read_with_lazy_imports(graph):
    """A function-level import counts: the CLI's derive loads the API inside a function."""
    assert "api" in graph["arguments"]
    assert "core.spec" in graph["core.derivation"]


def test_no_import_cycle(graph):
    assert _cycles(graph) == []


def _layer(module: str) -> str:
    top = module.split(".")[0]
    assert top in LAYER_OF, f"{module}: add its package to LAYER_OF"
    return LAYER_OF[top]


def test_every_layer_imports_only_layers_below_it(graph):
    upward = [
        f"{module} ({_layer(module)}) imports {target} ({_layer(target)})"
        for module, targets in graph.items()
        for target in targets
        if LAYERS[_layer(target)] > LAYERS[_layer(module)]
    ]
    assert upward == []


def test_learner_tools_do_not_import_each_other_or_the_cli(graph):
    crossing = [
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module.split(".")[0] in LEARNER_TOOLS
        for target in targets
        if target.split(".")[0] in {*LEARNER_TOOLS, "cli"} - {module.split(".")[0]}
    ]
    assert crossing == []


def test_the_cli_imports_its_commands_by_name(graph):
    source = (PACKAGE / "cli.py").read_text(encoding="utf-8")
    assert "import_module" not in source and "importlib" not in source
    assert {f"{tool}.command" for tool in LEARNER_TOOLS} <= graph["cli"]
