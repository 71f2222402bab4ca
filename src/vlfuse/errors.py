"""Exception types. Every message names the file, row, column or key at fault and what was expected."""


class VLFuseError(Exception):
    """Base class for all vlfuse errors."""


class ConfigError(VLFuseError):
    """A configuration key is unknown, missing or has the wrong type or value."""


class DataError(VLFuseError):
    """A table, image or text value cannot be used (names the file / row / column and the expectation)."""


class CheckpointError(VLFuseError):
    """A checkpoint or run directory is missing, incomplete or incompatible."""


class MissingPackageError(VLFuseError):
    """An optional package that holds pretrained weights (or a library they need) is not installed; the message
    names the pip command that installs it."""


class TaskError(VLFuseError):
    """An operation was asked of a run whose task does not support it (names the task and what it supports)."""
