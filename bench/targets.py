"""The project's performance targets, judged from one run's medians.

The targets are ratios within one run on one machine (see the performance
issue), so they stay meaningful on a slower or busier machine than the one
they were set on. A target whose figures were not measured in this run is
reported as such rather than passed or failed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.results import Run, best_peer, metric
from bench.ways import APP, TARGET_PEERS

MAIN_INPUT = "mixed"
LARGE_INPUT = "mixed_large"
MIB = 1024**2
#: The smallest Flex Consumption instance's memory.
MEMORY_CEILING = 512 * MIB


@dataclass(frozen=True)
class Target:
    """One goal, what was measured against it, and whether it holds (None: not measured)."""

    goal: str
    measured: str
    holds: bool | None

    @property
    def verdict(self) -> str:
        return {True: "holds", False: "MISSED", None: "not measured"}[self.holds]


def _judge(goal: str, value: float, limit: float, text: str) -> Target:
    if math.isnan(value) or math.isnan(limit):
        return Target(goal, "not measured in this run", None)
    return Target(goal, text, value <= limit)


def judge(run: Run) -> list[Target]:
    """Every target of the performance issue, in its order."""
    return [*_local(run), *_blob(run), *_flat_memory(run)]


def _local(run: Run) -> list[Target]:
    section = run.sections.get("local")
    if section is None:
        return [Target("local targets", "local comparison not run", None)]
    app = section.get(MAIN_INPUT, APP)
    wall, rss, size = (metric(app, m) for m in ("wall_s", "rss_bytes", "out_bytes"))
    best_wall, best_rss, best_size = (best_peer(section, MAIN_INPUT, m, TARGET_PEERS)
                                      for m in ("wall_s", "rss_bytes", "out_bytes"))
    return [
        _judge("local wall ≤ 0.9 × fastest of pyarrow/polars/DuckDB", wall, 0.9 * best_wall,
               f"app {wall:.2f} s vs fastest {best_wall:.2f} s ({wall / best_wall:.2f}×)"),
        _judge("local output bytes ≤ smallest of pyarrow/polars/DuckDB", size, best_size,
               f"app {size / 1e6:.1f} MB vs smallest {best_size / 1e6:.1f} MB ({size / best_size:.3f}×)"),
        _judge("local peak RSS ≤ 0.5 × lowest of pyarrow/polars/DuckDB", rss, 0.5 * best_rss,
               f"app {rss / 1e6:.0f} MB vs lowest {best_rss / 1e6:.0f} MB ({rss / best_rss:.2f}×)"),
    ]


def _blob(run: Run) -> list[Target]:
    section = run.sections.get("blob")
    if section is None:
        return [Target("blob→blob targets", "blob comparison not run (--skip-blob, or --only without mixed)", None)]
    app, notes = section.get(MAIN_INPUT, APP), section.get(MAIN_INPUT, "notes")
    wall, notes_wall = metric(app, "wall_s"), metric(notes, "wall_s")
    rss, notes_rss = metric(app, "rss_bytes"), metric(notes, "rss_bytes")
    return [
        _judge("blob→blob ≥ 3× faster than the notes' way", 3 * wall, notes_wall,
               f"app {wall:.2f} s vs notes {notes_wall:.2f} s ({notes_wall / wall:.2f}× faster)"),
        _judge("blob→blob peak RSS ≤ 1/4 of the notes' way", 4 * rss, notes_rss,
               f"app {rss / 1e6:.0f} MB vs notes {notes_rss / 1e6:.0f} MB ({rss / notes_rss:.2f}×)"),
    ]


def _flat_memory(run: Run) -> list[Target]:
    section = run.sections.get("large")
    if section is None:
        return [Target("peak RSS flat in file size, under 512 MiB", "memory check not run (needs --large)", None)]
    small, large = metric(section.get(MAIN_INPUT, APP), "rss_bytes"), metric(section.get(LARGE_INPUT, APP),
                                                                            "rss_bytes")
    sizes = f"{run.input_sizes.get(MAIN_INPUT, 0) / 1e6:.0f} MB → {run.input_sizes.get(LARGE_INPUT, 0) / 1e9:.2f} GB"
    change = large / small - 1
    return [
        _judge(f"peak RSS within ±10 % from {sizes} input", abs(change), 0.10,
               f"{small / 1e6:.0f} MB → {large / 1e6:.0f} MB ({change:+.1%})"),
        _judge("peak RSS under 512 MiB on both", max(small, large), MEMORY_CEILING,
               f"largest {max(small, large) / MIB:.0f} MiB"),
    ]
