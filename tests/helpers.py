"""Assertions shared by test modules (tests/ is on sys.path under pytest's default import mode)."""

from __future__ import annotations

import re

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def assert_one_line_error(result, *needles: str) -> str:
    output = ANSI.sub("", result.output)
    assert result.exit_code == 2, output
    assert "Traceback" not in output
    text = ANSI.sub("", result.stderr or result.output).strip()
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("error:"), text
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]
