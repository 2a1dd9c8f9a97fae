"""One file's memory budget in bytes: how it is shared between the stages of a re-encode, and the peak in use.

Re-encode holds decoded rows in three places at once: batches decoded ahead of
the encoder, the rows gathering into the next output row group, and the parts
being encoded and proven on the worker threads. Counting rows would let a wide
or nested table take ten times the memory of a narrow one, so every stage is
given a share of one byte budget, and what is held is counted by Arrow's own
``nbytes``. The shares are fixed fractions of the budget and never depend on
the number of workers, so the output's row groups (hence its bytes) are the
same whatever the thread count.

This module only counts; it never allocates, reads or writes data.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pyarrow as pa

#: Least the ledger may count, however small the budget: below this, parts would be a few rows each and the
#: per-part cost (a footer, a writer) would dominate.
MIN_ENGINE_BUDGET = 16 * 1024**2
#: The ledger counts the data a run holds (Arrow's ``nbytes`` of rows, a footer's sizes of stored and
#: decompressed pages); around it Arrow works in memory the ledger cannot see: each column's reader and writer
#: holds a page buffer, the proof's decoder its pages, jemalloc its not-yet-returned pages. Measured by peak
#: RSS over a run's baseline, that came to a fixed part plus about as much again as what is counted: on the
#: nested test table with two workers on an idle machine, 215 MiB of RSS for 67 MiB counted, 292 MiB for 94
#: MiB and 363 MiB for 377 MiB (where little was left to overlap); 500 float/int/string columns 213 MB for 105
#: MB. So RESERVE_BYTES of the budget are left to Arrow, and what is counted is held to 40 % of the rest.
RESERVE_BYTES = 96 * 1024**2
COUNTED_FRACTION = 0.4
#: The decode look-ahead's share: enough batches that decoding never waits on a busy encoder for long.
AHEAD_SHARE = 8
#: Smallest decoded size an output row group is cut at, however little the budget leaves for groups.
MIN_GROUP_BYTES = 4 * 1024**2
#: Parts in flight the row groups are sized for: the two cores of the machine the defaults were measured on.
PARTS_SIZED_FOR = 2
#: What a part in flight costs, as a multiple of its decoded rows, for flat columns: the rows, the writer's
#: pages and encoded part (0.33-0.4x the rows on the bench's mixed table), then the proof, whose column
#: readers each hold a decompressed page, for a part's short chunks all of them at once.
FLAT_COST = 2.0
#: The same for nested columns (lists, structs, maps), measured by RSS on the bench's nested table: writing a
#: 25.7 MB part took 68 MB more (repetition and definition levels for every leaf value), plus the rows and
#: the proof's batch.
NESTED_COST = 4.0


def cost_factor(schema: pa.Schema) -> float:
    """What a part of this schema costs per byte of rows: FLAT_COST, rising to NESTED_COST as columns nest."""
    if len(schema) == 0:
        return FLAT_COST
    nested = sum(1 for column in schema if pa.types.is_nested(column.type))
    return FLAT_COST + (NESTED_COST - FLAT_COST) * nested / len(schema)


@dataclass(frozen=True)
class Shares:
    """The budget split into what each stage may hold."""

    total: int
    ahead: int

    @classmethod
    def of(cls, budget: int) -> Shares:
        """The shares of a RECOMPRESS_MEMORY_BUDGET: ``total`` is what the ledger may count (COUNTED_FRACTION)."""
        counted = max(int((budget - RESERVE_BYTES) * COUNTED_FRACTION), MIN_ENGINE_BUDGET)
        return cls(counted, counted // AHEAD_SHARE)

    def group_bytes(self, input_group: int) -> int:
        """An output row group's decoded bytes, at most, when decoding one input group holds ``input_group``.

        What the look-ahead and the largest input group being decoded leave is
        shared by one group gathering and PARTS_SIZED_FOR in flight. Sized for
        flat columns whatever the schema: nested parts cost more, and the
        ledger lets fewer of them run at once rather than cut their row groups
        small (halving the bench's nested groups grew its output 13 %).
        """
        free = self.total - self.ahead - input_group
        return max(MIN_GROUP_BYTES, int(free / (1 + PARTS_SIZED_FOR * FLAT_COST)))

    @staticmethod
    def part_cost(rows_bytes: int, factor: float) -> int:
        """What one part in flight is charged: its rows, its writer and encoded bytes, and its proof."""
        return int(rows_bytes * factor)


class Ledger:
    """Bytes held right now by each stage, and the peak of their sum. Thread-safe.

    The decoder thread waits in :meth:`wait_for_room` before taking more; the
    encoder checks :meth:`stage` and makes room itself, by appending its
    oldest part, so nothing ever waits on a thread that waits on it.
    """

    def __init__(self, shares: Shares) -> None:
        self.shares = shares
        self._held: dict[str, int] = {}
        self._total = 0
        self.peak = 0
        self._changed = threading.Condition()
        self._stopped = False

    @property
    def held(self) -> int:
        with self._changed:
            return self._total

    def stage(self, name: str) -> int:
        with self._changed:
            return self._held.get(name, 0)

    def take(self, name: str, count: int) -> None:
        """Count ``count`` more bytes as held by stage ``name``."""
        with self._changed:
            self._held[name] = self._held.get(name, 0) + count
            self._total += count
            self.peak = max(self.peak, self._total)

    def give_back(self, name: str, count: int) -> None:
        """Count ``count`` bytes of stage ``name`` as released; wakes a waiting decoder."""
        with self._changed:
            self._held[name] = self._held.get(name, 0) - count
            self._total -= count
            self._changed.notify_all()

    def wait_for_room(self, name: str, count: int, limit: int) -> bool:
        """Block until stage ``name`` holds nothing or can take ``count`` within ``limit``; False once stopped.

        A stage holding nothing always gets its item, so one item larger than
        the share (a single huge batch) still moves rather than deadlocking.
        """
        with self._changed:
            self._changed.wait_for(lambda: self._stopped or self._held.get(name, 0) == 0
                                   or self._held.get(name, 0) + count <= limit)
            return not self._stopped

    def stop(self) -> None:
        """Release every waiter for good: the run ended (or failed) and nobody will take more."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
