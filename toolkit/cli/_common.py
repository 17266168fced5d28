"""Shared CLI plumbing: consoles, the --debug switch and one-line errors."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from toolkit.errors import ToolkitError

console = Console()
err_console = Console(stderr=True)
STATE = {"debug": False}

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Turn ToolkitError into `error: ...` on stderr and exit code 2 (the traceback only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ToolkitError as exc:
            if STATE["debug"]:
                raise
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # a bug, not a user error: still one line, exit 1, traceback with --debug
            if STATE["debug"]:
                raise
            raise fail(
                f"unexpected {exc.__class__.__name__}: {exc} (rerun with --debug for the traceback)", 1
            ) from None

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    """Plain JSON on stdout, for scripts (no rich markup or wrapping)."""
    typer.echo(json.dumps(obj, indent=2, default=str))
