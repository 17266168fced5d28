"""User errors: ToolkitError (a one-line message, exit code 2) and one_line, the one message flattener.

ToolkitError is the one exception type that reaches users as a one-line message; one_line makes any
exception's message one line (the CLI, export, quantize, validate, tune and the server use it).
"""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the dynamo exporter colours its messages


class ToolkitError(Exception):
    """A problem with the user's input: the message says what is wrong and what is allowed."""


def one_line(exc: BaseException | str, limit: int = 300, with_type: bool = False) -> str:
    """An exception's message (or a text) on one line, within `limit` characters: colour codes and
    onnxruntime's "[ONNXRuntimeError] : 2 : X :" prefix dropped, continuation lines joined (they hold the
    figures: "index: 0 Got: 30 Expected: 2"). `with_type` puts the exception's class first
    ("ValueError: ..."), as does an exception without a message."""
    text = " ".join(_ANSI.sub("", str(exc)).split())
    if text.startswith("[ONNXRuntimeError]"):
        text = text.split(" : ", 3)[-1]
    if isinstance(exc, BaseException) and (with_type or not text):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
