"""The one error type for bad user input: scripts print its message as a single line and exit non-zero."""


class ConfigError(ValueError):
    """A bad preset, knob, path or value. The message names the key and the fix, on one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # always one line


class TaskFailed(RuntimeError):
    """A sweep task that failed where the sweep cannot see its exception (a SLURM task): the message names the task
    and the cause, on one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
