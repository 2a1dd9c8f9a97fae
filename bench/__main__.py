"""``python -m bench``: generate the inputs, run every comparison, print and write the results.

Sections run one after another, never in parallel: on a 2-core machine any
concurrent work would show up in the timings. The app runs from a copy of
``shared/`` taken at the start, so edits made meanwhile can't mix versions. The blob, level-sweep and
memory-vs-size sections use the mixed input, so they run only when it is
selected.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench import BENCH, DATA, RESULTS_MD, RESULTS_PNG, ROOT, chart, datagen, document, local, ways
from bench.local import run_local
from bench.machine import CpuTimes, interference
from bench.measure import run_child
from bench.report import tables, text
from bench.results import Run, Section
from bench.targets import MAIN_INPUT, judge, missed_inputs

#: The engines whose zstd level is swept, and whose memory is checked against input size: both modes.
SWEEP_WAYS = LARGE_WAYS = (ways.EXACT, ways.REENCODE)


def log(message: str) -> None:
    print(message, flush=True)


def _names(raw: str) -> list[str]:
    names = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [n for n in names if n not in datagen.SPECS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(datagen.SPECS)} (got {raw!r})")
    return names


def _levels(raw: str) -> list[int]:
    try:
        levels = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected levels like 1,3,6,9, got {raw!r}") from None
    if any(not 1 <= level <= 22 for level in levels):
        raise argparse.ArgumentTypeError("zstd levels go from 1 to 22")
    return levels


def _app_ways(raw: str) -> list[str]:
    names = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [n for n in names if n not in ways.APP_WAYS]
    if unknown:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(ways.APP_WAYS)} (got {raw!r})")
    return names


def _local_ways(raw: str) -> list[str]:
    names = [part.strip() for part in raw.split(",") if part.strip()]
    known = [w.name for w in ways.local_ways()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(known)} (got {raw!r})")
    return names


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each way on each input (default 3)")
    parser.add_argument("--only", type=_names, default=list(datagen.SPECS),
                        help=f"comma list of inputs to run (default: all of {','.join(datagen.SPECS)})")
    parser.add_argument("--skip-blob", action="store_true", help="skip the blob→blob comparison through Azurite")
    parser.add_argument("--large", action="store_true",
                        help="also check peak RSS on a ~2 GB input (generates it once: ~2.3 GB of disk, minutes)")
    parser.add_argument("--levels", type=_levels, default=[1, 3, 6, 9],
                        help="zstd levels for the app's level sweep (default 1,3,6,9; empty to skip)")
    parser.add_argument("--ways", type=_local_ways, default=None,
                        help="comma list of ways for the local comparison (default: all of "
                             f"{','.join(w.name for w in ways.local_ways())})")
    parser.add_argument("--sweep-ways", type=_app_ways, default=list(SWEEP_WAYS),
                        help=f"app ways for the level sweep (default {','.join(SWEEP_WAYS)})")
    parser.add_argument("--large-ways", type=_app_ways, default=list(LARGE_WAYS),
                        help=f"app ways for the memory-vs-size check (default {','.join(LARGE_WAYS)})")
    parser.add_argument("--retries", type=int, default=local.RETRIES,
                        help=f"reruns of a disturbed run, each after waiting up to 20 s for quiet (default "
                             f"{local.RETRIES}; lower it when the machine is never quiet, and read the notes)")
    parser.add_argument("--no-profile", action="store_true",
                        help="don't profile re-encode's phases on inputs where one of its targets is missed")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: one repeat, no blob comparison, no level sweep (figures not for keeping)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.skip_blob, args.levels = 1, True, []
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.retries < 0:
        parser.error("--retries must be 0 or more")
    return args


def _ensure(spec: datagen.Spec) -> None:
    """Generate a missing input in a child process, never in this one.

    A child's peak RSS, as ``wait4`` reports it, includes what it inherited from this process before its
    exec: generating the 2.3 GB input here once left every later child reading 467 MB.
    """
    if datagen.is_current(spec):
        return
    code = "import sys; from bench import datagen; datagen.ensure(datagen.by_name(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", code, spec.name], check=True, cwd=ROOT)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    local.RETRIES = args.retries
    started = time.perf_counter()
    cpu_at_start = CpuTimes.now()
    app_root = ways.snapshot_app()
    run = Run(command=shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)]),
              started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), repeats=args.repeats, retries=args.retries)
    specs = [datagen.SPECS[name] for name in args.only]
    log(f"inputs in {DATA}")
    for spec in specs:
        _ensure(spec)
        _record(run, spec)
    on_mixed = MAIN_INPUT in args.only
    if args.large and on_mixed:
        _ensure(datagen.LARGE)
        _record(run, datagen.LARGE)

    local_ways = [w for w in ways.local_ways(app_root) if args.ways is None or w.name in args.ways]
    log(f"local: {len(specs)} inputs × {len(local_ways)} ways × {args.repeats} repeats")
    run.sections["local"] = Section.of("local", "Local file → file", local_ways,
                                       run_local(specs, local_ways, args.repeats, log))
    if on_mixed and not args.skip_blob:
        _blob(run, args.repeats, app_root)
    if on_mixed and args.levels and args.sweep_ways:
        log(f"level sweep: {', '.join(args.sweep_ways)} at {args.levels}")
        sweep_ways = [ways.app(level, root=app_root, kind=kind) for kind in args.sweep_ways for level in args.levels]
        run.sections["sweep"] = Section.of("sweep", "App zstd level sweep", sweep_ways,
                                           run_local([datagen.SPECS[MAIN_INPUT]], sweep_ways, args.repeats, log,
                                                     warm_up=False))
    if args.large and on_mixed and args.large_ways:
        log(f"memory vs input size: {', '.join(args.large_ways)}")
        size_ways = [ways.app(root=app_root, kind=kind) for kind in args.large_ways]
        run.sections["large"] = Section.of("large", "App peak memory vs input size", size_ways,
                                           run_local([datagen.SPECS[MAIN_INPUT], datagen.LARGE], size_ways,
                                                     args.repeats, log, warm_up=False))
    if not on_mixed:
        run.notes.append(f"The blob, level and memory sections use the {MAIN_INPUT} input, which --only left out.")
    run.notes.extend(_failures(run))
    if not args.no_profile:
        _profile_misses(run, app_root)
    run.total_s = time.perf_counter() - started
    run.interference = interference(cpu_at_start, CpuTimes.now())

    for title, headers, rows in tables(run, labels=False):
        log(f"\n{title}\n{text(headers, rows)}")
    drawn = _chart(run)
    document.write(run, RESULTS_MD, drawn)
    log(f"\nwrote {RESULTS_MD}" + (f" and {RESULTS_PNG}" if drawn else "") + f"; whole run {run.total_s:.0f} s; "
        + run.interference)
    return 0


def _record(run: Run, spec: datagen.Spec) -> None:
    run.input_sizes[spec.name] = spec.path.stat().st_size
    run.input_rows[spec.name] = spec.rows


def _failures(run: Run) -> list[str]:
    """A note for every way that failed, and one per section listing the ways with disturbed runs kept."""
    notes = []
    for section in run.sections.values():
        disturbed = []
        for name, by_way in section.summaries.items():
            for way, summary in by_way.items():
                if summary.failures:
                    notes.append(f"{section.title}: {way} on {name} failed {summary.failures} of "
                                 f"{summary.failures + summary.runs} runs ({summary.error})")
                if summary.disturbed:
                    disturbed.append(f"{way} on {name} {summary.disturbed}/{summary.runs}")
        if disturbed:
            notes.append(f"{section.title}: runs disturbed by other work on the machine even after "
                         f"{run.retries} retr{'y' if run.retries == 1 else 'ies'} (their wall times are less sure; "
                         f"CPU, RSS and bytes much less affected): " + ", ".join(disturbed))
    return notes


def _profile_misses(run: Run, app_root: Path) -> None:
    """For each input where a re-encode target is missed, measure where its CPU goes (``bench/phases.py``)."""
    for name in missed_inputs(judge(run)):
        spec = datagen.SPECS.get(name)
        if spec is None:
            continue
        log(f"profiling re-encode's phases on {name} (a target is missed there)")
        env = {**ways.app(root=app_root).env(), "PYTHONPATH": str(app_root)}
        child = run_child([sys.executable, str(BENCH / "phases.py"), str(spec.path)], env=env, cwd=app_root)
        try:
            run.profiles[name] = {**json.loads(child.stdout.strip().splitlines()[-1]), "rss_bytes": child.rss_bytes}
        except (ValueError, IndexError):
            run.notes.append(f"Profiling re-encode on {name} failed: {child.stderr.strip()[-300:]}")


def _blob(run: Run, repeats: int, app_root: Path) -> None:
    from bench.blob import run_blob

    log("blob → blob through Azurite")
    try:
        samples, blob_ways = run_blob(datagen.SPECS[MAIN_INPUT], repeats, log, app_root)
    except (OSError, RuntimeError) as exc:
        run.notes.append(f"The blob comparison could not run: {exc}")
        log(f"  blob comparison failed: {exc}")
        return
    run.sections["blob"] = Section.of("blob", "Blob → blob through Azurite", list(blob_ways), samples)


def _chart(run: Run) -> bool:
    try:
        chart.draw(run, RESULTS_PNG)
    except ImportError as exc:
        run.notes.append(f"No chart: {exc} (install requirements-dev.txt)")
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
