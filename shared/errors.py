"""Errors the pipeline raises on purpose.

Every error carries a one-line message that names the thing at fault and the
problem, so the CLI, the HTTP routes and the logs can show it as it is. The
class says who must act: the sender of a bad file (:class:`InputError`), the
operator of a bad setting (:class:`ConfigError`), or nobody yet, because
storage may answer on a later try (:class:`StorageError`).
"""

from __future__ import annotations


class RecompressError(Exception):
    """Base of every error the app raises deliberately."""

    def __init__(self, subject: str, problem: str) -> None:
        self.subject = subject
        self.problem = problem
        super().__init__(f"{subject}: {problem}")


class InputError(RecompressError):
    """The input itself is unusable; trying again will not help."""


class NotParquetError(InputError):
    """The bytes are not a readable Parquet file (bad magic, truncated, corrupt)."""


class OptionError(InputError):
    """A per-request option (level, columns) is invalid."""


class ConfigError(RecompressError):
    """An app setting is missing or malformed; the operator must fix it."""


class StorageError(RecompressError):
    """Storage failed or refused; the same call may succeed later."""


class NotFoundError(StorageError):
    """The named blob or container does not exist."""


class CredentialError(ConfigError):
    """No configured credential could authenticate to storage."""


class UnsupportedError(InputError):
    """The file is valid Parquet, but holds something that cannot be rewritten without loss."""


class LimitError(InputError):
    """The input breaks a configured limit (size, columns, nesting, rows, row-group bytes, time)."""


class VerificationError(RecompressError):
    """The written file does not match what was read; it was not published."""


class ConflictError(StorageError):
    """Another writer published the output first; a conditional write refused to overwrite it."""
