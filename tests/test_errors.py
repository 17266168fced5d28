"""toolkit.errors.one_line: the one helper that makes an exception's message one line."""

from __future__ import annotations

from toolkit.errors import ToolkitError, one_line


def test_joins_continuation_lines_and_drops_colour_and_onnxruntime_prefix():
    exc = RuntimeError(
        "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions\n index: 0 Got: 30"
    )
    assert one_line(exc) == "Got invalid dimensions index: 0 Got: 30"
    assert one_line(ValueError("\x1b[31mred\x1b[0m\n  text")) == "red text"


def test_type_first_when_asked_or_when_there_is_no_message():
    assert one_line(KeyError(), with_type=False) == "KeyError"
    assert one_line(ValueError("bad value"), with_type=True) == "ValueError: bad value"
    assert one_line(ToolkitError("a\nb")) == "a b"


def test_limit_and_plain_text():
    text = one_line("word " * 200, limit=50)
    assert len(text) == 50 and text.endswith("...") and "\n" not in text
    assert one_line("already one line") == "already one line"
