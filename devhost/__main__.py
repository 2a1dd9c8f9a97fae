"""``python -m devhost``: Azurite + the app + blob events on a laptop, stopped by Ctrl-C.

1. Loads ``local.settings.json`` (or the example) into the environment, as ``func start`` does.
2. Starts the project's Azurite (blob 10000, queue 10001, table 10002, data in ``.azurite/``) unless told not to.
3. Creates the input, output and quarantine containers, and the backfill's queues and table.
4. Serves the app on http://localhost:7071: through ``func start`` when Core Tools are on PATH,
   otherwise through the local host in :mod:`devhost.host`, which also runs the queue triggers
   (:mod:`devhost.queues`; ``python -m devhost.worker`` adds more worker processes).
5. Runs the event pump that turns new input blobs into Event Grid notifications.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from devhost.azurite import ROOT, Azurite, start_child
from devhost.events import EventPump, Subscription
from shared.errors import ConfigError, ConflictError, RecompressError
from shared.settings import Settings
from shared.storage import quiet_sdk_logging

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger("devhost")


def load_local_settings(root: Path) -> Path | None:
    """Copy ``Values`` from local.settings.json (else the example) into os.environ, never overriding."""
    for name in ("local.settings.json", "local.settings.json.example"):
        path = root / name
        if path.exists():
            values = json.loads(path.read_text()).get("Values", {})
            for key, value in values.items():
                os.environ.setdefault(key, str(value))
            return path
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=7071, help="HTTP port of the app (default 7071)")
    parser.add_argument("--no-azurite", action="store_true",
                        help="use the storage in ParquetStorage instead of starting Azurite")
    parser.add_argument("--blob-port", type=int, default=10000)
    parser.add_argument("--queue-port", type=int, default=10001)
    parser.add_argument("--table-port", type=int, default=10002)
    parser.add_argument("--queue-lease", type=float, default=30.0, metavar="SECONDS",
                        help="the local host keeps a received queue message hidden this long, renewing it "
                             "while it runs; a killed worker's messages reappear after it (default 30)")
    parser.add_argument("--location", type=Path, default=ROOT / ".azurite", help="Azurite's data folder")
    parser.add_argument("--func", choices=("auto", "never"), default="auto",
                        help="use Core Tools' `func start` when on PATH (auto), or always the local host")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between looks for new blobs")
    parser.add_argument("--client-timeout", type=int, default=120, metavar="SECONDS",
                        help="the local host closes a connection idle this long (default 120)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run until Ctrl-C or SIGTERM; 0 then, 1 when something could not start, 2 for a bad setting.

    A start-up failure is one line on stderr (``error: ...``), and whatever had started is stopped.
    """
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_sdk_logging()
    settings_file = load_local_settings(ROOT)
    log.info("settings from %s", settings_file.name if settings_file else "the environment only")
    stack: list[tuple[str, Callable[[], None]]] = []
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        settings = Settings.from_env()  # a bad setting fails here, before anything starts
        if not args.no_azurite:
            azurite = Azurite(args.location, args.blob_port, args.queue_port, log_file=args.location / "azurite.log",
                              table_port=args.table_port)
            stack.append(("azurite", azurite.stop))
            azurite.start()
            for key in ("ParquetStorage", "AzureWebJobsStorage"):
                os.environ[key] = azurite.connection_string
            log.info("Azurite: blob %d, queue %d, table %d, data in %s", args.blob_port, args.queue_port,
                     args.table_port, args.location)
        serve(args, settings, stack, stopping)
    except KeyboardInterrupt:
        pass
    except ConfigError as exc:
        return _fail(2, str(exc))
    except (RuntimeError, RecompressError) as exc:
        return _fail(1, str(exc))
    finally:
        for label, stop in reversed(stack):
            log.info("stopping %s", label)
            try:
                stop()
            except Exception as exc:  # stop the rest all the same
                log.warning("stopping %s: %s: %s", label, type(exc).__name__, exc)
    return 0


def _fail(status: int, message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return status


def serve(args: argparse.Namespace, settings: Settings, stack: list[tuple[str, Callable[[], None]]],
          stopping: threading.Event) -> None:
    sys.path.insert(0, str(ROOT))
    from azure.storage.blob import BlobServiceClient

    import function_app
    from devhost.host import LocalHost, discover, webhook_url
    from devhost.queues import QueueOptions, QueueRunner
    from shared.settings import STORAGE_CONNECTION

    settings = Settings.from_env()  # again: the connection may be Azurite's, set since
    ensure_storage(settings)
    functions = discover(function_app.app)
    blob_functions = functions[1]
    func_binary = shutil.which("func") if args.func == "auto" else None
    if func_binary:
        settings_file = ROOT / "local.settings.json"
        if not settings_file.exists():  # func start reads only this file
            shutil.copyfile(ROOT / "local.settings.json.example", settings_file)
            log.info("created local.settings.json from the example")
        base = f"http://localhost:{args.port}"
        process = start_child([func_binary, "start", "--port", str(args.port)], cwd=ROOT)
        stack.append(("func", _Process(process).stop))
        _wait_for(base, process)
    else:
        host = LocalHost(functions, args.port, max_body=settings.max_body_size, client_timeout=args.client_timeout)
        try:
            host.start()
        except OSError as exc:
            taken = exc.errno == errno.EADDRINUSE
            raise RuntimeError(f"port {args.port} is taken; is another `make run` running? Stop it or pick "
                               "another with --port" if taken else f"cannot listen on port {args.port}: {exc}"
                               ) from None
        stack.append(("local host", host.stop))
        base = host.url
        runner = QueueRunner(functions.queues, QueueOptions.from_host_json(ROOT / "host.json"),
                             lease_seconds=args.queue_lease)
        runner.start()
        stack.append(("queue triggers", runner.stop))
    service = BlobServiceClient.from_connection_string(os.environ[STORAGE_CONNECTION])
    subs = [Subscription(f.name, f.container, webhook_url(base, f.name)) for f in blob_functions]
    pump = EventPump(service, subs, interval=args.poll,
                     done_in=(settings.output_container, settings.quarantine_container))
    pending = pump.snapshot()
    if pending:
        log.info("catching up on %d input blob(s) with no current output", pending)
    pump.start()
    stack.append(("event pump", pump.stop))
    log.info("ready: %s/api (%s); upload to %s to trigger",
             f"http://localhost:{args.port}", "func start" if func_binary else "local host",
             ", ".join(sorted({s.container for s in subs})))
    while not stopping.wait(1.0):
        pass


def _wait_for(base: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"func start exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/api/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"func start did not answer on {base} within {timeout:.0f} s")


class _Process:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def ensure_storage(settings: Settings) -> None:
    """Create the containers, the backfill's queues and its table if missing: a local run's bootstrap.

    The app never creates them (on Azure, `azd up` does, and the app's identity needs no right to).
    """
    from shared.storage import context

    storage = context(settings)
    for name in (settings.input_container, settings.output_container, settings.quarantine_container):
        container = storage.service.get_container_client(name)
        if not storage.call(name, container.exists):
            storage.call(name, container.create_container)
    for queue in (settings.backfill_list_queue, settings.backfill_blob_queue):
        for name in (queue, f"{queue}-poison"):
            with contextlib.suppress(ConflictError):  # it exists already
                storage.call(f"queue {name!r}", storage.queue(name).create_queue)
    with contextlib.suppress(ConflictError):
        storage.call(f"table {settings.backfill_table!r}", storage.table(settings.backfill_table).create_table)


if __name__ == "__main__":
    sys.exit(main())

