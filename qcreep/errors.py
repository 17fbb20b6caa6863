"""Errors that users of qcreep can see.

Every error raised because of bad input derives from :class:`QcreepError`. The command-line tool
turns it into one line on stderr and exit code 2, so its message must say what was wrong and what
would be valid.
"""


class QcreepError(ValueError):
    """Bad input: an unknown name, a wrong shape, too few qubits, a broken config or data file."""


class DataError(QcreepError):
    """A dataset file is missing, truncated or corrupt."""


class ConfigError(QcreepError):
    """A configuration value or file is invalid."""


class CheckpointError(QcreepError):
    """A checkpoint does not belong to this run (another config or another qcreep version)."""


class OutputError(QcreepError):
    """The results folder cannot be written: not a folder, read-only, full, or held by another writer."""
