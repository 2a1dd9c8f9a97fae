"""Shared fixtures: one real Azurite per test session, fresh containers per test, the local host, the
in-process command line and the sandbox worker; and the Hypothesis profiles.

Azurite comes from the project's own ``node_modules`` and listens on free
ports, with its data in a temporary folder, so tests never touch a developer's
``make run`` storage.

Hypothesis runs the quick profile unless ``RECOMPRESS_FUZZ=long`` asks for the
long one (many more examples, a fresh random seed each run, failures kept in
the example database): ``RECOMPRESS_FUZZ=long make test``.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from devhost.__main__ import ensure_storage as make_backfill_storage
from devhost.azurite import Azurite, free_port
from devhost.host import LocalHost, discover
from shared import cli as app_cli
from shared.settings import STORAGE_CONNECTION, Settings
from tests.faults import FaultProxy
from tests.helpers import (
    HOST_BODY_LIMIT,
    HOST_CLIENT_TIMEOUT,
    HOST_QUEUE_LEASE,
    ROOT,
    SRC_ROWS,
    BlobCalls,
    FlakyRig,
    Recorder,
    Result,
    RunCli,
    RunningHost,
    Worker,
    WriteModule,
    app_free_env,
    make_app,
    no_wait,
    parquet_bytes,
    pump_for,
    sample_table,
    wait_for,
)

# --------------------------------------------------------------------------- Hypothesis profiles

FUZZ_PROFILE_ENV = "RECOMPRESS_FUZZ"
_QUIET_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
hypothesis_settings.register_profile("quick", max_examples=400, deadline=None, derandomize=True, database=None,
                                     suppress_health_check=_QUIET_HEALTH)
hypothesis_settings.register_profile("long", max_examples=20_000, deadline=None, derandomize=False,
                                     suppress_health_check=_QUIET_HEALTH)
hypothesis_settings.load_profile(os.environ.get(FUZZ_PROFILE_ENV, "quick"))

#: Tight limits for the fuzz worker, so a mutated footer cannot talk the engine into allocating much.
FUZZ_LIMITS = {
    "RECOMPRESS_MAX_ROW_GROUP_BYTES": "64MiB",
    "RECOMPRESS_MAX_ROWS": "10000000",
    "RECOMPRESS_MAX_COLUMNS": "1000",
}


# --------------------------------------------------------------------------- storage


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """A real Azurite (blob + queue) for the whole session, stopped at the end."""
    location = tmp_path_factory.mktemp("azurite")
    server = Azurite(location, free_port(), free_port(), log_file=location / "azurite.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def service(azurite: Azurite) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(azurite.connection_string)


@pytest.fixture
def containers(service: BlobServiceClient) -> tuple[ContainerClient, ContainerClient]:
    """A fresh input and output container per test, so tests never see each other's blobs."""
    suffix = uuid.uuid4().hex[:12]
    made = []
    for role in ("in", "out"):
        client = service.get_container_client(f"{role}-{suffix}")
        client.create_container()
        made.append(client)
    return made[0], made[1]


@pytest.fixture
def storage_env(azurite: Azurite, containers: tuple[ContainerClient, ContainerClient]) -> dict[str, str]:
    """App settings pointing at the session's Azurite and this test's containers."""
    return {
        STORAGE_CONNECTION: azurite.connection_string,
        "RECOMPRESS_INPUT_CONTAINER": containers[0].container_name,
        "RECOMPRESS_OUTPUT_CONTAINER": containers[1].container_name,
    }


@pytest.fixture
def settings(storage_env: dict[str, str]) -> Settings:
    return Settings.from_env(storage_env)


@pytest.fixture
def backfill_env(storage_env: dict[str, str]) -> dict[str, str]:
    """``storage_env`` plus this test's own backfill queues (and poison queues), table and quarantine container."""
    suffix = uuid.uuid4().hex[:10]
    env = {**storage_env,
           "RECOMPRESS_QUARANTINE_CONTAINER": f"q-{suffix}",
           "RECOMPRESS_BACKFILL_LIST_QUEUE": f"list-{suffix}",
           "RECOMPRESS_BACKFILL_BLOB_QUEUE": f"blobs-{suffix}",
           "RECOMPRESS_BACKFILL_TABLE": f"jobs{suffix}"}
    make_backfill_storage(Settings.from_env(env))
    return env


@pytest.fixture
def backfill_settings(backfill_env: dict[str, str]) -> Settings:
    return Settings.from_env(backfill_env)


# --------------------------------------------------------------------------- the command line, in-process


@pytest.fixture
def no_app_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No app setting from the developer's environment changes an in-process run."""
    for key in set(os.environ) - set(app_free_env()):
        monkeypatch.delenv(key)



