"""Time one child process: wall clock, CPU and peak RSS, straight from the kernel.

``os.wait4`` returns the child's own resource usage, so its ``ru_maxrss`` is
that process's peak resident set (and its waited-for children's), not the
benchmark's; measuring in-process or by polling would miss short peaks or
count the harness. Output goes to files, not pipes, so a chatty child can
never block on a full pipe and distort its timing.

The child is started by a tiny launcher (Python without site, no imports
beyond ``os``), which reports its own child's usage: a process's peak RSS as
the kernel keeps it includes the memory of the process it was spawned from,
before its exec, so children spawned straight from the benchmark (which holds
pyarrow and pandas, 150 MB and more) could never show less than that.

On a 2-core machine anything else that runs at the same time (another
session's tests, say) takes a core from the child and skews wall time,
worst for the peers that encode in parallel. So each run also records the
CPU the rest of the machine used meanwhile (system-wide busy time minus the
child's and the benchmark's own helpers such as Azurite); a run where that is
large is "disturbed" and gets retried.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Spawns argv[1:], waits, and writes the child's exit status, CPU and peak RSS as a last stderr line.
_LAUNCHER = (
    "import os, sys\n"
    "pid = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ)\n"
    "_, status, use = os.wait4(pid, 0)\n"
    "sys.stderr.write('\\n@launcher %d %r %d\\n' % (os.waitstatus_to_exitcode(status),"
    " use.ru_utime + use.ru_stime, use.ru_maxrss))\n"
)

#: A child running longer than this is killed and its sample marked failed.
TIMEOUT_S = 1800.0
#: CPU seconds others may use during a run before it counts as disturbed: a fixed allowance for the
#: kernel (writeback of the output) plus a share of the run's wall time.
ALLOWED_OTHER_S, ALLOWED_OTHER_SHARE = 0.25, 0.10


@dataclass(frozen=True)
class Sample:
    """One timed run of one way on one input."""

    wall_s: float
    cpu_s: float
    rss_bytes: int
    out_bytes: int
    error: str = ""
    other_cpu_s: float = 0.0
    #: For the app: the mode its ``--json`` report says it ran (exact / reencode), and why.
    mode: str = ""
    mode_reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def disturbed(self) -> bool:
        """True when the rest of the machine used enough CPU meanwhile to skew this run's wall time."""
        return self.other_cpu_s > ALLOWED_OTHER_S + ALLOWED_OTHER_SHARE * self.wall_s


@dataclass(frozen=True)
class Child:
    """What one child process cost, and how it ended."""

    wall_s: float
    cpu_s: float
    rss_bytes: int
    returncode: int
    stderr: str
    other_cpu_s: float = 0.0
    stdout: str = ""


def run_child(argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
              timeout: float = TIMEOUT_S) -> Child:
    """Run ``argv`` to completion and report its wall time, user+sys CPU and peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        helpers_before = _helpers_cpu()
        busy_before = busy_cpu()
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, *argv], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, env=dict(env) if env is not None else None, cwd=cwd)
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
        wall = time.perf_counter() - started
        busy = busy_cpu() - busy_before
        helpers = _helpers_cpu(proc.pid) - helpers_before
        proc.returncode = os.waitstatus_to_exitcode(status)  # tell Popen it has been reaped
        err.seek(0)
        stderr, code, cpu, rss_kib = _launched(err.read().decode(errors="replace"), proc.returncode, usage)
        out.seek(0)
        stdout = out.read(1024 * 1024).decode(errors="replace")
    return Child(wall, cpu, rss_kib * 1024, code, stderr, max(0.0, busy - cpu - helpers), stdout)


def _launched(stderr: str, returncode: int, usage: Any) -> tuple[str, int, float, int]:
    """The command's own stderr, exit status, CPU seconds and peak RSS (KiB), from the launcher's last line.

    Without that line (the launcher itself failed, or was killed by the watchdog) the launcher's own
    figures stand, and its status says what happened.
    """
    head, _, last = stderr.rstrip("\n").rpartition("\n")
    if last.startswith("@launcher "):
        code, cpu, rss = last.split()[1:4]
        return head, int(code), float(cpu), int(rss)
    return stderr, returncode, usage.ru_utime + usage.ru_stime, int(usage.ru_maxrss)


def busy_cpu() -> float:
    """CPU seconds the whole machine has spent busy since boot (NaN where /proc/stat is missing)."""
    try:
        with open("/proc/stat", encoding="utf-8") as stat:
            user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in stat.readline().split()[1:8])
    except (OSError, ValueError):
        return float("nan")
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(limit_s: float = 20.0, window_s: float = 1.0, share: float = 0.1) -> float:
    """Wait until others use under ``share`` of a core for a whole ``window_s``; give up after ``limit_s``.

    Returns the seconds waited, so a caller can say so.
    """
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        busy, helpers = busy_cpu(), _helpers_cpu()
        time.sleep(window_s)
        if (busy_cpu() - busy) - (_helpers_cpu() - helpers) < share * window_s:
            break
    return time.perf_counter() - started


def _helpers_cpu(exclude: int | None = None) -> float:
    """CPU used so far by this process and its live descendants (Azurite) other than the timed child."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        if child.pid == exclude:
            continue
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            continue
    return total


def failure(child: Child) -> str:
    """Empty when the child succeeded, else its status and last stderr line."""
    if child.returncode == 0:
        return ""
    lines = child.stderr.strip().splitlines()
    return f"exit {child.returncode}: {lines[-1] if lines else 'no message'}"


@dataclass(frozen=True)
class Summary:
    """Medians over the successful samples of one way on one input."""

    wall_s: float
    cpu_s: float
    rss_bytes: float
    out_bytes: float
    runs: int
    failures: int
    error: str = ""
    disturbed: int = 0
    #: The app's mode over the successful runs ("exact", "reencode", "exact+reencode" if it varied; "" for peers).
    mode: str = ""
    mode_reason: str = ""

    @property
    def ok(self) -> bool:
        return self.runs > 0


def summarise(samples: Sequence[Sample]) -> Summary:
    good = [s for s in samples if s.ok]
    errors = [s.error for s in samples if not s.ok]
    if not good:
        nan = float("nan")
        return Summary(nan, nan, nan, nan, 0, len(errors), errors[0] if errors else "not run")
    return Summary(
        statistics.median(s.wall_s for s in good),
        statistics.median(s.cpu_s for s in good),
        statistics.median(s.rss_bytes for s in good),
        statistics.median(s.out_bytes for s in good),
        len(good),
        len(errors),
        errors[0] if errors else "",
        sum(s.disturbed for s in good),
        "+".join(sorted({s.mode for s in good if s.mode})),
        next((s.mode_reason for s in good if s.mode_reason), ""),
    )
