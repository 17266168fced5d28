"""`toolkit recipes`: list the shipped recipes."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from toolkit.cli._common import console, handle_errors, print_json


@handle_errors
def recipes(
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List the shipped recipes: name (ARCH-TASK), task and default data; --json adds arch and description."""
    from toolkit.recipe import ALIASES, list_recipes

    defaults = {v: k for k, v in ALIASES.items()}
    rows = [
        {
            "name": r.name,
            "alias": defaults.get(r.name),
            "task": r.task,
            "arch": r.arch,
            "data": r.data.source,
            "description": r.description,
        }
        for r in list_recipes()
    ]
    if as_json:
        print_json(rows)
        return
    wide = console.width >= 120  # the description column only where it fits without squeezing the rest
    table = Table(title="recipes: toolkit train NAME (or the architecture for its default recipe)")
    for col in ("name", "default for", "task", "default data"):
        table.add_column(col, no_wrap=True)
    if wide:
        table.add_column("description")
    for r in rows:
        cells = [r["name"], r["alias"] or "", r["task"], r["data"]]
        table.add_row(*cells, *([r["description"]] if wide else []))
    console.print(table)
