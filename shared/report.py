"""The account of one run: logged, returned by /api/process and printed by the CLI."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

CODEC = "zstd"
#: Output (and quarantine copy) metadata naming the input version it came from: the idempotency key.
SOURCE_ETAG_KEY = "recompress_source_etag"


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
    codec: str = CODEC
    #: written; skipped (this input version was already published); superseded (the input
    #: changed while it was read, so the newer version's own run publishes); quarantined.
    status: str = "written"
    error: str | None = None

    @property
    def ratio(self) -> float:
        """Output size over input size: below 1 means the file shrank."""
        return round(self.bytes_out / self.bytes_in, 4) if self.bytes_in else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}

    def line(self) -> str:
        if self.status == "quarantined":
            return f"{self.source}: quarantined: {self.error}"
        if self.status != "written":
            return f"{self.source}: {self.status} ({self.error or 'nothing to do'})"
        return (f"{self.source}: {self.rows} rows, {self.bytes_in} B -> {self.bytes_out} B "
                f"(ratio {self.ratio:.3f}), {self.ms} ms")
