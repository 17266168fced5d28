"""docs/cli.md's body: the reference of every `toolkit` command, generated from the Typer app itself with
Typer's own Markdown generator (what `typer toolkit.cli.main utils docs` prints), so it is `--help`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def reference() -> str:
    import typer
    from typer.cli import get_docs_for_click
    from typer.main import get_command

    from toolkit.cli.main import app

    command = get_command(app)
    ctx = typer.Context(command)
    # indent=1: the page's title is the only level-1 heading
    return get_docs_for_click(obj=command, ctx=ctx, name="toolkit", indent=1).strip() + "\n"


def commands() -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command and sub-command of the app as (path, click command), the root first."""
    from typer.main import get_command

    from toolkit.cli.main import app

    def walk(cmd: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        yield path, cmd
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            yield from walk(sub, (*path, name))

    yield from walk(get_command(app), ("toolkit",))
