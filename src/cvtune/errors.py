"""One exception hierarchy: the CLI turns any CvtuneError into one `Error: ...` line and exit code 2."""

from __future__ import annotations


class CvtuneError(Exception):
    """Base of every error cvtune reports to the user. The message says what, where and how to fix."""

    exit_code = 2


class ModelError(CvtuneError):
    """A model file is missing, corrupt, unsupported, or unsafe to load."""


class DatasetError(CvtuneError):
    """A dataset folder or file is missing, empty or laid out wrongly."""


class RuntimeUnavailable(CvtuneError):
    """A runtime, engine, target or provider is not available in this installation."""


class UsageError(CvtuneError):
    """An option value cannot be used (bad shape string, ratio out of range, ...)."""


class TrialFailed(CvtuneError):
    """A measurement in a child process crashed, timed out or raised."""


class OutputError(CvtuneError):
    """An output cannot be written: its folder is missing or read-only, the disk is full, or it is in the way."""
