"""Start and stop the project's own Azurite (from ``node_modules``) for local runs and tests."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
#: Azurite's published development key: public by design, it guards nothing real.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#: In Azurite's data folder: the pids of the services started on it, so the next start can clear them.
PID_FILE = "azurite.pid.json"
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("devhost")


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send the child SIGTERM when the process that started it dies.

    Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere None, and the pid file catches a leftover on the
    next start. libc is loaded here, before the fork: the hook itself only makes two system calls.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl, parent = libc.prctl, os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the hook ran: nobody will send the signal
            os._exit(1)

    return hook


def start_child(args: list[str], stdout: IO[bytes] | int | None = None, stderr: IO[bytes] | int | None = None,
                cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """``Popen`` in a session of its own (so a stop reaches its whole group) that ends when we do."""
    return subprocess.Popen(args, stdout=stdout, stderr=stderr, cwd=cwd, start_new_session=True,
                            preexec_fn=_die_with_parent_hook())


def _cmdline(pid: int) -> str | None:
    """A live process's command line, None when it is gone (or a zombie: it holds no port any more)."""
    proc = Path("/proc") / str(pid)
    try:
        if proc.exists():
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return None
            return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        ps = shutil.which("ps")
        if ps is None:
            return None
        done = subprocess.run([ps, "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False)
        return done.stdout.strip() or None
    except (OSError, IndexError):
        return None


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def connection_string(blob_port: int, queue_port: int, table_port: int | None = None) -> str:
    """Connection string for an Azurite on the given loopback ports."""
    table = f"TableEndpoint=http://127.0.0.1:{table_port}/{ACCOUNT};" if table_port else ""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{blob_port}/{ACCOUNT};"
        f"QueueEndpoint=http://127.0.0.1:{queue_port}/{ACCOUNT};{table}"
    )


class Azurite:
    """Azurite's blob, queue and table services as child processes, data kept in ``location``.

    ``table_port`` None picks a free port: callers that name only the blob and queue ports still get
    the table service the backfill needs.
    """

    def __init__(self, location: Path, blob_port: int = 10000, queue_port: int = 10001,
                 log_file: Path | None = None, *, table_port: int | None = None) -> None:
        self.location = location
        self.blob_port = blob_port
        self.queue_port = queue_port
        self.table_port = free_port() if table_port is None else table_port
        self.log_file = log_file
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def connection_string(self) -> str:
        return connection_string(self.blob_port, self.queue_port, self.table_port)

    @property
    def services(self) -> tuple[tuple[str, int], ...]:
        return ("blob", self.blob_port), ("queue", self.queue_port), ("table", self.table_port)

    @property
    def pid_file(self) -> Path:
        return self.location / PID_FILE

    def start(self, timeout: float = 60.0) -> None:
        """Launch both services and return once each accepts connections.

        An Azurite that a previous run left on this data folder (its parent was killed, say) is stopped
        first: two on one folder would corrupt it, and it would hold the ports.
        """
        self.location.mkdir(parents=True, exist_ok=True)
        self.clear_stale()
        for service, port in self.services:
            if port_open(port):
                self.stop()
                raise RuntimeError(f"port {port} is taken; is another Azurite running? Stop it or pick other ports")
            try:
                self._procs.append(self._spawn(service, port))
            except BaseException:
                self.stop()
                raise
            self._write_pids()
        deadline = time.monotonic() + timeout
        for proc, (_, port) in zip(self._procs, self.services, strict=True):
            while not port_open(port):
                if proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"Azurite exited with status {proc.returncode}; see {self.log_file}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"Azurite did not listen on port {port} within {timeout:.0f} s")
                time.sleep(0.05)

    def stop(self) -> None:
        """Terminate the services (their whole process groups) and wait for them."""
        for proc in self._procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._procs.clear()
        self.pid_file.unlink(missing_ok=True)

    def clear_stale(self, timeout: float = 15.0) -> None:
        """Stop the services the pid file names, if they still run Azurite on this folder; forget the file."""
        try:
            recorded = json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return
        stale = []
        for service, pid in dict(recorded).items():
            command = _cmdline(int(pid))
            if command and "azurite" in command and str(self.location / str(service)) in command:
                log.warning("stopping Azurite %s (pid %d) left running on %s by an earlier run", service, pid,
                            self.location)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGTERM)
                stale.append(int(pid))
        deadline = time.monotonic() + timeout
        for pid in stale:
            while _cmdline(pid) is not None:
                if time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)

    def _write_pids(self) -> None:
        services = [name for name, _ in self.services]
        self.pid_file.write_text(json.dumps({s: p.pid for s, p in zip(services, self._procs, strict=False)}))

    def __enter__(self) -> Azurite:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, service: str, port: int) -> subprocess.Popen[bytes]:
        binary = ROOT / "node_modules" / ".bin" / f"azurite-{service}"
        if not binary.exists():
            found = shutil.which(f"azurite-{service}")
            if found is None:
                raise RuntimeError(f"{binary} is missing; run `npm ci` (make does it) to install Azurite")
            binary = Path(found)
        args = [
            str(binary), "--silent", "--skipApiVersionCheck", "--disableTelemetry", "--loose",
            f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port),
            "--location", str(self.location / service),
        ]
        log = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        return start_child(args, stdout=log, stderr=subprocess.STDOUT)
