"""App settings, read once from the environment.

Azure Functions hands app settings to the worker as environment variables, and
so do ``local.settings.json`` under Core Tools and the project's local host, so
the environment is the only source. Each setting is checked here, up front, so
a typo fails with the setting's name rather than deep inside a run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from shared.errors import ConfigError
from shared.limits import Limits

#: Name of the storage connection. The blob trigger's ``connection`` and the
#: pipeline's own clients both resolve it the way the Functions host does: the
#: setting itself holds a connection string, or ``<name>__serviceUri`` etc.
STORAGE_CONNECTION = "ParquetStorage"

PREFIX = "RECOMPRESS_"

MIN_LEVEL, MAX_LEVEL = 1, 22

#: zstd level 1 is the default. With per-column encodings chosen first, the
#: level hardly moves the size: on the 5M-row reference table levels 1, 3, 6
#: and 9 wrote 57.85, 58.01, 57.72 and 57.68 MB, while wall time rose 1.30x,
#: 1.44x and 1.82x over level 1 (bench/results.md, `make bench`).
DEFAULT_LEVEL = 1

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024, "ki": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2, "mi": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "gi": 1024**3,
}


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline may be told by its operator."""

    input_container: str = "input"
    output_container: str = "output"
    zstd_level: int = DEFAULT_LEVEL
    row_group_size: int = 1024 * 1024
    columns: tuple[str, ...] | None = None
    ranged_read_threshold: int = 64 * 1024**2
    block_size: int = 8 * 1024**2
    max_body_size: int = 100 * 1024**2
    transform: str | None = None
    download_concurrency: int = 4
    upload_concurrency: int = 4
    quarantine_container: str = "quarantine"
    delete_source: bool = False
    max_concurrent_files: int = 2
    max_blob_size: int = 50 * 1024**3
    max_columns: int = Limits.max_columns
    max_nesting_depth: int = Limits.max_nesting_depth
    max_rows: int = Limits.max_rows
    max_row_group_bytes: int = Limits.max_row_group_bytes
    deadline_seconds: int = Limits.deadline_seconds
    retry_total: int = 5
    retry_backoff: float = 1.0
    read_timeout: int = 120
    tune_encodings: bool = True
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every ``RECOMPRESS_*`` setting; defaults for the rest."""
        source = dict(os.environ if env is None else env)
        reader = _Reader(source)
        return cls(
            input_container=reader.container("INPUT_CONTAINER", cls.input_container),
            output_container=reader.container("OUTPUT_CONTAINER", cls.output_container),
            zstd_level=reader.integer("ZSTD_LEVEL", cls.zstd_level, MIN_LEVEL, MAX_LEVEL),
            row_group_size=reader.integer("ROW_GROUP_SIZE", cls.row_group_size, 1, 2**31),
            columns=reader.columns("COLUMNS"),
            ranged_read_threshold=reader.size("RANGED_READ_THRESHOLD", cls.ranged_read_threshold),
            block_size=reader.size("BLOCK_SIZE", cls.block_size, low=64 * 1024, high=4000 * 1024**2),
            max_body_size=reader.size("MAX_BODY_SIZE", cls.max_body_size),
            transform=reader.text("TRANSFORM"),
            download_concurrency=reader.integer("DOWNLOAD_CONCURRENCY", cls.download_concurrency, 1, 64),
            upload_concurrency=reader.integer("UPLOAD_CONCURRENCY", cls.upload_concurrency, 1, 64),
            quarantine_container=reader.container("QUARANTINE_CONTAINER", cls.quarantine_container),
            delete_source=reader.flag("DELETE_SOURCE", cls.delete_source),
            max_concurrent_files=reader.integer("MAX_CONCURRENT_FILES", cls.max_concurrent_files, 1, 256),
            max_blob_size=reader.size("MAX_BLOB_SIZE", cls.max_blob_size),
            max_columns=reader.integer("MAX_COLUMNS", cls.max_columns, 1, 10**7),
            max_nesting_depth=reader.integer("MAX_NESTING_DEPTH", cls.max_nesting_depth, 1, 10**4),
            max_rows=reader.integer("MAX_ROWS", cls.max_rows, 0, 2**62),
            max_row_group_bytes=reader.size("MAX_ROW_GROUP_BYTES", cls.max_row_group_bytes),
            deadline_seconds=reader.integer("DEADLINE_SECONDS", cls.deadline_seconds, 1, 7 * 24 * 3600),
            retry_total=reader.integer("RETRY_TOTAL", cls.retry_total, 0, 20),
            retry_backoff=reader.seconds("RETRY_BACKOFF", cls.retry_backoff),
            read_timeout=reader.integer("READ_TIMEOUT", cls.read_timeout, 1, 3600),
            tune_encodings=reader.flag("TUNE_ENCODINGS", cls.tune_encodings),
            env=source,
        )

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with per-request choices applied (``None`` keeps the setting)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]


def parse_level(raw: str, subject: str = "level") -> int:
    """Parse a zstd level the way every entry point (setting, query, CLI) must."""
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(subject, f"must be a whole number from {MIN_LEVEL} to {MAX_LEVEL}, got {raw!r}") from None
    if not MIN_LEVEL <= value <= MAX_LEVEL:
        raise ConfigError(subject, f"must be from {MIN_LEVEL} to {MAX_LEVEL}, got {value}")
    return value


def parse_columns(raw: str, subject: str = "columns") -> tuple[str, ...] | None:
    """Split ``a,b,c``; blank means all columns. Duplicates are refused as a likely typo."""
    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not names:
        return None
    seen = {n for n in names if names.count(n) > 1}
    if seen:
        raise ConfigError(subject, f"names a column twice: {', '.join(map(repr, sorted(seen)))}")
    return names


def parse_size(raw: str, subject: str) -> int:
    """Parse ``67108864``, ``64MiB`` or ``100MB`` into bytes."""
    match = _SIZE.match(raw)
    if not match:
        raise ConfigError(subject, f"must be a size such as 67108864, 64MiB or 100MB, got {raw!r}")
    unit = (match.group(2) or "").lower()
    return int(match.group(1)) * _UNITS[unit]


class _Reader:
    """Reads prefixed settings and turns each bad value into a ConfigError naming it."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, key: str) -> str | None:
        value = self._env.get(PREFIX + key, "").strip()
        return value or None

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        raw = self.text(key)
        if raw is None:
            return default
        if key == "ZSTD_LEVEL":
            return parse_level(raw, PREFIX + key)
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(PREFIX + key, f"must be a whole number, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(PREFIX + key, f"must be from {low} to {high}, got {value}")
        return value

    def size(self, key: str, default: int, low: int = 1, high: int = 2**62) -> int:
        raw = self.text(key)
        if raw is None:
            return default
        value = parse_size(raw, PREFIX + key)
        if not low <= value <= high:
            raise ConfigError(PREFIX + key, f"must be from {low} to {high} bytes, got {value}")
        return value

    def seconds(self, key: str, default: float) -> float:
        raw = self.text(key)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(PREFIX + key, f"must be a number of seconds, got {raw!r}") from None
        if not 0 <= value <= 600:
            raise ConfigError(PREFIX + key, f"must be from 0 to 600 seconds, got {raw}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        raw = self.text(key)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(PREFIX + key, f"must be true or false, got {raw!r}")

    def columns(self, key: str) -> tuple[str, ...] | None:
        raw = self.text(key)
        return None if raw is None else parse_columns(raw, PREFIX + key)

    def container(self, key: str, default: str) -> str:
        name = self.text(key) or default
        if not re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", name):
            raise ConfigError(
                PREFIX + key,
                f"{name!r} is not a valid container name (3-63 lowercase letters, digits and single hyphens)",
            )
        return name
