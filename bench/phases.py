"""Where a re-encode's CPU goes, phase by phase: ``python bench/phases.py SRC`` prints one JSON object.

py-spy is not in the venv and cProfile sees one thread only, so each phase
of the real engine (decode, the encoding trial, encode, proof, the reader
policy check, appending to the output) is wrapped to add up the CPU time of
the thread that runs it (``time.thread_time``), whichever thread that is.
Decoding runs on Arrow's own threads (``use_threads``), which no wrapper
sees, so what the phases leave of the process's CPU is reported as decoding
and the rest; the interpreter's start-up (imports) is measured apart. The run
is the app's own re-encode at its default settings, workers and budget
included, into a temporary file, so what the bench judges is what is
profiled. Run as a script with ``shared`` importable (the bench runs it from
the app's snapshot); it is a measurement, never imported by the app.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from shared import encodings, pipeline, reencode
from shared.parquet import assembly
from shared.settings import Settings
from shared.sinks import LocalFileSink

_lock = threading.Lock()
cpu: dict[str, float] = {}
calls: dict[str, int] = {}


def _add(phase: str, seconds: float) -> None:
    with _lock:
        cpu[phase] = cpu.get(phase, 0.0) + seconds
        calls[phase] = calls.get(phase, 0) + 1


def timed(phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` counting the CPU time of the thread that calls it under ``phase``."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            _add(phase, time.thread_time() - started)

    return wrapper


def timed_iterator(phase: str, function: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """A generator function whose every step counts under ``phase`` (the decoder yields batch by batch)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
        iterator = function(*args, **kwargs)
        while True:
            started = time.thread_time()
            try:
                item = next(iterator)
            except StopIteration:
                _add(phase, time.thread_time() - started)
                return
            _add(phase, time.thread_time() - started)
            yield item

    return wrapper


def instrument() -> None:
    reencode._group_batches = timed_iterator("decode (calling thread)",
                                             reencode._group_batches)
    reencode.encode_part = timed("encode", reencode.encode_part)
    reencode.prove_part = timed("prove", reencode.prove_part)
    reencode.policy_problem = timed("policy check", reencode.policy_problem)
    encodings.choose = timed("encoding trial", encodings.choose)
    assembly.Assembler.append_part = timed("append (footer parse, copy)",  # type: ignore[method-assign]
                                           assembly.Assembler.append_part)


def main(src: str) -> dict[str, Any]:
    reencode.release_memory_promptly()
    instrument()
    settings = Settings.from_env({"RECOMPRESS_MODE": "reencode"})
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        sink = LocalFileSink(Path(folder) / "out.parquet")
        report = pipeline.run(pa.OSFile(src), src, os.path.getsize(src), None, sink, settings, "out")
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = (usage.ru_utime - usage_before.ru_utime) + (usage.ru_stime - usage_before.ru_stime)
    phases = {**cpu, "decode on Arrow's threads, and the rest": max(0.0, total - sum(cpu.values()))}
    return {"wall_s": wall, "cpu_s": total, "system_s": usage.ru_stime - usage_before.ru_stime,
            "startup_cpu_s": usage_before.ru_utime + usage_before.ru_stime, "phases": phases,
            "workers": settings.worker_threads, "calls": calls,
            "memory_peak": report.memory_peak, "memory_budget": report.memory_budget,
            "row_groups": calls.get("encode", 0), "bytes_out": report.bytes_out}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
