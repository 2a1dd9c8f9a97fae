"""App settings: the one place each setting, its default, its bounds and its meaning are written.

Azure Functions hands app settings to the worker as environment variables, and
so do ``local.settings.json`` under Core Tools and the project's local host, so
the environment is the only source. They are read at the start of each
invocation (cheap, and a changed app setting applies without a restart), and
each is checked up front, so a typo fails with the setting's name rather than
deep inside a run.

Everything else derives from :class:`Settings`: the engines' limits, the
README's settings table, ``local.settings.json.example`` and the CLI's help
(``python -m shared settings`` prints the first two; a test proves they match).
This module never touches storage or the network.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from typing import Any, Literal

from shared.errors import ConfigError
from shared.limits import Limits
from shared.readers import POLICIES

#: Name of the storage connection. The blob trigger's ``connection`` and the
#: pipeline's own clients both resolve it the way the Functions host does: the
#: setting itself holds a connection string, or ``<name>__serviceUri`` etc.
STORAGE_CONNECTION = "ParquetStorage"

PREFIX = "RECOMPRESS_"

MIN_LEVEL, MAX_LEVEL = 1, 22
MODES = ("auto", "exact", "reencode")
PROOFS = ("full", "pages")
Mode = Literal["auto", "exact", "reencode"]
Proof = Literal["full", "pages"]

_SIZE = re.compile(r"^\s*([0-9]+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024, "ki": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2, "mi": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "gi": 1024**3,
}
#: Most threads one file's re-encode may use; more only add memory in flight and contention.
MAX_WORKERS = 16
#: Default RECOMPRESS_MEMORY_BUDGET, per file; the arithmetic is in the setting's doc below. The worker's
#: ~0.15 GB is the whole peak RSS of an exact run on the bench (pyarrow and the Azure SDK loaded).
DEFAULT_MEMORY_BUDGET = 512 * 1024**2
_CONTAINER = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]")  # queue names follow the same rules
_TABLE = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")

Parser = Callable[[str, str], Any]


# --------------------------------------------------------------------------- parsers (raw text, subject) -> value


def whole_number(raw: str) -> int:
    """``int()`` for ASCII digits only: Python's also takes ``٣`` or ``1_000``, which no operator means."""
    text = raw.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError(f"not a whole number: {raw!r}")
    return int(text)


def parse_level(raw: str, subject: str = "level") -> int:
    """Parse a zstd level the way every entry point (setting, query, CLI) must."""
    try:
        value = whole_number(raw)
    except ValueError as exc:
        raise ConfigError(subject, f"must be a whole number from {MIN_LEVEL} to {MAX_LEVEL}, got {raw!r}") from exc
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


