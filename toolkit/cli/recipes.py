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
    """List the shipped recipes: name, task, architecture and default data."""
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
    table = Table(title="recipes (toolkit train NAME)")
    for col in ("name", "alias", "task", "arch", "default data", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["alias"] or "", r["task"], r["arch"], r["data"], r["description"])
    console.print(table)
