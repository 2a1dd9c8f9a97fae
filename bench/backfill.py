"""``python -m bench.backfill`` (``make bench-backfill``): how fast a backfill fans out, through Azurite.

Measures, on a fresh Azurite of its own:

- **Per blob:** 1,000 small Parquet files (from pyarrow, polars and DuckDB in turn) processed by a backfill
  with 1, 2 and 4 worker processes (``python -m devhost.worker``) competing for one queue, against the
  same blobs sent one by one to ``POST /api/process`` of the local host by two concurrent clients (one
  host process: the same two files at a time as one worker). Each run writes into its own output
  container, so every run does the whole work.
- **Listing:** blob names listed and enqueued per second over 10,000 blobs, page by page, as the listing
  queue's handler does it, with no blob worker running.

Writes ``bench/backfill.md``. Figures come from this machine and this Azurite; the per-blob overhead
(listing, queues, job table, start-up) is the difference between a backfill's and ``/api/process``'s time
per blob at the same concurrency.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from bench import ROOT
from shared.settings import Settings
from shared.storage import context

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient
from bench.machine import CpuTimes, facts, interference
from bench.writers import WRITERS, written_by

RESULTS = ROOT / "bench" / "backfill.md"


def log(message: str) -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class Rate:
    """One measured run: what was done, how many blobs, in how long."""

    way: str
    blobs: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.blobs / self.seconds

    @property
    def ms_per_blob(self) -> float:
        return 1000 * self.seconds / self.blobs


def small_file(i: int) -> bytes:
    """A few thousand rows of mixed columns, written by pyarrow, polars or DuckDB in turn."""
    rows = 2000 + (i % 7) * 300
    table = pa.table({
        "id": pa.array(range(i * rows, (i + 1) * rows), pa.int64()),
        "amount": pa.array([((j * 7919) % 10007) / 100 for j in range(rows)], pa.float64()),
        "kind": pa.array([f"kind-{j % 13}" for j in range(rows)]),
        "note": pa.array([None if j % 5 == 0 else f"note {j * i % 997}" for j in range(rows)]),
    })
    return written_by(WRITERS[i % 3], table)


class Rig:
    """Azurite and the app's settings for one benchmark run."""

    def __init__(self, folder: Path) -> None:
        from devhost.azurite import Azurite, free_port

        self.azurite = Azurite(folder / "azurite", free_port(), free_port(), log_file=folder / "azurite.log")
        self.azurite.start()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RECOMPRESS_")},
            "ParquetStorage": self.azurite.connection_string,
            "AzureWebJobsStorage": self.azurite.connection_string,
            "PYTHONPATH": str(ROOT),
            "RECOMPRESS_INPUT_CONTAINER": "bench-in",
            "RECOMPRESS_QUARANTINE_CONTAINER": "bench-quarantine",
        }

    def settings(self, output: str, **extra: str) -> Settings:
        return Settings.from_env({**self.env, "RECOMPRESS_OUTPUT_CONTAINER": output, **extra})

    def env_for(self, output: str, **extra: str) -> dict[str, str]:
        return {**self.env, "RECOMPRESS_OUTPUT_CONTAINER": output, **extra}

    def prepare(self, output: str) -> None:
        from devhost.__main__ import ensure_storage

        ensure_storage(self.settings(output))

    def stop(self) -> None:
        self.azurite.stop()


def upload(rig: Rig, count: int, body: Callable[[int], bytes], prefix: str) -> list[str]:
    from azure.storage.blob import BlobServiceClient

    container = BlobServiceClient.from_connection_string(rig.azurite.connection_string).get_container_client(
        "bench-in")
    names = [f"{prefix}{i:05d}.parquet" for i in range(count)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda pair: container.upload_blob(pair[1], body(pair[0]), overwrite=True), enumerate(names)))
    return names


@contextmanager
def processes(argvs: list[list[str]], env: dict[str, str], folder: Path) -> Iterator[list[Path]]:
    """Start each command, logging to its own file; yields the log files; stops them all at the end."""
    started = []
    logs = []
    try:
        for n, argv in enumerate(argvs):
            logs.append(folder / f"proc-{time.monotonic_ns()}-{n}.log")
            with logs[-1].open("wb") as sink:
                started.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT))
        yield logs
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def run_backfill(rig: Rig, workers: int, prefix: str, count: int, folder: Path) -> Rate:
    from shared import backfill

    output = f"bench-out-w{workers}"
    rig.prepare(output)
    settings = rig.settings(output)
    worker = [sys.executable, "-m", "devhost.worker", "--lease", "60"]
    with processes([worker] * workers, rig.env_for(output), folder) as logs:
        _wait_ready(logs, "worker ready")  # start-up is not the job's: the clock starts with every worker polling
        began = time.perf_counter()
        job = backfill.start(settings, prefix)
        while (status := backfill.status(settings, job)).state not in ("done", "failed"):
            time.sleep(0.2)
        seconds = time.perf_counter() - began
    if (status.total, status.written) != (count, count):
        raise SystemExit(f"backfill with {workers} worker(s) ended as {status.line()}")
    return Rate(f"backfill, {workers} worker process{'es' if workers > 1 else ''}", count, seconds)


