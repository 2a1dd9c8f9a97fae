"""``results.png``: one row of bars per comparison, wall / peak RSS / output side by side.

Drawn with matplotlib's Agg backend so it works headless (CI, containers).
The app's bars are coloured apart from the peers', one colour per engine
(auto, exact, exact with the pages proof, re-encode), so the comparison reads
at a glance; dashed lines mark the targets where one applies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from bench.results import Run, metric
from bench.targets import LOCAL_TARGETS, MAIN_INPUT
from bench.ways import APP, EXACT, EXACT_PAGES, REENCODE, REENCODE_MODERN, TARGET_PEERS

PEER_COLOUR, TARGET_COLOUR = "#7570b3", "#1b9e77"
APP_COLOURS = {APP: "#d95f02", EXACT: "#e6ab02", EXACT_PAGES: "#a6761d", REENCODE: "#e7298a",
               REENCODE_MODERN: "#66a61e"}
PANELS = (("wall_s", "wall s", 1.0), ("rss_bytes", "peak RSS MB", 1e6), ("out_bytes", "output MB", 1e6))


@dataclass(frozen=True)
class Bars:
    """One row of the chart: a title, a label per bar, and which bars are the app."""

    title: str
    labels: list[str]
    values: dict[str, list[float]]
    colours: list[str]
    limits: dict[str, list[float]]


def rows(run: Run) -> list[Bars]:
    """The chart's rows, in the order of the run's sections."""
    out: list[Bars] = []
    for key, section in run.sections.items():
        if key == "large":
            pairs = [(way.name, name) for way in section.ways for name in section.inputs]
            summaries = [section.get(name, way) for way, name in pairs]
            out.append(Bars(section.title, [f"{way} {name}" for way, name in pairs],
                            {m: [metric(s, m) for s in summaries] for m, _, _ in PANELS},
                            [_colour(way) for way, _ in pairs], {}))
            continue
        for name in section.inputs:
            summaries = [section.get(name, w.name) for w in section.ways]
            limits = _limits(key, name, {w.name: metric(s, "wall_s") for w, s in zip(section.ways, summaries,
                                                                                     strict=True)},
                             {w.name: metric(s, "rss_bytes") for w, s in zip(section.ways, summaries, strict=True)})
            out.append(Bars(f"{section.title}: {name}", [w.name for w in section.ways],
                            {m: [metric(s, m) for s in summaries] for m, _, _ in PANELS},
                            [_colour(w.name) if w.is_app else PEER_COLOUR for w in section.ways], limits))
    return out


def _colour(way: str) -> str:
    return APP_COLOURS.get(way.partition("@")[0], APP_COLOURS[APP])


def _limits(key: str, name: str, wall: dict[str, float], rss: dict[str, float]) -> dict[str, list[float]]:
    """Where an app way's bar must end for a target to hold, on the sections that have targets."""
    if key == "local" and name == MAIN_INPUT:
        measured = {"wall_s": wall, "rss_bytes": rss}
        limits: dict[str, list[float]] = {}
        for _, metric_name, share in LOCAL_TARGETS:
            peers = [v for p in TARGET_PEERS if not math.isnan(v := measured[metric_name].get(p, math.nan))]
            if peers:
                limits.setdefault(metric_name, []).append(share * min(peers))
        return limits
    if key == "blob" and not math.isnan(wall.get("notes", math.nan)):
        return {"wall_s": [wall["notes"] / 3], "rss_bytes": [rss["notes"] / 4]}
    return {}


def draw(run: Run, path: Path) -> None:
    """Write the chart to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = rows(run)
    heights = [len(item.labels) + 2 for item in bars]
    figure, axes = plt.subplots(len(bars), len(PANELS), figsize=(13, 1.0 + 0.3 * sum(heights)), squeeze=False,
                                gridspec_kw={"height_ratios": heights})
    for row, item in zip(axes, bars, strict=True):
        for axis, (name, label, scale) in zip(row, PANELS, strict=True):
            values = [0.0 if math.isnan(v) else v / scale for v in item.values[name]]
            axis.barh(item.labels, values, color=item.colours)
            axis.invert_yaxis()
            axis.tick_params(labelsize=8)
            for position, value in enumerate(values):
                axis.text(value, position, f" {value:.2f}" if scale == 1.0 else f" {value:.0f}", va="center",
                          fontsize=7)
            for limit in item.limits.get(name, []):
                axis.axvline(limit / scale, color=TARGET_COLOUR, linestyle="--", linewidth=1)
            axis.set_title(f"{item.title} — {label}", fontsize=9)
            axis.margins(x=0.18)
    figure.suptitle(f"python -m bench, {run.started} (medians of {run.repeats}; dashed: targets for the app's ways)",
                    fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.99))
    figure.savefig(path, dpi=90)
    plt.close(figure)