def parse_choice(options: tuple[str, ...]) -> Parser:
    """A parser accepting one of ``options`` (case-insensitive)."""

    def parse(raw: str, subject: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ConfigError(subject, f"must be one of {', '.join(options)}, got {raw!r}")
        return value

    return parse


def _number(convert: Callable[[str], float], kind: str, low: float, high: float, unit: str = "") -> Parser:
    """A parser for a number of ``kind`` within ``[low, high]``; ``unit`` names what it counts, if anything."""

    def parse(raw: str, subject: str) -> Any:
        try:
            value = convert(raw)
        except ValueError as exc:
            raise ConfigError(subject, f"must be {kind}, got {raw!r}") from exc
        if not low <= value <= high:
            raise ConfigError(subject, f"must be from {_plain(low)} to {_plain(high)}{unit}, got {raw.strip()}")
        return value

    return parse


def _plain(value: float) -> str:
    """``1.0`` as ``1`` and ``2**62`` in full, as an operator would type them."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _integer(low: int, high: int) -> Parser:
    return _number(whole_number, "a whole number", low, high)


def _seconds(low: float, high: float) -> Parser:
    return _number(float, "a number of seconds", low, high, " seconds")


def _size(low: int = 1, high: int = 2**62) -> Parser:
    def parse(raw: str, subject: str) -> int:
        value = parse_size(raw, subject)
        if not low <= value <= high:
            raise ConfigError(subject, f"must be from {low} to {high} bytes, got {value}")
        return value

    return parse


#: The words a flag setting accepts, in any case. Written once: the Bicep that grants roles by a flag uses them too.
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def _flag(raw: str, subject: str) -> bool:
    if raw.lower() in TRUE_WORDS:
        return True
    if raw.lower() in FALSE_WORDS:
        return False
    raise ConfigError(subject, f"must be true or false, got {raw!r}")


def _text(raw: str, subject: str) -> str:
    return raw


def _named(pattern: re.Pattern[str], what: str) -> Parser:
    """A parser for a storage resource name that must match ``pattern``; ``what`` names the kind and its rule."""

    def parse(raw: str, subject: str) -> str:
        if not pattern.fullmatch(raw):
            raise ConfigError(subject, f"{raw!r} is not a valid {what}")
        return raw

    return parse


_container = _named(_CONTAINER, "container name (3-63 lowercase letters, digits and single hyphens)")
_table = _named(_TABLE, "table name (3-63 letters and digits, starting with a letter)")
_queue_name = _named(_CONTAINER, "queue name (3-63 lowercase letters, digits and single hyphens)")


def _queue(raw: str, subject: str) -> str:
    """A queue name, short enough that the host's ``-poison`` twin is one too."""
    value: str = _queue_name(raw, subject)
    if len(value) > 63 - len("-poison"):
        raise ConfigError(subject, f"must leave room for the host's '-poison' suffix (at most 56 characters), "
                                   f"got {len(value)}")
    return value


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it), at most MAX_WORKERS."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        count = os.cpu_count() or 1
    return max(1, min(count, MAX_WORKERS))


def _setting(default: Any, parse: Parser, doc: str, *, shown: str | None = None) -> Any:
    """Declare one ``RECOMPRESS_<FIELD>`` setting: its default, parser and one-line meaning."""
    return field(default=default, metadata={"parse": parse, "doc": doc, "shown": shown})


# --------------------------------------------------------------------------- the settings


