"""``python -m devhost.worker``: one more worker process for the app's queue triggers, no HTTP, no Azurite.

On Azure the scale controller adds instances as a backfill's queues grow; locally, start more of these
beside ``make run`` (same ``local.settings.json``) to have several processes compete for one queue.
Stops on Ctrl-C or SIGTERM, letting running messages finish; a killed worker's messages reappear.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from devhost.azurite import ROOT
from devhost.host import discover
from devhost.queues import QueueOptions, QueueRunner
from shared.errors import ConfigError
from shared.settings import Settings
from shared.storage import quiet_sdk_logging


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devhost.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--lease", type=float, default=30.0, metavar="SECONDS",
                        help="how long a received message stays hidden before renewal; a killed worker's "
                             "messages reappear after it (default 30)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from devhost.__main__ import load_local_settings

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_sdk_logging()
    load_local_settings(ROOT)
    try:
        Settings.from_env()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    sys.path.insert(0, str(ROOT))
    import function_app

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    runner = QueueRunner(discover(function_app.app).queues, QueueOptions.from_host_json(ROOT / "host.json"),
                         lease_seconds=args.lease)
    runner.start()
    logging.getLogger("devhost.worker").info("worker ready: %s",
                                              ", ".join(f.queue for f in runner.functions))
    try:
        while not stopping.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    runner.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
