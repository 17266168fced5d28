"""The module map of toolkit/ for docs/architecture.md, read from the code: units, their docstrings, imports.

A unit is a top-level module or package of toolkit/ (toolkit/runtime/ is split one level further, since it
is the torch-free half). Imports are read with `ast`, including those inside functions, which the code
uses for optional heavy dependencies; so the map follows the code as modules move.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

SPLIT = ("toolkit.runtime",)  # packages shown by their sub-modules instead of as one box


@dataclass
class Unit:
    name: str  # toolkit.train, toolkit.runtime.server, ...
    path: Path  # the module file or the package folder
    summary: str = ""
    lines: int = 0
    imports: dict[str, bool] = field(default_factory=dict)  # unit -> imported at module level (not lazily)


def _module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    """toolkit.train.loop -> toolkit.train; toolkit.runtime.server.app -> toolkit.runtime.server."""
    parts = module.split(".")
    for split in SPLIT:
        depth = len(split.split("."))
        if module == split or module.startswith(split + "."):
            return ".".join(parts[: depth + 1])
    return ".".join(parts[:2])


def _imported(tree: ast.Module, module: str, is_package: bool) -> dict[tuple[str, str], bool]:
    """Every toolkit import in `module` as (module it names, fall-back) -> at module level (True) or inside
    a function. `from toolkit.x import y` names toolkit.x.y when y is a module, else toolkit.x: the fall-back."""
    top = {id(n) for n in tree.body}
    top |= {id(c) for n in tree.body if isinstance(n, ast.If | ast.Try) for c in ast.walk(n)}
    found: dict[tuple[str, str], bool] = {}
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        names: list[tuple[str, str]] = []
        if isinstance(node, ast.Import):
            names = [(a.name, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [(f"{base}.{a.name}", base) for a in node.names]
        for name in names:
            if name[1] == "toolkit" or name[1].startswith("toolkit."):
                found[name] = found.get(name, False) or id(node) in top
    return found


def scan(root: Path) -> dict[str, Unit]:
    """Units of the package at `root` (the toolkit/ folder), with their summaries and imports."""
    modules = {_module_name(root, p): p for p in sorted(root.rglob("*.py")) if "_pb2" not in p.name}
    units: dict[str, Unit] = {}
    for module, path in modules.items():
        if module == root.name:
            continue
        name = unit_of(module)
        is_package = path.name == "__init__.py"
        unit = units.setdefault(name, Unit(name, path.parent if is_package else path))
        tree = ast.parse(path.read_text())
        doc = (ast.get_docstring(tree) or "").strip().splitlines()
        if doc and (module == name or not unit.summary):
            unit.summary = doc[0]
        unit.lines += len(path.read_text().splitlines())
        for (named, fallback), eager in _imported(tree, module, is_package).items():
            target = named if named in modules else fallback
            if target not in modules or target == root.name:  # the package root holds only the version
                continue
            other = unit_of(target)
            if other != name:
                unit.imports[other] = unit.imports.get(other, False) or eager
    return units


def side(name: str) -> str:
    if name.startswith("toolkit.runtime"):
        return "runtime"
    if name == "toolkit.cli":
        return "cli"
    return "training"


GROUPS = {
    "cli": "CLI: toolkit COMMAND",
    "training": "training side (may import torch)",
    "runtime": "runtime side: toolkit/runtime, never imports torch",
}


def foundations(units: dict[str, Unit], least: int = 5) -> set[str]:
    """Units that import no other unit and that at least `least` others import (errors, io): drawn without
    arrows, or every box would point at them."""
    users = {name: sum(name in u.imports for u in units.values()) for name in units}
    return {name for name, u in units.items() if not u.imports and users[name] >= least}


def mermaid(units: dict[str, Unit]) -> str:
    """A Mermaid flowchart: one box per unit, grouped by side; solid arrows for module-level imports,
    dotted ones for imports inside functions. The CLI's arrows are left out (it reaches almost all), and so
    are the arrows to foundations; units without code (data packages) are not drawn."""
    drawn = {name for name, u in units.items() if u.lines}
    base = foundations(units)
    ids = {name: name.removeprefix("toolkit.").replace(".", "_") for name in units}
    lines = ["flowchart LR"]
    for group, title in GROUPS.items():
        lines.append(f'  subgraph side_{group}["{title}"]')  # ids apart from the units' (cli, runtime)
        for name in sorted(drawn):
            if side(name) == group:
                label = name.removeprefix("toolkit.") + (" (used everywhere)" if name in base else "")
                lines.append(f'    {ids[name]}["{label}"]')
        lines.append("  end")
    for name in sorted(drawn - {"toolkit.cli"}):
        for other, eager in sorted(units[name].imports.items()):
            if other in drawn and other not in base:
                lines.append(f"  {ids[name]} {'-->' if eager else '-.->'} {ids[other]}")
    lines.append("  cli --> side_training")
    lines.append("  cli --> side_runtime")
    return "\n".join(lines)


def table(units: dict[str, Unit], repo: Path) -> str:
    rows = ["| unit | side | what it is (its docstring) | lines | imports |", "|---|---|---|---:|---|"]
    for name in sorted(units):
        u = units[name]
        where = u.path.relative_to(repo).as_posix() + ("/" if u.path.is_dir() else "")
        deps = ", ".join(f"`{d.removeprefix('toolkit.')}`" for d in sorted(u.imports))
        summary = (u.summary or "(no docstring)").replace("|", "\\|")
        rows.append(f"| `{where}` | {side(name)} | {summary} | {u.lines} | {deps} |")
    return "\n".join(rows)
