"""The dependency direction (fluxact -> codegen -> translator) and no import circle, read from
the source: every import statement counts, also one inside a function (a lazy import is still
an edge); only ``if TYPE_CHECKING:`` blocks, which never run, are left out."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: package -> its folder in the checkout (pyproject's package-dir)
PACKAGES = {"fluxact": "fluxact", "fluxact.kernels": "fluxact/kernels",
            "fluxact.translator": "translator", "fluxact.codegen": "codegen"}


def _runtime_nodes(tree: ast.AST):
    """The nodes of ``tree`` outside ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def import_graph() -> dict[str, set[str]]:
    """module -> the fluxact modules it imports (a package's facade __init__ excluded as a
    target: its names load lazily from the submodules, which are the real edges)."""
    modules = {}
    for package, folder in PACKAGES.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = (package, ast.parse(path.read_text()))
    graph: dict[str, set[str]] = {}
    for name, (package, tree) in modules.items():
        deps = set()
        for node in _runtime_nodes(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1])
                else:
                    base = ""
                target = ".".join(p for p in (base, node.module) if p)
                candidates = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            deps.update(c for c in candidates if c in modules and c not in PACKAGES)
        deps.discard(name)
        graph[name] = deps
    return graph


def test_no_import_circle() -> None:
    graph = import_graph()
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])


def test_dependency_direction() -> None:
    graph = import_graph()
    for module, deps in graph.items():
        if module.startswith("fluxact.translator"):
            allowed = ("fluxact.translator",)
        elif module.startswith("fluxact.codegen"):
            allowed = ("fluxact.codegen", "fluxact.translator")
        elif module.startswith("fluxact.kernels") or module in ("fluxact.runtime",
                                                                "fluxact.timestep"):
            # what generated code imports: no SymPy, so nothing of the translator but its
            # plain records, and nothing of codegen (fluxact.files: the standard library,
            # for the private folder of torch's compiler cache)
            allowed = ("fluxact.kernels", "fluxact.runtime", "fluxact.translator.errors",
                       "fluxact.translator.facts", "fluxact.files")
        else:
            continue
        wrong = sorted(d for d in deps if not d.startswith(allowed))
        assert not wrong, f"{module} imports {wrong}"


def test_the_graph_sees_lazy_imports() -> None:
    """The checks above would pass on an empty graph: the reader finds an import inside a
    function (translation.py's numeric evaluation) and a relative import two levels up."""
    graph = import_graph()
    assert "fluxact.translator.numeric" in graph["fluxact.translator.translation"]
    assert "fluxact.translator.translation" in graph["fluxact.codegen.prepare"]
    assert "fluxact.translator.translation" not in graph["fluxact.translator.verify"]