@pytest.fixture
def run_cli(no_app_settings: None, capsys: pytest.CaptureFixture[str]) -> RunCli:
    """Call ``shared.cli.main(["recompress", *argv])`` in-process; argparse's own exits become a Result too.

    App settings come from ``os.environ`` as in a real run: set them with ``monkeypatch.setenv``.
    """

    def run(*argv: str | Path) -> Result:
        try:
            code = app_cli.main(["recompress", *map(str, argv)])
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A small valid Parquet file (``SRC_ROWS`` rows of ``sample_table``) to recompress."""
    path = tmp_path / "in.parquet"
    path.write_bytes(parquet_bytes(sample_table(SRC_ROWS)))
    return path


@pytest.fixture
def dst(tmp_path: Path) -> Path:
    """Where a run writes: ``out/result.parquet``, in a folder that exists and is empty."""
    path = tmp_path / "out" / "result.parquet"
    path.parent.mkdir()
    return path


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run with ``tmp_path`` as the working folder, which holds ``box/``, ``box/here.parquet`` and ``plainfile``."""
    (tmp_path / "box").mkdir(exist_ok=True)
    (tmp_path / "box" / "here.parquet").write_bytes(b"")
    (tmp_path / "plainfile").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --------------------------------------------------------------------------- the sandbox worker


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A worker process with default settings, for inputs that might crash pyarrow (see ``Worker``)."""
    running = Worker(tmp_path_factory.mktemp("sandbox") / "worker-stderr.txt")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def fuzz_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A worker process with the fuzz campaign's tight limits."""
    running = Worker(tmp_path_factory.mktemp("fuzz") / "worker-stderr.txt", FUZZ_LIMITS)
    yield running
    running.stop()


# --------------------------------------------------------------------------- storage behind a fault proxy


@pytest.fixture
def proxy(azurite: Azurite) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the session's Azurite (see ``tests/faults.py``)."""
    running = FaultProxy(azurite.blob_port)
    yield running
    running.stop()


# --------------------------------------------------------------------------- the event pump's webhooks


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.server.shutdown()


@pytest.fixture
def flaky_rig(
    service: BlobServiceClient, containers: tuple[ContainerClient, ContainerClient]
) -> Iterator[Callable[[int], FlakyRig]]:
    """Make a FlakyRig on the input container whose webhook answers 500 to its first ``fail_first`` posts."""
    made: list[FlakyRig] = []

    def make(fail_first: int) -> FlakyRig:
        webhook, waited = Recorder(fail_first), list[int]()
        pump = pump_for(service, containers[0], webhook.url)
        pump.attempts = 3
        pump.backoff = no_wait(waited)
        made.append(FlakyRig(webhook, pump, waited))
        return made[-1]

    yield make
    for rig in made:
        rig.webhook.server.shutdown()


# --------------------------------------------------------------------------- the local host


@pytest.fixture
def blob_calls() -> BlobCalls:
    """What the blob trigger of ``make_app`` was called with."""
    return []


@pytest.fixture
def local_host(blob_calls: BlobCalls) -> LocalHost:
    """The local host over ``make_app``'s triggers, called directly (no server started)."""
    return LocalHost(discover(make_app(blob_calls)), port=0)



@pytest.fixture(scope="module")
def host(
    azurite: Azurite, service: BlobServiceClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHost]:
    """The local host of `make run` (``python -m devhost --no-azurite``), on a free port, with its own containers.

    Its request body limit is ``HOST_BODY_LIMIT``; it closes connections idle for ``HOST_CLIENT_TIMEOUT`` s.
    """
    suffix = uuid.uuid4().hex[:10]
    env = app_free_env({
        STORAGE_CONNECTION: azurite.connection_string,
        "AzureWebJobsStorage": azurite.connection_string,
        "RECOMPRESS_INPUT_CONTAINER": f"e2e-in-{suffix}",
        "RECOMPRESS_OUTPUT_CONTAINER": f"e2e-out-{suffix}",
        "RECOMPRESS_QUARANTINE_CONTAINER": f"e2e-q-{suffix}",
        "RECOMPRESS_MAX_BODY_SIZE": str(HOST_BODY_LIMIT),
        "RECOMPRESS_BACKFILL_LIST_QUEUE": f"e2e-list-{suffix}",
        "RECOMPRESS_BACKFILL_BLOB_QUEUE": f"e2e-blobs-{suffix}",
        "RECOMPRESS_BACKFILL_TABLE": f"e2ejobs{suffix}",
    })
    port = free_port()
    log = tmp_path_factory.mktemp("devhost") / "devhost.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--no-azurite", "--func", "never", "--port", str(port), "--poll", "0.1",
             "--client-timeout", str(HOST_CLIENT_TIMEOUT), "--queue-lease", str(HOST_QUEUE_LEASE)],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )
    running = RunningHost(f"http://127.0.0.1:{port}", log,
                          service.get_container_client(env["RECOMPRESS_INPUT_CONTAINER"]),
                          service.get_container_client(env["RECOMPRESS_OUTPUT_CONTAINER"]),
                          service.get_container_client(env["RECOMPRESS_QUARANTINE_CONTAINER"]), env)
    try:
        wait_for(lambda: process.poll() or running.log_line("ready:"), "the local host to be ready", timeout=60)
        assert process.poll() is None, log.read_text()
        yield running
    finally:
        process.terminate()
        process.wait(timeout=30)


_module_numbers = itertools.count()


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WriteModule:
    """Write Python source into a fresh importable module and return the module's name."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(source: str) -> str:
        name = f"recompress_transform_{tmp_path.name}_{next(_module_numbers)}".replace("-", "_")
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return write
