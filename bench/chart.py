"""``results.png``: one row of bars per comparison, wall / peak RSS / output side by side.

Drawn with matplotlib's Agg backend so it works headless (CI, containers).
The app's bars are coloured apart from the peers' so the comparison reads at
a glance; dashed lines mark the targets where one applies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from bench.results import Run, metric
from bench.ways import TARGET_PEERS

APP_COLOUR, PEER_COLOUR, TARGET_COLOUR = "#d95f02", "#7570b3", "#1b9e77"
PANELS = (("wall_s", "wall s", 1.0), ("rss_bytes", "peak RSS MB", 1e6), ("out_bytes", "output MB", 1e6))


@dataclass(frozen=True)
class Bars:
    """One row of the chart: a title, a label per bar, and which bars are the app."""

    title: str
    labels: list[str]
    values: dict[str, list[float]]
    is_app: list[bool]
    limits: dict[str, float]


def rows(run: Run) -> list[Bars]:
    """The chart's rows, in the order of the run's sections."""
    out: list[Bars] = []
    for key, section in run.sections.items():
        if key == "large":
            summaries = [section.get(name, section.ways[0].name) for name in section.inputs]
            out.append(Bars(section.title, section.inputs,
                            {m: [metric(s, m) for s in summaries] for m, _, _ in PANELS},
                            [True] * len(summaries), {}))
            continue
        for name in section.inputs:
            summaries = [section.get(name, w.name) for w in section.ways]
            limits = _limits(key, name, {w.name: metric(s, "wall_s") for w, s in zip(section.ways, summaries,
                                                                                     strict=True)},
                             {w.name: metric(s, "rss_bytes") for w, s in zip(section.ways, summaries, strict=True)})
            out.append(Bars(f"{section.title}: {name}", [w.name for w in section.ways],
                            {m: [metric(s, m) for s in summaries] for m, _, _ in PANELS},
                            [w.is_app for w in section.ways], limits))
    return out


def _limits(key: str, name: str, wall: dict[str, float], rss: dict[str, float]) -> dict[str, float]:
    """Where the app's bar must end for the target to hold, on the sections that have targets."""
    if key == "local" and name == "mixed":
        peers_wall = [wall[p] for p in TARGET_PEERS if not math.isnan(wall.get(p, math.nan))]
        peers_rss = [rss[p] for p in TARGET_PEERS if not math.isnan(rss.get(p, math.nan))]
        limits = {}
        if peers_wall:
            limits["wall_s"] = 0.9 * min(peers_wall)
        if peers_rss:
            limits["rss_bytes"] = 0.5 * min(peers_rss)
        return limits
    if key == "blob" and not math.isnan(wall.get("notes", math.nan)):
        return {"wall_s": wall["notes"] / 3, "rss_bytes": rss["notes"] / 4}
    return {}


def draw(run: Run, path: Path) -> None:
    """Write the chart to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = rows(run)
    figure, axes = plt.subplots(len(bars), len(PANELS), figsize=(13, 1.0 + 1.9 * len(bars)), squeeze=False)
    for row, item in zip(axes, bars, strict=True):
        for axis, (name, label, scale) in zip(row, PANELS, strict=True):
            values = [0.0 if math.isnan(v) else v / scale for v in item.values[name]]
            colours = [APP_COLOUR if app else PEER_COLOUR for app in item.is_app]
            axis.barh(item.labels, values, color=colours)
            axis.invert_yaxis()
            axis.tick_params(labelsize=8)
            for position, value in enumerate(values):
                axis.text(value, position, f" {value:.2f}" if scale == 1.0 else f" {value:.0f}", va="center",
                          fontsize=7)
            if name in item.limits:
                axis.axvline(item.limits[name] / scale, color=TARGET_COLOUR, linestyle="--", linewidth=1)
            axis.set_title(f"{item.title} — {label}", fontsize=9)
            axis.margins(x=0.18)
    figure.suptitle(f"python -m bench, {run.started} (medians of {run.repeats}; dashed: target for the app)",
                    fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
