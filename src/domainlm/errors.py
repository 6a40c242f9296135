"""The one error type users see: a single line naming the file, record or key."""


class DomainlmError(Exception):
    """A user-facing error. The CLI prints ``error: <message>`` and exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
