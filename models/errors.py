"""The one error type for bad user input: scripts print its message as a single line and exit non-zero."""


class ConfigError(ValueError):
    """A bad preset, knob, path or value. The message names the key and the fix, on one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # always one line
