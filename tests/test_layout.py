"""The package's shape stays as documented: no import cycles, no private names across modules, layers in order.

Every ``import`` in every module counts, at any depth (function bodies too), except those under
``if TYPE_CHECKING:``, which only annotations see and which never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import semsearch

PACKAGE = Path(semsearch.__file__).parent
#: The layers, lowest first: a module may import its own layer and the ones before it, never a later one.
LAYERS = [
    {"errors", "types", "version", "files", "metrics"},
    {"corpus"},
    {"encode"},
    {"rerank"},
    {"index"},
    {"label"},
    {"scale"},
    {"bench"},
    {"serve"},
    {"cli"},
    {"__init__", "__main__"},
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """(module named, names imported from it) for every import that can run."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], 0
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", [a.name for a in node.names], node.level
        stack.extend(ast.iter_child_nodes(node))


def _resolve(module: str, path: Path, target: str, level: int) -> str:
    if level == 0:
        return target
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    modules = _modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    private = []
    for module, path in modules.items():
        for target, names, level in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            base = _resolve(module, path, target, level)
            if not base.startswith("semsearch"):
                continue
            for name in names or [None]:
                sub = f"{base}.{name}" if name else base
                dest = sub if sub in modules else base
                if dest in modules and dest != module:
                    edges[module].add(dest)
                if name and sub not in modules and name.startswith("_") and not name.startswith("__"):
                    private.append(f"{module} imports {name} from {base}")
    return edges, private


def _layer(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    return next(i for i, layer in enumerate(LAYERS) if key in layer)


def test_the_package_has_no_import_cycles():
    edges, _ = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_private_name_is_imported_from_another_module():
    _, private = _graph()
    assert not private, "\n".join(private)


def test_modules_import_only_their_own_layer_and_lower_ones():
    edges, _ = _graph()
    wrong = [f"{a} ({LAYERS[_layer(a)]}) imports {b} ({LAYERS[_layer(b)]})"
             for a, targets in edges.items() for b in targets
             if b != "semsearch" and _layer(b) > _layer(a)]
    assert not wrong, "\n".join(sorted(wrong))


def test_every_module_is_in_a_layer_and_the_checker_sees_imports():
    edges, _ = _graph()
    for module in edges:
        _layer(module)  # raises StopIteration for a module no layer names
    assert "semsearch.index.vectors" in edges["semsearch.index.engine"]
    assert "semsearch.errors" in edges["semsearch.encode.runtime"]
    assert "semsearch.cli.common" in edges["semsearch.cli.search"]
