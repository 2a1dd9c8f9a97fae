"""Run ways against inputs round-robin, so that drift (heat, page cache, noisy neighbours) hits all alike.

Every repeat runs every way once on every input, and the order of the ways
rotates from one repeat to the next, so no way always runs first (cold) or
right after the heaviest one. Medians of the repeats are what get reported.
A run disturbed by other work on the machine is run again (up to
``RETRIES`` times) and the least disturbed attempt is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench import WORK
from bench.datagen import Spec
from bench.measure import Sample, failure, run_child, wait_for_quiet
from bench.ways import Way, app_mode

Samples = dict[str, dict[str, list[Sample]]]
Log = Callable[[str], None]
#: Reruns of a disturbed run (``--retries``); each first waits up to 20 s for the machine to quiet down.
RETRIES = 2


def interleave(inputs: Sequence[str], ways: Sequence[Way], repeats: int,
               run_one: Callable[[str, Way], Sample], log: Log) -> Samples:
    """Run ``run_one(input, way)`` ``repeats`` times for every pair, ways rotating per repeat."""
    samples: Samples = {name: {way.name: [] for way in ways} for name in inputs}
    for repeat in range(repeats):
        for name in inputs:
            shift = repeat % len(ways)
            for way in [*ways[shift:], *ways[:shift]]:
                sample = run_one(name, way)
                for _ in range(RETRIES):
                    if not (sample.ok and sample.disturbed):
                        break
                    log(f"  [{repeat + 1}/{repeats}] {name:<12} {way.name:<15} disturbed: " + describe(sample))
                    log(f"    waited {wait_for_quiet():.0f} s for the machine to quiet down; running it again")
                    sample = min(sample, run_one(name, way), key=lambda s: (not s.ok, s.other_cpu_s))
                samples[name][way.name].append(sample)
                log(f"  [{repeat + 1}/{repeats}] {name:<12} {way.name:<15} " + describe(sample))
    return samples


def describe(sample: Sample) -> str:
    if not sample.ok:
        return f"FAILED {sample.error}"
    return (f"wall {sample.wall_s:6.2f} s  cpu {sample.cpu_s:6.2f} s  rss {sample.rss_bytes / 1e6:7.1f} MB  "
            f"out {sample.out_bytes / 1e6:7.1f} MB  others {sample.other_cpu_s:5.2f} CPU s"
            + (f"  [{sample.mode}]" if sample.mode else ""))


def warm(path: Path) -> None:
    """Read a file once so every way finds it in the page cache, not just the ones after the first."""
    with path.open("rb") as file:
        while file.read(16 * 1024 * 1024):
            pass


def run_local(specs: Sequence[Spec], ways: Sequence[Way], repeats: int, log: Log, *,
              warm_up: bool = True) -> Samples:
    """Time every way on every local input file, writing outputs under ``bench/work``."""
    WORK.mkdir(parents=True, exist_ok=True)
    by_name = {spec.name: spec for spec in specs}
    for spec in specs:
        warm(spec.path)
    if warm_up:
        warm_ways(specs[0], ways, log)

    def run_one(name: str, way: Way) -> Sample:
        return run_file(by_name[name], way)

    return interleave(list(by_name), ways, repeats, run_one, log)


def warm_ways(spec: Spec, ways: Sequence[Way], log: Log) -> None:
    """Run each way once, untimed, on a tiny file.

    The first run of a way pays for loading its libraries from disk into the
    page cache (polars and DuckDB ship 50-100 MB shared objects) and for
    compiling bytecode; whichever way ran first in the first repeat would be
    charged for it. Warming each way once levels that.
    """
    tiny = WORK / "warm-up.parquet"
    batch = next(pq.ParquetFile(spec.path).iter_batches(batch_size=1000))
    pq.write_table(pa.Table.from_batches([batch]), tiny)
    tiny_spec = Spec("warm-up", 1, batch.num_rows, batch.num_rows, spec.make)
    try:
        for way in ways:
            sample = run_file(tiny_spec, way, tiny)
            if not sample.ok:
                log(f"  warm-up of {way.name} failed: {sample.error}")
    finally:
        tiny.unlink(missing_ok=True)


def run_file(spec: Spec, way: Way, source: Path | None = None) -> Sample:
    """One timed run of ``way`` from ``spec``'s file to a scratch file, which is checked and removed."""
    out = WORK / f"{spec.name}.{way.name}.parquet"
    out.unlink(missing_ok=True)
    try:
        child = run_child(way.argv(str(source or spec.path), str(out)), env=way.env(), cwd=way.cwd)
        error = failure(child) or check_output(out, spec.rows)
        size = out.stat().st_size if out.exists() else 0
        mode, reason = app_mode(child.stdout) if way.is_app else ("", "")
        return Sample(child.wall_s, child.cpu_s, child.rss_bytes, size, error, child.other_cpu_s, mode, reason)
    finally:
        out.unlink(missing_ok=True)


def check_output(path: Path, rows: int) -> str:
    """A cheap sanity check that a way wrote a whole Parquet file: its footer holds every row."""
    try:
        found = pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowException) as exc:
        return f"no readable output ({exc})"
    return "" if found == rows else f"output holds {found} rows, expected {rows}"