def run_process_route(rig: Rig, names: list[str], folder: Path) -> Rate:
    from devhost.azurite import free_port

    output = "bench-out-route"
    rig.prepare(output)
    port = free_port()
    host = [sys.executable, "-m", "devhost", "--no-azurite", "--func", "never", "--port", str(port),
            "--poll", "3600"]
    with processes([host], rig.env_for(output), folder):
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base)

        def post(name: str) -> None:
            request = urllib.request.Request(f"{base}/api/process", data=json.dumps({"blob": name}).encode(),
                                             method="POST")
            with urllib.request.urlopen(request, timeout=120) as answer:
                answer.read()

        began = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(post, names))
        seconds = time.perf_counter() - began
    return Rate("POST /api/process, 2 concurrent clients, 1 host process", len(names), seconds)


def _wait_ready(logs: list[Path], needle: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all(needle in path.read_text(errors="replace") for path in logs):
        if time.monotonic() > deadline:
            raise SystemExit(f"not every process logged {needle!r} within {timeout:.0f} s; see {logs}")
        time.sleep(0.1)


def _wait_healthy(base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/api/health", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the local host did not answer on {base}")


def run_listing(rig: Rig, count: int) -> Rate:
    """List ``count`` blob names page by page, as the listing handler does, with no blob worker running."""
    from shared import backfill
    from shared.backfill import PageMessage

    settings = rig.settings("bench-out-listing")
    rig.prepare("bench-out-listing")
    queue_client = _queue(settings, settings.backfill_list_queue)
    began = time.perf_counter()
    job = backfill.start(settings, "names/")
    while True:
        messages = list(queue_client.receive_messages(max_messages=1))
        if not messages:
            if backfill.status(settings, job).state != "listing":
                break
            continue
        message = backfill.parse_message(messages[0].content)
        assert isinstance(message, PageMessage)
        backfill.handle_page(message, settings)
        queue_client.delete_message(messages[0])
    seconds = time.perf_counter() - began
    total = backfill.status(settings, job).total
    if total != count:
        raise SystemExit(f"listing found {total} blobs, expected {count}")
    return Rate("listing and enqueueing, 1,000 per page", count, seconds)


def _queue(settings: Settings, name: str) -> QueueClient:
    return context(settings).queue(name)


def write(rates: list[Rate], files: int, names: int, note: str, argv: list[str]) -> str:
    route = next(r for r in rates if r.way.startswith("POST"))
    one = next(r for r in rates if r.way.startswith("backfill, 1 "))
    lines = [
        "# Backfill fan-out",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python -m bench.backfill {' '.join(argv)}`, "
        "through a fresh Azurite.",
        "",
        *[f"- {name}: {value}" for name, value in facts()],
        f"- during the run: {note}",
        "",
        f"## {files:,} small files (pyarrow, polars and DuckDB writers in turn)",
        "",
        "| way | blobs | wall s | blobs/s | ms per blob |",
        "| --- | ---: | ---: | ---: | ---: |",
        *[f"| {r.way} | {r.blobs:,} | {r.seconds:.1f} | {r.per_second:.1f} | {r.ms_per_blob:.1f} |"
          for r in rates if not r.way.startswith("listing")],
        "",
        _overhead(one, route),
        "",
        f"## Listing {names:,} blob names",
        "",
        "| way | blobs | wall s | blobs/s |",
        "| --- | ---: | ---: | ---: |",
        *[f"| {r.way} | {r.blobs:,} | {r.seconds:.1f} | {r.per_second:.0f} |" for r in rates
          if r.way.startswith("listing")],
        "",
    ]
    return "\n".join(lines)


def _overhead(backfill: Rate, route: Rate) -> str:
    """The backfill's cost per blob beyond the route's, at the same concurrency (it may come out negative)."""
    extra = backfill.ms_per_blob - route.ms_per_blob
    what = (f"{extra:.1f} ms per blob more" if extra >= 0 else
            f"{-extra:.1f} ms per blob less: one worker keeps up to three messages in flight, as host.json's "
            "batchSize and newBatchThreshold allow, where the route's two clients wait for each answer")
    return (f"The backfill's own overhead (listing, two queue messages, the job table, each message's start) at "
            f"the route's concurrency: {what} ({backfill.ms_per_blob:.1f} against {route.ms_per_blob:.1f} ms).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backfill", description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000, help="small files per run (default 1,000)")
    parser.add_argument("--names", type=int, default=10_000, help="blob names to list (default 10,000)")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts (default 1,2,4)")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    start = CpuTimes.now()
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        folder = Path(tmp)
        rig = Rig(folder)
        try:
            from shared.storage import quiet_sdk_logging

            quiet_sdk_logging()
            rig.prepare("bench-out")
            log(f"uploading {args.files:,} files and {args.names:,} names")
            names = upload(rig, args.files, small_file, "files/")
            upload(rig, args.names, lambda _: b"", "names/")
            rates = [run_process_route(rig, names, folder)]
            log(f"{rates[-1].way}: {rates[-1].per_second:.1f} blobs/s")
            for workers in counts:
                rates.append(run_backfill(rig, workers, "files/", args.files, folder))
                log(f"{rates[-1].way}: {rates[-1].per_second:.1f} blobs/s")
            rates.append(run_listing(rig, args.names))
            log(f"{rates[-1].way}: {rates[-1].per_second:.0f} blobs/s")
        finally:
            rig.stop()
    text = write(rates, args.files, args.names, interference(start, CpuTimes.now()), sys.argv[1:])
    RESULTS.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
