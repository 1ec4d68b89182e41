"""Errors. Every message is one line that says what was wrong and what to do.

`SensoriumError` is the root; the CLI prints its message without a traceback.
"""


class SensoriumError(Exception):
    """Base of every error Sensorium raises on purpose."""


class UserError(SensoriumError):
    """A developer misused the API (bad tool declaration, bad configuration)."""


class ToolDefinitionError(UserError):
    """A function cannot become a tool; the message names the function."""


class ToolInputError(SensoriumError):
    """Arguments for a tool failed its schema (a planner may retry or fall back)."""


class ImageInputError(SensoriumError):
    """An image could not be read: missing, not an image, truncated, too large."""


class ModelUnavailableError(SensoriumError):
    """A model's weights or package cannot be found; the message says how to provide it."""


class IndexUnavailableError(SensoriumError):
    """The image index cannot be opened or used (another encoder built it, a dead server)."""
