"""Shared fixtures: one real Azurite per test session, fresh containers per test.

Azurite comes from the project's own ``node_modules`` and listens on free
ports, with its data in a temporary folder, so tests never touch a developer's
``make run`` storage.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from devhost.azurite import Azurite, free_port
from shared.settings import STORAGE_CONNECTION, Settings
from tests.helpers import parquet_bytes, sample_table


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
def app_env(storage_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The same settings placed in os.environ, where the function app reads them."""
    for key, value in storage_env.items():
        monkeypatch.setenv(key, value)
    return storage_env


@pytest.fixture
def sample_file(tmp_path: Path) -> Path:
    path = tmp_path / "sample.parquet"
    path.write_bytes(parquet_bytes(sample_table()))
    return path
