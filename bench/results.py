"""What one benchmark run measured, grouped the way it is reported.

A :class:`Section` is one comparison (local, blob, level sweep, memory vs
size) with the medians of every way on every input; everything that prints,
charts or judges targets reads only these, never raw samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bench.local import Samples
from bench.measure import Summary, summarise
from bench.ways import Way


@dataclass(frozen=True)
class Section:
    """Medians of each way (in the order given) on each input."""

    key: str
    title: str
    inputs: list[str]
    ways: list[Way]
    summaries: dict[str, dict[str, Summary]]

    @classmethod
    def of(cls, key: str, title: str, ways: list[Way], samples: Samples) -> Section:
        return cls(key, title, list(samples), ways,
                   {name: {w.name: summarise(by_way[w.name]) for w in ways} for name, by_way in samples.items()})

    def get(self, input_name: str, way: str) -> Summary | None:
        return self.summaries.get(input_name, {}).get(way)


@dataclass
class Run:
    """Everything one ``python -m bench`` produced, plus what it ran on."""

    command: str
    started: str
    repeats: int
    #: Reruns allowed for a disturbed run (``--retries``).
    retries: int = 2
    input_sizes: dict[str, int] = field(default_factory=dict)
    input_rows: dict[str, int] = field(default_factory=dict)
    sections: dict[str, Section] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    total_s: float = math.nan
    interference: str = ""
    #: Per input, where a re-encode's CPU went (``bench/phases.py``), for inputs with a missed target.
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)


METRICS = ("wall_s", "rss_bytes", "out_bytes")


def metric(summary: Summary | None, name: str) -> float:
    """One median of a summary, NaN when the way did not run or always failed."""
    if summary is None or not summary.ok:
        return math.nan
    return float(getattr(summary, name))


def best_peer(section: Section, input_name: str, name: str, among: tuple[str, ...] | None = None) -> float:
    """The lowest median of ``name`` over the non-app ways (or those ``among``), NaN if none ran."""
    values = [metric(section.get(input_name, w.name), name) for w in section.ways
              if not w.is_app and (among is None or w.name in among)]
    values = [v for v in values if not math.isnan(v)]
    return min(values) if values else math.nan
