"""The account of one run: logged, returned by /api/process, printed by the CLI, and stored as blob metadata."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

CODEC = "zstd"
#: Output (and quarantine copy) metadata naming the input version it came from: the idempotency key.
SOURCE_ETAG_KEY = "recompress_source_etag"


def records_version(blob: Any, etag: str) -> bool:
    """Whether a blob's properties (an output, a quarantine copy) record this exact input version."""
    return blob is not None and (blob.metadata or {}).get(SOURCE_ETAG_KEY) == etag.strip('"')


@dataclass(frozen=True)
class Report:
    """What one run did."""

    source: str
    output: str
    rows: int
    bytes_in: int
    bytes_out: int
    ms: int
    level: int
    codec: str = CODEC
    #: written; skipped (this input version was already published); superseded (the input
    #: changed while it was read, so the newer version's own run publishes); gone (the blob
    #: was deleted before its run); unprocessable (its name cannot be addressed); quarantined.
    status: str = "written"
    #: What failed, for quarantined and unprocessable runs only.
    error: str | None = None
    #: Why nothing was written, or what else was done (a stale output removed), for runs that did not fail.
    detail: str | None = None
    #: exact (pages recompressed) or reencode (decoded and encoded again), and why under auto.
    mode: str | None = None
    mode_reason: str | None = None
    #: full (every value decoded) or pages (page bytes, footer and counts).
    proof: str | None = None
    #: The reader policy that bounded a re-encode (RECOMPRESS_READERS); exact mode keeps every
    #: encoding, so its output meets the ``input`` policy whatever this says.
    readers: str | None = None
    #: Re-encode only: the most bytes of RECOMPRESS_MEMORY_BUDGET the run held at once (decoded batches,
    #: rows gathering, parts in flight, staged blocks), and that budget.
    memory_peak: int | None = None
    memory_budget: int | None = None

    @property
    def ratio(self) -> float:
        """Output size over input size: below 1 means the file shrank."""
        return round(self.bytes_out / self.bytes_in, 4) if self.bytes_in else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}

    def line(self) -> str:
        """One log line; names and messages are user input, so control characters are escaped."""
        return printable(self._line())

    def _line(self) -> str:
        if self.error is not None:
            return f"{self.source}: {self.status}: {self.error}" + (f" ({self.detail})" if self.detail else "")
        if self.status != "written":
            return f"{self.source}: {self.status} ({self.detail or 'nothing to do'})"
        how = f", {self.mode}" if self.mode else ""
        if self.mode_reason:
            how += f" ({self.mode_reason})"
        if self.proof:
            how += f", {self.proof} proof"
        if self.readers:
            how += f", readers {self.readers}"
        if self.memory_peak is not None and self.memory_budget:
            how += f", memory {human_bytes(self.memory_peak)} of {human_bytes(self.memory_budget)}"
        return (f"{self.source}: {self.rows} rows, {human_bytes(self.bytes_in)} → {human_bytes(self.bytes_out)} "
                f"({change(self.bytes_in, self.bytes_out)}){how}, {self.ms} ms")


#: Blob metadata travels as HTTP headers: printable ASCII stays readable, anything else is %-escaped.
_PRINTABLE = "".join(chr(code) for code in range(32, 127) if chr(code) != "%")


def header_value(text: str) -> str:
    """``text`` as a blob metadata value: printable ASCII as it is, anything else %-escaped (``unquote`` reads it)."""
    return quote(text, safe=_PRINTABLE)


def printable(text: str) -> str:
    """``text`` with control characters escaped, so a blob name cannot forge or break a log line."""
    return "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode() for ch in text)


def human_bytes(count: int) -> str:
    """Sizes as people read them: ``115.4 MB``, ``812 B``."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def change(before: int, after: int) -> str:
    """The size change as a signed percentage: ``−47 %``."""
    if not before:
        return "±0 %"
    percent = round((after - before) * 100 / before)
    return f"−{-percent} %" if percent < 0 else f"+{percent} %"


class _Printable(logging.Filter):
    """Escapes control characters in every line the app logs: blob names and Arrow's messages are input."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = printable(message)
        if escaped != message:
            record.msg, record.args = escaped, ()
        return True


#: The app's logger; its lines never carry a raw newline, whatever a blob is called.
log = logging.getLogger("recompress")
log.addFilter(_Printable())