@dataclass(frozen=True)
class Connection:
    """How to reach storage, resolved as the Functions host resolves a connection named ``ParquetStorage``.

    Holds no secret in its repr: the connection string may carry an account key.
    """

    connection_string: str | None = field(default=None, repr=False)
    service_uri: str | None = None
    managed_identity: bool = False
    client_id: str | None = None
    queue_service_uri: str | None = None
    table_service_uri: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], name: str = STORAGE_CONNECTION) -> Connection:
        uri = (env.get(f"{name}__serviceUri") or env.get(f"{name}__blobServiceUri") or "").strip()
        return cls(
            connection_string=env.get(name, "").strip() or None,
            service_uri=uri or None,
            managed_identity=env.get(f"{name}__credential", "").strip().lower() == "managedidentity",
            client_id=env.get(f"{name}__clientId", "").strip() or None,
            queue_service_uri=env.get(f"{name}__queueServiceUri", "").strip() or None,
            table_service_uri=env.get(f"{name}__tableServiceUri", "").strip() or None,
        )

    def service_uri_for(self, service: Literal["queue", "table"]) -> str | None:
        """The identity-based endpoint of the queue or table service: as set, else beside the blob endpoint.

        The Functions host needs ``__queueServiceUri`` set explicitly for queue triggers; the app's own
        clients also accept the usual ``https://<account>.blob.core.windows.net`` and derive the rest.
        """
        explicit = self.queue_service_uri if service == "queue" else self.table_service_uri
        if explicit:
            return explicit
        if self.service_uri and ".blob." in self.service_uri:
            return self.service_uri.replace(".blob.", f".{service}.", 1)
        return None

    def how_signed_in(self) -> str:
        """Which credential settings are in force, for error messages (never their values)."""
        name = STORAGE_CONNECTION
        if self.connection_string:
            return f"the connection string in {name}"
        if self.managed_identity:
            extra = f" with {name}__clientId" if self.client_id else ""
            return f"managed identity ({name}__credential=managedidentity{extra})"
        return f"DefaultAzureCredential ({name}__serviceUri without {name}__credential)"


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline may be told by its operator; ``RECOMPRESS_<FIELD NAME>`` sets each field."""

    input_container: str = _setting("input", _container, "container the trigger watches and `/api/process` reads")
    output_container: str = _setting("output", _container, "container outputs are written to, same relative name")
    quarantine_container: str = _setting(
        "quarantine", _container, "where hopeless inputs are copied, with an error report")
    mode: Mode = _setting(
        "auto", parse_choice(MODES),
        "`exact` recompresses pages and keeps everything else; `reencode` decodes and re-encodes "
        "(needed for `columns` and a transform); `auto` re-encodes only where that is provably identical")
    verify: Proof = _setting(
        "full", parse_choice(PROOFS),
        "`full` decodes every value before publishing; `pages` (exact mode only) checks page bytes, "
        "footer and row counts without decoding")
    zstd_level: int | None = _setting(
        None, parse_level, "zstd level 1–22; unset, each mode uses its own measured default "
        "(see \"Choosing the level\")", shown="per mode")
    row_group_size: int = _setting(
        1024 * 1024, _integer(1, 2**31), "rows per output row group when re-encoding; small groups are coalesced")
    columns: tuple[str, ...] | None = _setting(
        None, parse_columns, "comma-separated columns to keep, like `read_parquet(columns=...)`", shown="all")
    transform: str | None = _setting(None, _text, "optional hook `package.module:function`, see below", shown="—")
    tune_encodings: bool = _setting(
        True, _flag, "re-encode: try each column's encodings on a sample and keep the smallest")
    readers: str = _setting(
        "input", parse_choice(POLICIES),
        "who must read a re-encoded output: `input` adds no encoding, page version or annotation the input "
        "lacked; `spark3.3` and `modern` are profiles (see \"Who can read the output\")")
    ranged_read_threshold: int = _setting(
        64 * 1024**2, _size(), "blobs above this are read by byte ranges instead of downloaded whole")
    block_size: int = _setting(
        8 * 1024**2, _size(64 * 1024, 4000 * 1024**2),
        "output is staged in blocks of this size; smaller outputs go in one upload")
    max_body_size: int = _setting(100 * 1024**2, _size(), "largest body `/api/recompress` accepts (413 above)")
    download_concurrency: int = _setting(4, _integer(1, 64), "parallel range requests per download")
    upload_concurrency: int = _setting(
        4, _integer(1, 64), "blocks staged in parallel (also bounds memory: at most this many in flight)")
    delete_source: bool = _setting(
        False, _flag, "opt-in: delete the input after its output is published (only if unchanged since)")
    max_concurrent_files: int = _setting(
        2, _integer(1, 256), "files processed at once per worker process; bounds memory under bursts")
    workers: int | None = _setting(
        None, _integer(1, MAX_WORKERS),
        f"re-encode: threads encoding and proving row groups at once, per file (1–{MAX_WORKERS}); the output's "
        "bytes are the same whatever it is", shown="usable cores")
    memory_budget: int = _setting(
        DEFAULT_MEMORY_BUDGET, _size(16 * 1024**2, 2**40),
        "re-encode: bytes one file may hold in decoded rows, parts in flight, look-ahead and staged blocks; "
        "also bounds an output row group's decoded size. The default fits a 2 GB Flex "
        "Consumption instance: 2 files (`RECOMPRESS_MAX_CONCURRENT_FILES`) × 512 MiB = 1.07 GB, the Functions "
        "host ~0.3 GB and the Python worker with pyarrow ~0.15 GB leave ~0.5 GB for what no budget counts "
        "(Arrow's read buffers, allocator slack)")
    max_blob_size: int = _setting(50 * 1024**3, _size(), "larger inputs are quarantined unread")
    max_columns: int = _setting(Limits.max_columns, _integer(1, 10**7), "leaf columns a file may have")
    max_nesting_depth: int = _setting(
        Limits.max_nesting_depth, _integer(1, 10**4), "levels of list/struct/map nesting")
    max_rows: int = _setting(Limits.max_rows, _integer(0, 2**62), "rows a file may declare")
    max_row_group_bytes: int = _setting(
        Limits.max_row_group_bytes, _size(),
        "declared decompressed size of one row group (stops decompression bombs before decoding)")
    deadline_seconds: int = _setting(
        Limits.deadline_seconds, _integer(1, 7 * 24 * 3600),
        "time budget per file, checked as it runs; inside host.json's 10-minute `functionTimeout`")
    backfill_list_queue: str = _setting(
        "backfill-list", _queue, "backfill: queue of listing pages (one message lists one page of blobs)")
    backfill_blob_queue: str = _setting(
        "backfill-blobs", _queue, "backfill: queue of blobs to process, one message each")
    backfill_table: str = _setting(
        "backfilljobs", _table, "backfill: Table Storage table holding each job's record, outcomes and counters")
    backfill_page_size: int = _setting(
        1000, _integer(1, 5000), "backfill: blobs listed per listing message (5,000 is the service's page limit)")
    retry_total: int = _setting(
        5, _integer(0, 20), "storage retries per request (503/500/timeouts/resets), by the SDK's exponential policy")
    retry_backoff: float = _setting(1.0, _seconds(0, 600), "first backoff in seconds; grows as backoff + 2^attempt")
    read_timeout: int = _setting(120, _integer(1, 3600), "seconds to wait for storage to send data")
    connection: Connection = field(default_factory=Connection)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every ``RECOMPRESS_*`` setting and the storage connection; defaults for the rest."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {"connection": Connection.from_env(source)}
        for spec in documented():
            raw = source.get(env_name(spec), "").strip()
            if raw:
                values[spec.name] = spec.metadata["parse"](raw, env_name(spec))
        return cls(**values).checked()

    def checked(self) -> Settings:
        """Refuse combinations that would loop or collide, such as writing outputs into the input container."""
        roles = [("RECOMPRESS_INPUT_CONTAINER", self.input_container),
                 ("RECOMPRESS_OUTPUT_CONTAINER", self.output_container),
                 ("RECOMPRESS_QUARANTINE_CONTAINER", self.quarantine_container)]
        for index, (name, value) in enumerate(roles):
            for other, other_value in roles[:index]:
                if value == other_value:
                    raise ConfigError(name, f"is {value!r}, the same container as {other}; each role needs its "
                                            "own container, or every output would trigger a new run")
        if self.backfill_list_queue == self.backfill_blob_queue:
            raise ConfigError("RECOMPRESS_BACKFILL_BLOB_QUEUE",
                              f"is {self.backfill_blob_queue!r}, the same queue as RECOMPRESS_BACKFILL_LIST_QUEUE; "
                              "listing pages and blobs need a queue each")
        return self

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with per-request choices applied (``None`` keeps the setting)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]

    @property
    def worker_threads(self) -> int:
        """``RECOMPRESS_WORKERS``, or the usable cores when it is unset."""
        return self.workers if self.workers is not None else usable_cores()

    @property
    def limits(self) -> Limits:
        """The engines' limits, taken by name from these settings."""
        return Limits(**{spec.name: getattr(self, spec.name) for spec in fields(Limits)})


