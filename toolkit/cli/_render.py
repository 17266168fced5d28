"""How the CLI renders for people: help without a type after flags, tables that are never cut."""

from __future__ import annotations

from typing import Any

from rich.console import Console


def hide_flag_types() -> None:
    """Typer's rich help prints a `<type>` after every option, flags included (`--json <bool>`), though a
    flag takes no value; its plain-text help already skips them. Make the rich help do the same."""
    try:
        from typer.core import TyperOption
    except ImportError:  # a Typer without this class renders flags without a type already
        return
    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "_hides_flags", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if self.is_flag else original(self, ctx)

    display_type_rich._hides_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


def print_table(console: Console, table: Any) -> None:
    """Print a table whole. A console that is not a terminal (a pipe, a CI log) is 80 columns wide and rich
    would cut wide tables to fit (`pyto…`); there, the table is printed at the width it needs instead."""
    if console.is_terminal:
        console.print(table)
        return
    natural = console.measure(table, options=console.options.update_width(10_000)).maximum
    wide = Console(file=console.file, width=max(console.width, natural), color_system=console.color_system)
    wide.print(table)
