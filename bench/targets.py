"""The project's performance targets, judged from one run's medians.

The targets are ratios within one run on one machine (see the performance
issue), so they stay meaningful on a slower or busier machine than the one
they were set on. A target whose figures were not measured in this run is
reported as such rather than passed or failed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.results import Run, Section, best_peer, metric
from bench.ways import APP, EXACT, EXACT_PAGES, REENCODE, REENCODE_MODERN, TARGET_PEERS

MAIN_INPUT = "mixed"
LARGE_INPUT = "mixed_large"
MIB = 1024**2
#: The smallest Flex Consumption instance's memory.
MEMORY_CEILING = 512 * MIB
#: Exact mode against the best of pyarrow/polars/DuckDB on the mixed input: (way, metric, at most × best peer).
LOCAL_TARGETS = ((EXACT, "wall_s", 0.6), (EXACT, "rss_bytes", 0.3), (EXACT_PAGES, "wall_s", 0.45))
#: Peak RSS counts as flat in input size within this share of the small input's.
FLAT_WITHIN = 0.10
#: Issue 8, re-encode in parallel parts: wall at most this × the fastest peer, on these inputs.
REENCODE_WALL = (("mixed", 0.9), ("wide", 0.9), ("strings", 0.9), ("nested", 0.9))
#: Output bytes at most × the smallest peer's: under the default reader policy on every input, and under
#: ``modern`` 0.85 on mixed, 1.0 on the others.
REENCODE_BYTES, MODERN_BYTES = 1.0, {"mixed": 0.85}
#: Peak RSS at most × the lowest peer's.
REENCODE_RSS = (("mixed", 0.5), ("wide", 0.8), ("nested", 0.8))


@dataclass(frozen=True)
class Target:
    """One goal, what was measured against it, and whether it holds (None: not measured)."""

    goal: str
    measured: str
    holds: bool | None
    #: The input a re-encode target is about, so a miss can be profiled on it (see ``bench/phases.py``).
    subject: str = ""

    @property
    def verdict(self) -> str:
        return {True: "holds", False: "MISSED", None: "not measured"}[self.holds]


def _judge(goal: str, value: float, limit: float, text: str) -> Target:
    if math.isnan(value) or math.isnan(limit):
        return Target(goal, "not measured in this run", None)
    return Target(goal, text, value <= limit)


def judge(run: Run) -> list[Target]:
    """Every target of the performance issues, in their order: exact mode's, then re-encode's (issue 8)."""
    return [*_local(run), *_reencode(run), *_blob(run), *_flat_memory(run)]


def _reencode(run: Run) -> list[Target]:
    """Issue 8: re-encode's wall, bytes (default and ``modern`` policy) and peak RSS against the peers."""
    section = run.sections.get("local")
    if section is None:
        return [Target("re-encode targets", "local comparison not run", None)]
    out = [_against_peers(section, name, REENCODE, "wall_s", limit) for name, limit in REENCODE_WALL]
    out += [_against_peers(section, name, REENCODE, "out_bytes", REENCODE_BYTES) for name in section.inputs]
    out += [_against_peers(section, name, REENCODE_MODERN, "out_bytes", MODERN_BYTES.get(name, 1.0))
            for name in section.inputs]
    out += [_against_peers(section, name, REENCODE, "rss_bytes", limit) for name, limit in REENCODE_RSS]
    return out


_WORDS = {"wall_s": ("wall", "fastest", "s", 1.0, 2), "out_bytes": ("output bytes", "smallest", "MB", 1e6, 1),
          "rss_bytes": ("peak RSS", "lowest", "MB", 1e6, 0)}


def _against_peers(section: Section, name: str, way: str, measure: str, limit: float) -> Target:
    """``way``'s median of ``measure`` on input ``name`` at most ``limit`` × the best of pyarrow/polars/DuckDB."""
    what, best_word, unit, scale, digits = _WORDS[measure]
    value, best = metric(section.get(name, way), measure), best_peer(section, name, measure, TARGET_PEERS)
    goal = f"{way}: {what} ≤ {limit} × {best_word} of pyarrow/polars/DuckDB on {name}"
    if math.isnan(value) or math.isnan(best):
        return Target(goal, "not measured in this run", None, name)
    judged = _judge(goal, value, limit * best,
                    f"{value / scale:.{digits}f} {unit} vs {best / scale:.{digits}f} {unit} ({value / best:.2f}×)")
    return Target(judged.goal, judged.measured, judged.holds, name)


def missed_inputs(targets: list[Target]) -> list[str]:
    """The inputs with a missed re-encode target, each once, in order: the ones to profile."""
    return list(dict.fromkeys(t.subject for t in targets if t.subject and t.holds is False))


def _local(run: Run) -> list[Target]:
    section = run.sections.get("local")
    if section is None:
        return [Target("local targets", "local comparison not run", None)]
    out = []
    for way, name, limit in LOCAL_TARGETS:
        value, best = metric(section.get(MAIN_INPUT, way), name), best_peer(section, MAIN_INPUT, name, TARGET_PEERS)
        what, unit, scale, digits = ("wall", "s", 1.0, 2) if name == "wall_s" else ("peak RSS", "MB", 1e6, 0)
        best_word = "fastest" if name == "wall_s" else "lowest"
        goal = f"{way}: local {what} ≤ {limit} × {best_word} of pyarrow/polars/DuckDB on {MAIN_INPUT}"
        out.append(_judge(goal, value, limit * best,
                          f"{value / scale:.{digits}f} {unit} vs {best / scale:.{digits}f} {unit} "
                          f"({value / best:.2f}×)"))
    return out


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
    sizes = f"{run.input_sizes.get(MAIN_INPUT, 0) / 1e6:.0f} MB → {run.input_sizes.get(LARGE_INPUT, 0) / 1e9:.2f} GB"
    out = []
    for way in section.ways:
        small = metric(section.get(MAIN_INPUT, way.name), "rss_bytes")
        large = metric(section.get(LARGE_INPUT, way.name), "rss_bytes")
        change = large / small - 1
        out += [
            _judge(f"{way.name}: peak RSS within ±{FLAT_WITHIN:.0%} from {sizes} input", abs(change), FLAT_WITHIN,
                   f"{small / 1e6:.0f} MB → {large / 1e6:.0f} MB ({change:+.1%})"),
            _judge(f"{way.name}: peak RSS under 512 MiB on both", max(small, large), MEMORY_CEILING,
                   f"largest {max(small, large) / MIB:.0f} MiB"),
        ]
    return out