# --------------------------------------------------------------------------- what the docs are made from


def documented() -> list[Field[Any]]:
    """The fields that are app settings, in the order the docs list them."""
    return [spec for spec in fields(Settings) if "parse" in spec.metadata]


def env_name(spec: Field[Any] | str) -> str:
    """``RECOMPRESS_ZSTD_LEVEL`` for the field ``zstd_level``."""
    return PREFIX + (spec if isinstance(spec, str) else spec.name).upper()


def default_text(spec: Field[Any]) -> str:
    """The default as an operator would write it (``64MiB``, ``false``, ``1``)."""
    if spec.metadata.get("shown"):
        return str(spec.metadata["shown"])
    value = spec.default if spec.default is not MISSING else None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int) and spec.metadata["parse"].__qualname__.startswith("_size"):
        return format_size_setting(value)
    return "" if value is None else str(value)


def format_size_setting(value: int) -> str:
    """Bytes in the largest binary unit that divides them: ``67108864`` is ``64MiB``."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= scale and value % scale == 0:
            return f"{value // scale}{unit}"
    return str(value)


def describe(name: str) -> str:
    """A setting's meaning and default, for the CLI's help."""
    spec = next(s for s in documented() if s.name == name)
    return f"{spec.metadata['doc']} (default: {env_name(spec)} or {default_text(spec)})"


def markdown_table() -> str:
    """The README's table of ``RECOMPRESS_*`` settings."""
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    rows += [f"| `{env_name(s)}` | `{default_text(s)}` | {s.metadata['doc']} |" for s in documented()]
    return "\n".join(rows)


