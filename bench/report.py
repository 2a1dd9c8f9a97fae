"""Tables of one run, as aligned text for the terminal and as Markdown for ``results.md``.

Both come from the same rows, so what is printed and what is committed can
never disagree. Ratios are to the best peer on the same input in the same
run: a ratio below 1 means the way beat every peer on that metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bench.measure import Summary
from bench.results import METRICS, Run, Section, best_peer, metric
from bench.targets import Target, judge
from bench.ways import APP

Row = list[str]


def _num(value: float, digits: int = 2) -> str:
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


def _ratio(value: float, best: float) -> str:
    return "—" if math.isnan(value) or math.isnan(best) or best == 0 else f"{value / best:.2f}×"


def comparison(section: Section, *, labels: bool) -> tuple[Row, list[Row]]:
    """One row per input and way: medians, then each metric over the best peer's.

    ``mode`` is what the app's report says it ran (auto's pick, for ``app``); empty for the peers.
    """
    headers = ["input", "way", "mode", "wall s", "CPU s", "peak RSS MB", "output MB", "wall ×best peer",
               "RSS ×best peer", "bytes ×best peer"]
    rows: list[Row] = []
    for name in section.inputs:
        best = {m: best_peer(section, name, m) for m in METRICS}
        for way in section.ways:
            summary = section.get(name, way.name)
            if summary is None or not summary.ok:
                error = summary.error if summary else "not run"
                rows.append([name, way.label if labels else way.name, "", f"failed: {error}", *[""] * 6])
                continue
            rows.append([
                name, way.label if labels else way.name, summary.mode,
                _num(summary.wall_s), _num(summary.cpu_s), _num(summary.rss_bytes / 1e6, 0),
                _num(summary.out_bytes / 1e6, 1),
                *(_ratio(metric(summary, m), best[m]) for m in METRICS),
            ])
    return headers, rows


def sweep(section: Section) -> tuple[Row, list[Row]]:
    """Each app way at each zstd level on one input, relative to that way's first level listed."""
    name = section.inputs[0]
    headers = ["way", "level", "wall s", "CPU s", "peak RSS MB", "output MB", "wall ×first", "bytes ×first"]
    rows: list[Row] = []
    firsts: dict[str, Summary | None] = {}
    for way in section.ways:
        kind, _, level = way.name.partition("@")
        summary = section.get(name, way.name)
        first = firsts.setdefault(kind, summary)
        if summary is None or not summary.ok:
            rows.append([kind, level, f"failed: {summary.error if summary else 'not run'}", *[""] * 5])
            continue
        rows.append([kind, level, _num(summary.wall_s), _num(summary.cpu_s), _num(summary.rss_bytes / 1e6, 0),
                     _num(summary.out_bytes / 1e6, 2), _ratio(summary.wall_s, metric(first, "wall_s")),
                     _ratio(summary.out_bytes, metric(first, "out_bytes"))])
    return headers, rows


def sizes(section: Section, run: Run) -> tuple[Row, list[Row]]:
    """Each app way's cost on inputs of different sizes: is its memory flat?"""
    headers = ["way", "input", "input MB", "rows", "mode", "wall s", "CPU s", "peak RSS MB", "output MB",
               "RSS ×smallest input"]
    rows: list[Row] = []
    for way in section.ways:
        first = section.get(section.inputs[0], way.name)
        for name in section.inputs:
            summary = section.get(name, way.name)
            size, count = run.input_sizes.get(name, 0), run.input_rows.get(name, 0)
            if summary is None or not summary.ok:
                rows.append([way.name, name, _num(size / 1e6, 0), f"{count:,}", "",
                             f"failed: {summary.error if summary else 'not run'}", *[""] * 4])
                continue
            rows.append([way.name, name, _num(size / 1e6, 0), f"{count:,}", summary.mode, _num(summary.wall_s),
                         _num(summary.cpu_s), _num(summary.rss_bytes / 1e6, 0), _num(summary.out_bytes / 1e6, 1),
                         _ratio(summary.rss_bytes, metric(first, "rss_bytes"))])
    return headers, rows


def choices(run: Run) -> tuple[Row, list[Row]]:
    """What auto (the ``app`` way) ran on each input, and the reason its report gives."""
    headers = ["section", "input", "auto ran", "reason"]
    rows: list[Row] = []
    for section in run.sections.values():
        if not any(w.name == APP for w in section.ways):
            continue
        for name in section.inputs:
            summary = section.get(name, APP)
            if summary is None or not summary.ok:
                rows.append([section.key, name, "failed", summary.error if summary else "not run"])
            else:
                rows.append([section.key, name, summary.mode or "?", summary.mode_reason])
    return headers, rows


def targets_table(targets: Sequence[Target]) -> tuple[Row, list[Row]]:
    return ["target", "measured", "verdict"], [[t.goal, t.measured, t.verdict] for t in targets]


#: The phases of ``bench/phases.py``, in the order a part goes through them.
PHASES = ("encoding trial", "decode (calling thread)", "decode on Arrow's threads, and the rest", "encode", "prove",
          "policy check", "append (footer parse, copy)")


def profiles(run: Run) -> tuple[Row, list[Row]]:
    """Where re-encode's CPU went on each input with a missed target: the measured reason for the miss.

    ``CPU floor`` is the whole process's CPU (start-up included) over the
    workers: the wall no scheduling could beat on this many cores.
    """
    headers = ["input", "wall s", "CPU s", "start-up CPU s", "CPU floor s", "workers", "parts",
               *(f"{phase} CPU s" for phase in PHASES), "counted memory MB", "peak RSS MB"]
    rows = []
    for name, profile in run.profiles.items():
        phases = profile.get("phases", {})
        cpu, startup, workers = float(profile["cpu_s"]), float(profile["startup_cpu_s"]), int(profile["workers"])
        rows.append([name, _num(float(profile["wall_s"])), _num(cpu), _num(startup),
                     _num((cpu + startup) / max(workers, 1)), str(workers), str(profile.get("row_groups", "?")),
                     *(_num(float(phases.get(phase, math.nan))) for phase in PHASES),
                     _num(float(profile.get("memory_peak") or math.nan) / 1e6, 0),
                     _num(float(profile.get("rss_bytes", math.nan)) / 1e6, 0)])
    return headers, rows


def tables(run: Run, *, labels: bool) -> list[tuple[str, Row, list[Row]]]:
    """Every table of the run with its title, in reading order."""
    out: list[tuple[str, Row, list[Row]]] = []
    for key, section in run.sections.items():
        if key == "sweep":
            out.append((section.title, *sweep(section)))
        elif key == "large":
            out.append((section.title, *sizes(section, run)))
        else:
            out.append((section.title, *comparison(section, labels=labels)))
    auto = choices(run)
    if auto[1]:
        out.append(("What auto chose", *auto))
    out.append(("Targets", *targets_table(judge(run))))
    if run.profiles:
        out.append(("Where re-encode's CPU goes where a target is missed (bench/phases.py)", *profiles(run)))
    return out


def text(headers: Row, rows: list[Row]) -> str:
    """Columns padded to their widest cell, numbers right-aligned."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Row) -> str:
        return "  ".join(c.rjust(w) if c[:1].isdigit() or c == "—" else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *map(line, rows)])


def markdown(headers: Row, rows: list[Row]) -> str:
    def line(cells: Row) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = ["---" if not rows or not rows[0][i][:1].isdigit() else "---:" for i in range(len(headers))]
    return "\n".join([line(headers), line(align), *map(line, rows)])
