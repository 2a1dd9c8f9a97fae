"""Start and stop the project's own Azurite (from ``node_modules``) for local runs and tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
#: Azurite's published development key: public by design, it guards nothing real.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


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


def connection_string(blob_port: int, queue_port: int) -> str:
    """Connection string for an Azurite on the given loopback ports."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{blob_port}/{ACCOUNT};"
        f"QueueEndpoint=http://127.0.0.1:{queue_port}/{ACCOUNT};"
    )


class Azurite:
    """Azurite's blob and queue services as child processes, data kept in ``location``."""

    def __init__(self, location: Path, blob_port: int = 10000, queue_port: int = 10001,
                 log_file: Path | None = None) -> None:
        self.location = location
        self.blob_port = blob_port
        self.queue_port = queue_port
        self.log_file = log_file
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def connection_string(self) -> str:
        return connection_string(self.blob_port, self.queue_port)

    def start(self, timeout: float = 60.0) -> None:
        """Launch both services and return once each accepts connections."""
        self.location.mkdir(parents=True, exist_ok=True)
        for service, port in (("blob", self.blob_port), ("queue", self.queue_port)):
            if port_open(port):
                raise RuntimeError(f"port {port} is taken; is another Azurite running? Stop it or pick other ports")
            self._procs.append(self._spawn(service, port))
        deadline = time.monotonic() + timeout
        for proc, port in zip(self._procs, (self.blob_port, self.queue_port), strict=True):
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
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