def example_values() -> dict[str, str]:
    """The ``RECOMPRESS_*`` entries of ``local.settings.json.example``: every setting at its default."""
    return {env_name(s): "" if s.metadata.get("shown") else default_text(s) for s in documented()}


# --------------------------------------------------------------------------- what the deployment is made from

#: Marks around the block of ``infra/main.bicep`` that :func:`bicep_block` writes.
BICEP_BEGIN = "// settings: generated by `python -m shared settings --format bicep`; a test keeps it in step"
BICEP_END = "// end of generated settings"


def _bicep_string(text: str) -> str:
    """``text`` as a Bicep single-quoted literal: backslash, quote and ``${`` escaped."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("${", "\\${") + "'"


def bicep_block() -> str:
    """The ``RECOMPRESS_*`` parameters of ``infra/main.bicep``, each with the app's default and meaning.

    App settings are strings, so every parameter is one; blank keeps the app's own
    default. ``recompressSettings`` hands them on as app settings (``{name, value}``,
    the form ``siteConfig.appSettings`` takes), and
    ``recompressTrueWords`` lets the Bicep read a flag (delete-source's role) the
    way the app reads it.
    """
    lines = [BICEP_BEGIN]
    for spec in documented():
        lines.append(f"@description({_bicep_string(spec.metadata['doc'])})")
        lines.append(f"param {env_name(spec)} string = {_bicep_string(example_values()[env_name(spec)])}")
    lines.append("")
    lines.append("@description('The RECOMPRESS_* app settings, as the parameters above set them.')")
    lines.append("var recompressSettings = [")
    for spec in documented():
        lines += ["  {", f"    name: '{env_name(spec)}'", f"    value: {env_name(spec)}", "  }"]
    lines.append("]")
    lines.append("")
    lines.append("@description('What a flag setting accepts as true, in any case (shared/settings.py TRUE_WORDS).')")
    lines.append(f"var recompressTrueWords = [{', '.join(_bicep_string(w) for w in TRUE_WORDS)}]")
    lines.append(BICEP_END)
    return "\n".join(lines)


def azd_parameters() -> dict[str, dict[str, str]]:
    """The ``RECOMPRESS_*`` entries of ``infra/main.parameters.json``: each from the azd environment, else its default.

    ``azd env set RECOMPRESS_MODE exact`` then ``azd provision`` changes the app setting.
    """
    return {name: {"value": f"${{{name}={value}}}"} for name, value in example_values().items()}
