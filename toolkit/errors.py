"""The one exception type that reaches users as a one-line message (exit code 2)."""


class ToolkitError(Exception):
    """A problem with the user's input: the message says what is wrong and what is allowed."""
