"""Errors the app raises on purpose, and who must act on each.

Every error carries a one-line message that names the thing at fault and the
problem, so the CLI, the HTTP routes and the logs can show it as it is. The
class says who must act:

- the sender of a bad file (:class:`InputError` and its kinds): retrying is
  pointless, so the blob pipeline quarantines the input;
- the operator (:class:`ConfigError`, :class:`TransformError`): a setting or
  their own code is wrong, so the run fails loudly and the host keeps the blob;
- nobody yet (:class:`StorageError`): storage may answer on a later try;
- us (:class:`VerificationError`): the output failed its proof on an input that
  passed every check, which is a bug. Nothing is published and the input is
  not quarantined, so the host retries it and its poison queue keeps it.

The user-facing ``str()`` stays one line. The cause is always chained
(``raise ... from exc``), and what Azure support asks for (the service's error
code and ``x-ms-request-id``) rides on the error and in :meth:`log_detail`.
This module must never format a secret: callers redact before they build one.
"""

from __future__ import annotations


class RecompressError(Exception):
    """Base of every error the app raises deliberately."""

    def __init__(self, subject: str, problem: str, *, code: str | None = None,
                 request_id: str | None = None) -> None:
        self.subject = subject
        self.problem = problem
        self.code = code
        self.request_id = request_id
        super().__init__(f"{subject}: {problem}")

    def log_detail(self) -> str:
        """The one-line message plus what an operator needs to trace it (error code, request id, cause)."""
        extra = [f"code={self.code}"] if self.code else []
        if self.request_id:
            extra.append(f"request-id={self.request_id}")
        cause = self.__cause__
        if cause is not None and not isinstance(cause, RecompressError):
            extra.append(f"cause={type(cause).__name__}")
        return f"{self} [{', '.join(extra)}]" if extra else str(self)


class InputError(RecompressError):
    """The input itself is unusable; trying again will not help."""


class NotParquetError(InputError):
    """The bytes are not a readable Parquet file (bad magic, truncated, corrupt footer)."""


class DamagedError(InputError):
    """The file is Parquet, but a check of it against its own footer failed (counts, pages, offsets)."""


class OptionError(InputError):
    """A per-request option (level, columns, mode) is invalid."""


class UnsupportedError(InputError):
    """The file is valid Parquet, but holds something that cannot be rewritten without loss."""


class LimitError(InputError):
    """The input breaks a configured limit (size, columns, nesting, rows, row-group bytes, time)."""


class ConfigError(RecompressError):
    """An app setting is missing or malformed; the operator must fix it."""


class CredentialError(ConfigError):
    """No configured credential could authenticate to storage."""


class MissingContainerError(ConfigError):
    """A container the settings name does not exist: the operator must create it or change the setting."""


class TransformError(RecompressError):
    """The operator's transform hook raised: their code must change, the input is not to blame."""


class StorageError(RecompressError):
    """Storage failed or refused; the same call may succeed later."""


class NotFoundError(StorageError):
    """The named blob or container does not exist."""


class ConflictError(StorageError):
    """Another writer published the output first; a conditional write refused to overwrite it."""


class VerificationError(RecompressError):
    """The output failed its proof although the input passed every check: a bug, never published."""


class PartMismatchError(VerificationError):
    """A re-encoded part did not decode to the rows it came from.

    Still our bug, never published nor quarantined; under ``auto`` the pipeline
    may retry the file once in exact mode, which does not decode values.
    """


#: What the blob pipeline may quarantine: the input is proven hopeless, whoever sends it again.
QUARANTINABLE: tuple[type[RecompressError], ...] = (InputError,)


def body_too_large(size: int | None, limit: int) -> str:
    """The 413 message, one for the app and the local host; ``size`` is None for a chunked body."""
    amount = f"{size} bytes" if size is not None else f"more than {limit} bytes (chunked)"
    return (f"request body: {amount} is over the {limit}-byte limit (RECOMPRESS_MAX_BODY_SIZE); "
            "upload the file to the input container instead")


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's text (or its type), short enough for a one-line message."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
