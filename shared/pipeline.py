"""The pipeline every entry point runs: open a source, recompress, verify, publish.

Blob trigger, HTTP routes and CLI differ only in where bytes come from and go
to; this module pairs a source with a sink, runs the engine between them and
publishes only after the engine has verified the result. A failure anywhere
leaves no output behind.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import pyarrow as pa
from azure.storage.blob import BlobClient, BlobServiceClient

from shared import engine
from shared.settings import Settings
from shared.storage import BlockBlobSink, call, open_blob, service_client
from shared.transform import load_transform

log = logging.getLogger("recompress")


@dataclass(frozen=True)
class Report:
    """What one run did, as logged, returned by /api/process and printed by the CLI."""

    source: str
    output: str
    rows: int
    bytes_in: int
    bytes_out: int
    ms: int
    level: int
    codec: str = engine.CODEC

    @property
    def ratio(self) -> float:
        """Output size over input size: below 1 means the file shrank."""
        return round(self.bytes_out / self.bytes_in, 4) if self.bytes_in else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}

    def line(self) -> str:
        return (f"{self.source}: {self.rows} rows, {self.bytes_in} B -> {self.bytes_out} B "
                f"(ratio {self.ratio:.3f}), {self.ms} ms")


class Sink(Protocol):
    """Where the engine writes; nothing is visible until :meth:`commit`."""

    def commit(self, metadata: dict[str, str]) -> None: ...

    def write(self, data: Any) -> int: ...

    def abort(self) -> None: ...


def options_for(settings: Settings) -> engine.Options:
    """Engine options from settings; the transform is imported here so a bad one fails early."""
    transform = load_transform(settings.transform) if settings.transform else None
    return engine.Options(settings.zstd_level, settings.row_group_size, settings.columns, transform)


def run(source_file: Any, source_name: str, size: int, etag: str | None, sink: Sink, settings: Settings,
        output_name: str, progress: engine.Progress | None = None) -> Report:
    """Recompress one opened source into one sink, publishing only a verified file."""
    started = time.perf_counter()
    options = options_for(settings)
    counted = _Counted(sink)
    try:
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
        "recompress_source_etag": (etag or "").strip('"'),
        "recompress_source_size": str(size),
        "recompress_rows": str(rows),
        "recompress_codec": engine.CODEC,
        "recompress_level": str(level),
    }


# --------------------------------------------------------------------------- blob to blob


def process_blob(source: BlobClient, settings: Settings, service: BlobServiceClient | None = None) -> Report:
    """Recompress ``input/<name>`` into ``output/<name>``: what the blob trigger does."""
    service = service or service_client(settings)
    target = service.get_blob_client(settings.output_container, source.blob_name)
    return blob_to_blob(source, target, settings)


def process_named_blob(name: str, settings: Settings) -> Report:
    """The same as the trigger, for a blob named in an HTTP request."""
    service = service_client(settings)
    return process_blob(service.get_blob_client(settings.input_container, name), settings, service)


def blob_to_blob(source: BlobClient, target: BlobClient, settings: Settings,
                 progress: engine.Progress | None = None) -> Report:
    opened = open_blob(source, settings)
    sink = BlockBlobSink(target, settings)
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
    report = run(pa.BufferReader(body), name, len(body), None, sink, settings, "response")
    assert sink.value is not None
    return sink.value, report


class LocalFileSink:
    """Writes next to the destination and renames into place on commit, so no partial file appears."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_dir():
            raise IsADirectoryError(str(path))
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent or Path("."))
        self._temp = Path(temp)
        self._file = os.fdopen(fd, "wb")

    def write(self, data: Any) -> int:
        return self._file.write(data)

    def commit(self, metadata: dict[str, str]) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
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
    service = service_client(settings)
    for name in (settings.input_container, settings.output_container):
        container = service.get_container_client(name)
        if not call(name, settings.env, container.exists):
            call(name, settings.env, container.create_container)
