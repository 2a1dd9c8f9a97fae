"""The savings report: how many bytes the app saved, by folder and by mode, and what it set aside.

It answers "how much money did it save?" from what every output already
records: its own size, and the input's size in ``recompress_source_size``.
Quarantine copies carry their one-line reason in ``recompress_error``. It
streams over the listings (one page of blob properties at a time), so a
million outputs cost a million small additions, not a million objects in
memory. It never reads a blob's contents and never writes anything.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from shared.errors import MissingContainerError
from shared.report import change, human_bytes
from shared.settings import Settings
from shared.storage import StorageContext, storage_errors

#: How many quarantined files the report names; the rest are counted.
MAX_LISTED = 1000
TOP_LEVEL = "(top level)"


@dataclass
class Totals:
    """Files and bytes before and after, for one group of outputs."""

    files: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    def add(self, bytes_in: int, bytes_out: int) -> None:
        self.files += 1
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out

    @property
    def saved(self) -> int:
        return self.bytes_in - self.bytes_out

    @property
    def ratio(self) -> float:
        return round(self.bytes_out / self.bytes_in, 4) if self.bytes_in else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"files": self.files, "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
                "bytes_saved": self.saved, "ratio": self.ratio}


@dataclass
class Savings:
    """The report: totals, the same by top-level folder and by mode, and the quarantined files."""

    prefix: str
    total: Totals = field(default_factory=Totals)
    by_folder: dict[str, Totals] = field(default_factory=lambda: defaultdict(Totals))
    by_mode: dict[str, Totals] = field(default_factory=lambda: defaultdict(Totals))
    quarantined: int = 0
    listed: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "total": self.total.as_dict(),
            "by_folder": {name: totals.as_dict() for name, totals in sorted(self.by_folder.items())},
            "by_mode": {name: totals.as_dict() for name, totals in sorted(self.by_mode.items())},
            "quarantined": self.quarantined,
            "quarantined_files": [{"name": name, "reason": reason} for name, reason in self.listed],
        }

    def table(self) -> str:
        """The report as a person reads it on a terminal."""
        lines = [f"{'group':<32} {'files':>8} {'before':>10} {'after':>10} {'saved':>10} {'change':>7}"]
        rows = [("all", self.total), *((f"folder {k}", v) for k, v in sorted(self.by_folder.items())),
                *((f"mode {k}", v) for k, v in sorted(self.by_mode.items()))]
        for label, totals in rows:
            lines.append(f"{label[:32]:<32} {totals.files:>8} {human_bytes(totals.bytes_in):>10} "
                         f"{human_bytes(totals.bytes_out):>10} {human_bytes(max(totals.saved, 0)):>10} "
                         f"{change(totals.bytes_in, totals.bytes_out):>7}")
        lines.append(f"quarantined: {self.quarantined}")
        lines += [f"  {name}: {reason}" for name, reason in self.listed]
        if self.quarantined > len(self.listed):
            lines.append(f"  ... and {self.quarantined - len(self.listed)} more")
        return "\n".join(lines)


def summarize(storage: StorageContext, settings: Settings, prefix: str = "",
              tick: Callable[[], None] | None = None) -> Savings:
    """Sum the outputs under ``prefix`` and list the quarantined inputs; ``tick`` is called per blob listed."""
    savings = Savings(prefix)
    for name, metadata, size in _listing(storage, settings.output_container, prefix):
        if tick is not None:
            tick()
        bytes_in = _size(metadata.get("recompress_source_size"))
        if bytes_in is None:
            continue  # not one of ours: no recorded input size
        savings.total.add(bytes_in, size)
        savings.by_folder[name.split("/", 1)[0] if "/" in name else TOP_LEVEL].add(bytes_in, size)
        savings.by_mode[metadata.get("recompress_mode") or "unrecorded"].add(bytes_in, size)
    for name, metadata, _ in _listing(storage, settings.quarantine_container, prefix):
        savings.quarantined += 1
        if len(savings.listed) < MAX_LISTED:
            savings.listed.append((name, unquote(metadata.get("recompress_error", "")) or "no reason recorded"))
        if tick is not None:
            tick()
    return savings


def _listing(storage: StorageContext, container: str, prefix: str) -> Iterator[tuple[str, dict[str, str], int]]:
    """Each blob's name, metadata and size, a page at a time; a container that doesn't exist holds nothing."""
    client = storage.service.get_container_client(container)
    try:
        with storage_errors(container, storage.hint):  # pages are fetched as they are iterated
            for page in client.list_blobs(name_starts_with=prefix or None, include=["metadata"]).by_page():
                for blob in page:
                    yield str(blob.name), dict(blob.metadata or {}), int(blob.size)
    except MissingContainerError:
        return


def _size(raw: str | None) -> int | None:
    return int(raw) if raw is not None and raw.isdigit() else None
