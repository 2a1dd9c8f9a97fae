"""The pipeline every entry point runs: open a source, recompress, verify, publish.

Blob trigger, HTTP routes and CLI differ only in where bytes come from and go
to; this module pairs a source with a sink, runs the engine between them and
publishes only after the engine has verified the result. A failure anywhere
leaves no output behind.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import pyarrow as pa

from shared import reencode as engine
from shared.errors import ConflictError, InputError, LimitError, NotFoundError, StorageError, VerificationError
from shared.limits import Limits
from shared.report import CODEC, SOURCE_ETAG_KEY, Report
from shared.settings import Settings
from shared.transform import load_transform

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient, BlobServiceClient

# The Azure SDK costs about 0.3 s of start-up, so the blob functions below import
# shared.storage (and through it the SDK) when first called: local files and HTTP
# bodies never pay for it.

log = logging.getLogger("recompress")


class Sink(Protocol):
    """Where the engine writes; nothing is visible until :meth:`commit`."""

    def commit(self, metadata: dict[str, str]) -> None: ...

    def write(self, data: Any) -> int: ...

    def abort(self) -> None: ...


def options_for(settings: Settings) -> engine.Options:
    """Engine options from settings; the transform is imported here so a bad one fails early."""
    transform = load_transform(settings.transform) if settings.transform else None
    limits = Limits(settings.max_columns, settings.max_nesting_depth, settings.max_rows,
                    settings.max_row_group_bytes, settings.deadline_seconds)
    return engine.Options(settings.zstd_level, settings.row_group_size, settings.columns, transform, limits,
                          settings.tune_encodings)


def run(source_file: Any, source_name: str, size: int, etag: str | None, sink: Sink, settings: Settings,
        output_name: str, progress: engine.Progress | None = None) -> Report:
    """Recompress one opened source into one sink, publishing only a verified file."""
    started = time.perf_counter()
    counted = _Counted(sink)
    try:
        if size > settings.max_blob_size:
            raise LimitError(source_name, f"is {size} bytes, over the limit of {settings.max_blob_size} "
                                          "(RECOMPRESS_MAX_BLOB_SIZE)")
        options = options_for(settings)
        outcome = engine.recompress(source_file, counted, options, name=source_name, progress=progress)
        sink.commit(output_metadata(source_name, etag, size, outcome.rows_written, options.level))
    except BaseException:
        sink.abort()
        raise
    report = Report(source_name, output_name, outcome.rows_written, size, counted.tell(),
                    round((time.perf_counter() - started) * 1000), options.level)
    log.info(report.line())
    return report


def output_metadata(source: str, etag: str | None, size: int, rows: int, level: int) -> dict[str, str]:
    """Blob metadata naming the exact input version, so an output can be traced and checked."""
    return {
        "recompress_source": quote(source, safe="/"),
        SOURCE_ETAG_KEY: (etag or "").strip('"'),
        "recompress_source_size": str(size),
        "recompress_rows": str(rows),
        "recompress_codec": CODEC,
        "recompress_level": str(level),
    }


# --------------------------------------------------------------------------- blob to blob

_slots: dict[int, threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


def process_blob(source: BlobClient, settings: Settings, service: BlobServiceClient | None = None) -> Report:
    """Recompress ``input/<name>`` into ``output/<name>``: what the blob trigger does.

    Safe to run any number of times, at once or in turn, for the same blob:
    a version already published is skipped, a hopeless file is quarantined
    (and the call returns normally so the host does not retry it), and the
    conditional commit lets only one run publish. Storage trouble raises, so
    the host retries later.
    """
    from shared.storage import service_client

    service = service or service_client(settings)
    # Re-address the blob through our own client, so our retry policy and timeouts apply to
    # every request; the trigger's client carries the SDK defaults (15 s initial backoff).
    source = service.get_blob_client(source.container_name, source.blob_name)
    with _concurrency_slot(settings.max_concurrent_files):
        return _process(source, settings, service)


def process_named_blob(name: str, settings: Settings) -> Report:
    """The same as the trigger, for a blob named in an HTTP request."""
    from shared.storage import service_client

    service = service_client(settings)
    return process_blob(service.get_blob_client(settings.input_container, check_blob_name(name)), settings, service)


def _process(source: BlobClient, settings: Settings, service: BlobServiceClient) -> Report:
    from shared.quarantine import quarantine
    from shared.storage import call, properties_or_none

    env = settings.env
    subject = f"{source.container_name}/{source.blob_name}"
    target = service.get_blob_client(settings.output_container, source.blob_name)
    output_name = f"{target.container_name}/{target.blob_name}"
    props = call(subject, env, source.get_blob_properties)
    etag = str(props.etag)
    existing = properties_or_none(target, env)
    if _publishes(existing, etag):
        return _not_written(subject, output_name, props, existing, settings, "skipped",
                            "this version was already recompressed")
    try:
        if props.size > settings.max_blob_size:
            raise LimitError(subject, f"is {props.size} bytes, over the limit of {settings.max_blob_size} "
                                      "(RECOMPRESS_MAX_BLOB_SIZE)")
        report = blob_to_blob(source, target, settings, replaces=existing.etag if existing else None, props=props,
                              precommit=lambda: _still_current(source, etag, env))
    except (InputError, VerificationError) as exc:
        return quarantine(source, props, exc, settings, service)
    except Superseded as exc:
        return _not_written(subject, output_name, props, None, settings, "superseded", exc.problem)
    except ConflictError:
        now = properties_or_none(target, env)
        if _publishes(now, etag):  # a concurrent run of this same version won the race
            return _not_written(subject, output_name, props, now, settings, "skipped",
                                "published by a concurrent run")
        try:
            _still_current(source, etag, env)
        except Superseded as exc:  # a newer version's run published first: nothing left to do here
            return _not_written(subject, output_name, props, None, settings, "superseded", exc.problem)
        raise
    if settings.delete_source:
        delete_source(source, etag, env)
    return report


class Superseded(StorageError):
    """The input changed after it was read; its new version is processed by its own run."""


def _still_current(source: BlobClient, etag: str, env: Mapping[str, str]) -> None:
    from shared.storage import properties_or_none

    current = properties_or_none(source, env)
    if current is None or str(current.etag) != etag:
        raise Superseded(f"{source.container_name}/{source.blob_name}",
                         "changed while it was being read; its newer version is processed on its own")


def _publishes(output: Any, etag: str) -> bool:
    return output is not None and (output.metadata or {}).get(SOURCE_ETAG_KEY) == etag.strip('"')


def _not_written(subject: str, output: str, props: Any, existing: Any, settings: Settings, status: str,
                 why: str) -> Report:
    meta = (existing.metadata or {}) if existing is not None else {}
    report = Report(subject, output, int(meta.get("recompress_rows", 0)), int(props.size),
                    int(existing.size) if existing is not None else 0, 0,
                    int(meta.get("recompress_level", settings.zstd_level)), status=status, error=why)
    log.info(report.line())
    return report


def delete_source(source: BlobClient, etag: str, env: Mapping[str, str]) -> None:
    """Opt-in clean-up: delete the input only if it is still the version just published."""
    from azure.core import MatchConditions

    from shared.storage import call

    subject = f"{source.container_name}/{source.blob_name}"
    try:
        call(subject, env, lambda: source.delete_blob(etag=etag, match_condition=MatchConditions.IfNotModified))
    except (ConflictError, NotFoundError):
        log.info("%s: kept: it changed or vanished after it was recompressed", subject)


@contextmanager
def _concurrency_slot(limit: int) -> Iterator[None]:
    """At most ``limit`` files in flight per process, so memory stays bounded under bursts."""
    with _slots_lock:
        slot = _slots.setdefault(limit, threading.BoundedSemaphore(limit))
    with slot:
        yield


def check_blob_name(name: str) -> str:
    """Accept only a plain blob name inside the input container."""
    subject = "blob name"
    if not name or not name.strip():
        raise InputError(subject, "is empty")
    if len(name) > 1024:
        raise InputError(subject, f"is {len(name)} characters long; blob names have at most 1024")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise InputError(subject, "contains control characters")
    if "://" in name or name.startswith(("/", "\\")) or "\\" in name:
        raise InputError(subject, f"{name!r} must be a name inside the input container, not a URL or path")
    if any(part in (".", "..") for part in name.split("/")):
        raise InputError(subject, f"{name!r} must not contain '.' or '..' segments")
    return name


def blob_to_blob(source: BlobClient, target: BlobClient, settings: Settings,
                 progress: engine.Progress | None = None, *, replaces: str | None = "*",
                 precommit: Callable[[], None] | None = None, props: Any = None) -> Report:
    """Recompress one blob into another; ``replaces`` makes the commit conditional (see BlockBlobSink)."""
    from shared.storage import BlockBlobSink, open_blob

    opened = open_blob(source, settings, props)
    sink = BlockBlobSink(target, settings, replaces=replaces, precommit=precommit)
    return run(opened.file, opened.name, opened.size, opened.etag, sink, settings,
               f"{target.container_name}/{target.blob_name}", progress)


# --------------------------------------------------------------------------- bytes and files


class BufferSink:
    """An in-memory sink for HTTP responses; ``value`` is the finished file."""

    def __init__(self) -> None:
        self.stream = pa.BufferOutputStream()
        self.value: pa.Buffer | None = None

    def write(self, data: Any) -> int:
        return int(self.stream.write(data))

    def commit(self, metadata: dict[str, str]) -> None:
        self.value = self.stream.getvalue()

    def abort(self) -> None:
        self.value = None


def recompress_bytes(body: bytes, settings: Settings, name: str = "request body") -> tuple[pa.Buffer, Report]:
    """Recompress a whole file held in memory (the HTTP body) into memory."""
    sink = BufferSink()
    with _concurrency_slot(settings.max_concurrent_files):  # bodies share the per-process memory budget
        report = run(pa.BufferReader(body), name, len(body), None, sink, settings, "response")
    assert sink.value is not None
    return sink.value, report


class LocalFileSink:
    """Writes next to the destination and renames into place on commit, so no partial file appears."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder, expected a file name", str(path))
        if not (path.parent if str(path.parent) else Path(".")).is_dir():
            raise FileNotFoundError(errno.ENOENT, f"folder {str(path.parent)!r} does not exist", str(path))
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent or Path("."))
        self._temp = Path(temp)
        self._file = os.fdopen(fd, "wb")

    def write(self, data: Any) -> int:
        return self._file.write(data)

    def commit(self, metadata: dict[str, str]) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self._temp, 0o666 & ~umask)  # mkstemp makes 0600; an output is an ordinary file
        os.replace(self._temp, self.path)

    def abort(self) -> None:
        self._file.close()
        self._temp.unlink(missing_ok=True)


class _Counted:
    """What pyarrow writes into: forwards to a sink and counts the bytes on the way."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.closed = False
        self._bytes = 0

    def write(self, data: Any) -> int:
        written = int(self.sink.write(data))
        self._bytes += written
        return written

    def tell(self) -> int:
        return self._bytes

    def flush(self) -> None:
        return None


def ensure_containers(settings: Settings) -> None:
    """Create the input and output containers if missing (local runs and tests)."""
    from shared.storage import call, service_client

    service = service_client(settings)
    for name in (settings.input_container, settings.output_container):
        container = service.get_container_client(name)
        if not call(name, settings.env, container.exists):
            call(name, settings.env, container.create_container)
