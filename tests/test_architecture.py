"""The package's shape, read from its source with ast: no import cycles (imports inside functions count), no
private names imported across modules."""

from __future__ import annotations

import ast
from pathlib import Path

import toolkit

ROOT = Path(toolkit.__file__).parent


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package is its __init__.py)."""
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module a dotted name lives in: itself, or the nearest enclosing module."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for every import of toolkit in a module, wherever it
    stands (top level, functions, conditionals). `from a import b` names module a.b when b is a module."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(_owner(a.name), "", node.lineno) for a in node.names if a.name.startswith("toolkit")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] != "toolkit":
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((full if full in MODULES else _owner(base), alias.name, node.lineno))
    return [(m, name, line) for m, name, line in found if m and m != module]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
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
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_inside_toolkit():
    graph = {m: {target for target, _, _ in _imports(m)} for m in MODULES}
    cycles = _cycles(graph)
    detail = []
    for cycle in cycles:
        members = set(cycle)
        edges = [f"{m} -> {t} (line {line})" for m in cycle for t, _, line in _imports(m) if t in members]
        detail.append("; ".join(edges))
    assert not cycles, "import cycles: " + " | ".join(detail)


def test_no_module_imports_another_modules_private_names():
    """`from toolkit.x import _name` across modules: a private name has one user, its own module (a private
    module, such as a package's `_core`, is for the modules of its package)."""
    found = [
        f"{m} imports {name} from {target} (line {line})"
        for m in MODULES
        for target, name, line in _imports(m)
        if name.startswith("_") and not name.startswith("__") and not target.endswith(f".{name}")
    ]
    assert not found, "; ".join(found)


def test_one_helper_makes_error_messages_one_line():
    """toolkit.errors.one_line is the helper; the edge runner's core keeps its own copy because a bundle
    ships it without toolkit (it may import nothing from the package)."""
    allowed = {("toolkit.errors", "one_line"), ("toolkit.runtime.processing", "one_line")}
    found = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and ("first_line" in node.name or "one_line" in node.name):
                if (module, node.name) not in allowed:
                    found.append(f"{module}.{node.name}")
    assert not found, f"one-line error helpers besides toolkit.errors.one_line: {found}"


MAX_LINES = 100  # functions short enough to read at once (STYLE: under ~60, never over 100)


def _is_typer_command(node: ast.FunctionDef) -> bool:
    """A CLI command: its parameters are declared with typer.Option / typer.Argument."""
    args = [*node.args.args, *node.args.kwonlyargs]
    return any(a.annotation is not None and "typer." in ast.unparse(a.annotation) for a in args)


def test_no_function_is_longer_than_a_screen():
    """Whole functions count, decorators and signatures included, except a Typer command's signature
    (its options, each with its help text): for those the body counts."""
    long = []
    for module, path in MODULES.items():
        if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):  # generated by grpcio-tools
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            start = node.body[0].lineno if _is_typer_command(node) else node.lineno
            start = min([start, *(d.lineno for d in node.decorator_list)]) if start == node.lineno else start
            lines = node.end_lineno - start + 1
            if lines > MAX_LINES:
                long.append(f"{module}.{node.name}: {lines} lines")
    assert not long, "; ".join(long)
