"""Shared CLI plumbing: consoles, the --debug switch, one-line errors and the few formats tables share."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from toolkit.errors import ToolkitError, one_line

console = Console()
err_console = Console(stderr=True)
STATE = {"debug": False}
# The training extra's packages (pyproject.toml: [project.optional-dependencies] train), by import name.
TRAIN_EXTRA = ("torch", "onnxscript", "sklearn", "matplotlib", "statsmodels", "wordfreq", "optuna")

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
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
            raise fail(one_line(exc, limit=2000)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # a bug, not a user error: still one line, exit 1, traceback with --debug
            if STATE["debug"]:
                raise
            missing = (exc.name or "").split(".")[0] if isinstance(exc, ModuleNotFoundError) else ""
            if missing in TRAIN_EXTRA:  # a runtime-only install running a training-side command
                raise fail(
                    f"this needs {missing}, which is not installed: pip install 'toolkit[train]'"
                ) from None
            raise fail(
                f"unexpected {one_line(exc, with_type=True)} (rerun with --debug for the traceback)", 1
            ) from None

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    """Plain JSON on stdout, for scripts (no rich markup or wrapping)."""
    typer.echo(json.dumps(obj, indent=2, default=str))


def parse_batches(text: str) -> list[int]:
    """ "1,8,64" -> [1, 8, 64]; anything else is a one-line error."""
    try:
        batches = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise ToolkitError(f"--batch must be comma-separated positive integers (got {text!r})") from None
    if not batches or min(batches) < 1:
        raise ToolkitError(f"--batch must be comma-separated positive integers (got {text!r})")
    return batches


def fmt_ms(v: float | None) -> str:
    return "" if v is None else f"{v:.3f}"


def fmt_speed(v: float | None) -> str:
    """A speed-up as "1.23×", in red when it is a slow-down."""
    if v is None:
        return ""
    text = f"{v:.2f}×"
    return f"[red]{text}[/]" if v < 1 else text


def fmt_size(n: int | None) -> str:
    if not n:
        return ""
    return f"{n / 1024:.0f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"


def track_overrides(track: list[str] | None) -> list[str]:
    """`--track mlflow --track tensorboard` as the recipe override train.track=[...] (checked: a missing
    library is named before anything runs; kept in the run's recipe, so --resume tracks the same way)."""
    if not track:
        return []
    import json

    from toolkit.tracking import check_kinds

    return [f"train.track={json.dumps(check_kinds(track))}"]
