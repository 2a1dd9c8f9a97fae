"""The run every entry point shares: an opened source, the engine, the proof, then a commit to a sink.

Blob trigger, HTTP routes and CLI differ only in where bytes come from and go
to. This module pairs a source with a sink, runs the engine between them, and
commits only after the engine has proven the result; on any failure the sink
is aborted and nothing is left behind. It never imports the Azure SDK (the
blob protocol in ``shared.blobs`` builds on it), so local files and HTTP
bodies start fast.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import pyarrow as pa

from shared import exact, plan, reencode, telemetry
from shared.errors import LimitError, NotParquetError, PartMismatchError
from shared.limits import check_footer
from shared.parquet import footer as ft
from shared.proof import Outcome
from shared.report import CODEC, SOURCE_ETAG_KEY, Report, header_value, log
from shared.settings import Settings
from shared.sinks import BufferSink, Counted, Sink
from shared.transform import load_transform


class Progress(Protocol):
    """Told the file's row count once its footer is read, then the rows each step consumed."""

    def start(self, rows: int) -> None: ...

    def advance(self, rows: int) -> None: ...


@dataclass(frozen=True)
class _Ran:
    outcome: Outcome
    choice: plan.Choice
    level: int


def check_size(name: str, size: int, settings: Settings) -> None:
    """Refuse an input over ``RECOMPRESS_MAX_BLOB_SIZE`` before a byte of it is read."""
    if size > settings.max_blob_size:
        raise LimitError(name, f"is {size} bytes, over the limit of {settings.max_blob_size} "
                               "(RECOMPRESS_MAX_BLOB_SIZE)")


@telemetry.traced_file(lambda source_file, source_name, *_, **__: source_name)
def run(source_file: Any, source_name: str, size: int, etag: str | None, sink: Sink, settings: Settings,
        output_name: str, progress: Progress | None = None) -> Report:
    """Recompress one opened source into one sink, committing only a proven file."""
    started = time.perf_counter()
    counted = Counted(sink)
    try:
        check_size(source_name, size, settings)
        ran = _recompress(source_file, source_name, counted, settings, progress)
        with telemetry.step("commit"):
            sink.commit(output_metadata(source_name, etag, size, ran, settings.readers))
    except BaseException:
        sink.abort()
        raise
    report = Report(source_name, output_name, ran.outcome.rows_written, size, counted.tell(),
                    round((time.perf_counter() - started) * 1000), ran.level, mode=ran.outcome.mode,
                    mode_reason=ran.choice.reason, proof=ran.outcome.proof, readers=settings.readers,
                    memory_peak=ran.outcome.memory_peak, memory_budget=ran.outcome.memory_budget)
    log.info(report.line())
    return report


def _recompress(source: Any, name: str, sink: Counted, settings: Settings, progress: Progress | None) -> _Ran:
    """Choose the mode from the footer, then run it; under auto a failed re-encode proof falls back to exact."""
    transform = load_transform(settings.transform) if settings.transform else None  # a bad one fails early
    source = pa.BufferReader(source) if isinstance(source, bytes | bytearray | memoryview) else source
    with telemetry.step("read"):  # the footer and the plan; the engine reads the pages as it goes
        footer = _footer(source, name)
        parquet = reencode.open_parquet(source, name)
        check_footer(parquet, settings.limits, name)  # before the plan builds anything from the schema
        choice = plan.choose(parquet, settings.mode, columns=settings.columns, transform=transform,
                             row_group_size=settings.row_group_size, name=name, footer=footer,
                             memory_budget=settings.memory_budget)
    advance = None
    if progress is not None:
        progress.start(parquet.metadata.num_rows)
        advance = progress.advance
    if choice.mode == "exact":
        return _exact(source, name, sink, settings, choice, advance)
    level = settings.zstd_level or reencode.DEFAULT_LEVEL
    options = reencode.Options(level=level, row_group_size=settings.row_group_size, columns=settings.columns,
                               transform=transform, limits=settings.limits, tune_encodings=settings.tune_encodings,
                               readers=settings.readers, workers=settings.worker_threads,
                               memory_budget=settings.memory_budget, staged_bytes=staged_bytes(sink.sink))
    try:
        with telemetry.step("recompress", {telemetry.ATTR_MODE: "reencode"}):
            outcome = reencode.recompress(source, sink, options, name=name, progress=advance, input_footer=footer,
                                          metadata=parquet.metadata)
            return _Ran(outcome, choice, level)
    except PartMismatchError as exc:
        if settings.mode != "auto" or not sink.restart():
            raise
        log.warning("%s; retrying in exact mode", exc.log_detail())
        fallback = plan.Choice("exact", f"exact: re-encode failed its proof ({exc.problem})")
        return _exact(source, name, sink, settings, fallback, None)


def staged_bytes(sink: Any) -> int:
    """The most bytes a sink holds before they are stored (a blob sink's blocks in flight); 0 for others."""
    return int(getattr(sink, "staged_bytes_limit", 0))


def _footer(source: Any, name: str) -> ft.FileMeta:
    """The app's own parse of the footer, first: safe on crafted footers, and it keeps every field."""
    try:
        return ft.read_footer(source, name).meta
    except NotParquetError as exc:
        raise NotParquetError(name, f"not a readable Parquet file ({exc.problem})") from exc


def _exact(source: Any, name: str, sink: Counted, settings: Settings, choice: plan.Choice,
           advance: Callable[[int], None] | None) -> _Ran:
    level = settings.zstd_level or exact.DEFAULT_LEVEL
    options = exact.ExactOptions(level=level, verify=settings.verify, limits=settings.limits)
    with telemetry.step("recompress", {telemetry.ATTR_MODE: "exact"}):
        return _Ran(exact.recompress(source, sink, options, name=name, progress=advance), choice, level)


def output_metadata(source: str, etag: str | None, size: int, ran: _Ran, readers: str) -> dict[str, str]:
    """Blob metadata naming the exact input version, how it was rewritten and proven, and the reader policy."""
    return {
        "recompress_source": quote(source, safe="/"),
        SOURCE_ETAG_KEY: (etag or "").strip('"'),
        "recompress_source_size": str(size),
        "recompress_rows": str(ran.outcome.rows_written),
        "recompress_codec": CODEC,
        "recompress_level": str(ran.level),
        "recompress_mode": ran.outcome.mode,
        "recompress_mode_reason": header_value(ran.choice.reason),
        "recompress_proof": ran.outcome.proof,
        "recompress_readers": readers,
    }


def recompress_bytes(body: bytes, settings: Settings, name: str = "request body") -> tuple[pa.Buffer, Report]:
    """Recompress a whole file held in memory (the HTTP body) into memory."""
    sink = BufferSink()
    with file_slot(settings):  # bodies share the per-process memory budget
        report = run(pa.BufferReader(body), name, len(body), None, sink, settings, "response")
    assert sink.value is not None
    return sink.value, report


class _FileSlots:
    """One process-wide count of files in flight, held under the limit the current settings give.

    Memory grows with files processed at once, so bursts of triggers and
    HTTP bodies wait here. The limit is read per call, so a changed setting
    applies to new arrivals; there is only ever one count.
    """

    def __init__(self) -> None:
        self._busy = 0
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, limit: int) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self._busy < limit)
            self._busy += 1
        try:
            yield
        finally:
            with self._changed:
                self._busy -= 1
                self._changed.notify_all()


_slots = _FileSlots()


def file_slot(settings: Settings) -> Any:
    """Hold one of ``RECOMPRESS_MAX_CONCURRENT_FILES`` slots for the duration of a file."""
    return _slots.hold(settings.max_concurrent_files)
