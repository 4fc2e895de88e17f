"""Errors a user can cause, reported as one line that names the problem and the fix."""


class LRABenchError(Exception):
    """Base class: the message is a complete, one-line explanation for the user."""


class ConfigError(LRABenchError, ValueError):
    """A configuration value is wrong (unknown key, bad type, impossible combination)."""


class DataError(LRABenchError):
    """A data file is missing, unreadable or malformed."""
