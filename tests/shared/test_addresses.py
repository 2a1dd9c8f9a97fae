"""Blob addresses in the forms other tools print, and which account each one is reached through."""

from __future__ import annotations

import re

import pytest

from shared.addresses import BlobAddress, parse_url, settings_for, storage_for
from shared.errors import ConfigError, InputError
from shared.settings import Connection, Settings
from shared.storage import context


@pytest.mark.parametrize(("text", "expected"), [
    ("az://input/2024/01/a.parquet", ("input", "2024/01/a.parquet", None)),
    ("abfss://input@lake01.dfs.core.windows.net/2024/01/a.parquet", ("input", "2024/01/a.parquet", "lake01")),
    ("abfs://input@Lake01.dfs.core.windows.net/a.parquet", ("input", "a.parquet", "lake01")),
    ("https://lake01.blob.core.windows.net/input/2024/a%20b.parquet", ("input", "2024/a b.parquet", "lake01")),
    ("https://lake01.dfs.core.windows.net/input/a.parquet", ("input", "a.parquet", "lake01")),
    ("http://127.0.0.1:10000/devstoreaccount1/input/a.parquet", ("input", "a.parquet", "devstoreaccount1")),
    ("abfss://input@lake01.dfs.core.windows.net/day/file#2.parquet", ("input", "day/file#2.parquet", "lake01")),
])
def test_every_form_names_container_blob_and_account(text: str, expected: tuple[str, str, str | None]) -> None:
    address = parse_url(text)

    assert (address.container, address.blob, address.account) == expected
    assert address.text == text


@pytest.mark.parametrize(("text", "problem"), [
    ("abfss://lake01.dfs.core.windows.net/a.parquet", "names no container"),
    ("abfss://input@example.com/a.parquet", "is not a storage account endpoint"),
    ("https://lake01.blob.core.windows.net/input", "names no blob"),
    ("https://lake01.blob.core.windows.net/", "names no blob"),
    ("ftp://lake01/input/a", "is not a blob address"),
    ("https://data.contoso.com/reports/input/x", "custom domains are not followed"),
    ("https://lake01.blob.core.windows.net.evil.example/lake01/input/x", "is not a storage account endpoint"),
    ("http://10.1.2.3:10000/lake01/input/x", "is not a storage account endpoint"),
])
def test_a_malformed_address_is_one_line_naming_it(text: str, problem: str) -> None:
    with pytest.raises(InputError, match=problem) as caught:
        parse_url(text)

    assert str(caught.value).startswith(f"{text}: ")
    assert "\n" not in str(caught.value)


def test_a_sas_token_is_refused_and_never_repeated() -> None:
    text = "https://lake01.blob.core.windows.net/input/a.parquet?sv=2024&sig=TOPSECRETSIG"

    with pytest.raises(InputError, match="carries a query string") as caught:
        parse_url(text)

    assert "TOPSECRETSIG" not in str(caught.value)


@pytest.mark.parametrize(("text", "endpoint"), [
    ("https://lake01.blob.core.chinacloudapi.cn/input/a", "https://lake01.blob.core.chinacloudapi.cn"),
    ("https://lake01.blob.core.usgovcloudapi.net/input/a", "https://lake01.blob.core.usgovcloudapi.net"),
    ("abfss://input@lake01.dfs.core.windows.net/a", "https://lake01.blob.core.windows.net"),
    ("http://localhost:10000/devstoreaccount1/input/a", "http://127.0.0.1:10000/devstoreaccount1"),
])
def test_the_endpoint_keeps_the_addresses_own_cloud(text: str, endpoint: str) -> None:
    assert parse_url(text).endpoint == endpoint


def test_the_same_account_name_in_another_cloud_is_another_account() -> None:
    settings = Settings(connection=Connection(service_uri="https://lake01.blob.core.windows.net",
                                              managed_identity=True))

    chosen = settings_for(settings, parse_url("https://lake01.blob.core.chinacloudapi.cn/input/a.parquet"))

    assert chosen.connection.service_uri == "https://lake01.blob.core.chinacloudapi.cn"


def test_another_emulator_is_refused_even_with_an_identity() -> None:
    settings = Settings(connection=Connection(service_uri="https://lake01.blob.core.windows.net",
                                              managed_identity=True))

    with pytest.raises(ConfigError, match=re.escape("is in http://127.0.0.1:10000/devstoreaccount1")):
        settings_for(settings, parse_url("http://127.0.0.1:10000/devstoreaccount1/input/a"))


def test_a_prefix_may_stop_at_the_container() -> None:
    address = parse_url("abfss://input@lake01.dfs.core.windows.net/", blob_required=False)

    assert (address.container, address.blob) == ("input", "")


def test_the_configured_account_uses_the_configured_storage(settings: Settings) -> None:
    address = BlobAddress("az://in/a", "in", "a")
    url = context(settings).service.url.rstrip("/")
    same = parse_url(f"{url}/in/a")

    assert storage_for(settings, address) is context(settings)
    assert storage_for(settings, same) is context(settings)


def test_another_account_with_a_connection_string_is_refused_naming_the_setting(settings: Settings) -> None:
    address = parse_url("abfss://input@lake01.dfs.core.windows.net/a.parquet")

    with pytest.raises(ConfigError, match=re.escape("is in https://lake01.blob.core.windows.net; set "
                                                    "ParquetStorage to that account's connection string")) as caught:
        settings_for(settings, address)

    assert "ParquetStorage__serviceUri=https://lake01.blob.core.windows.net" in str(caught.value)


def test_another_account_with_an_identity_is_reached_with_the_same_identity() -> None:
    settings = Settings(connection=Connection(service_uri="https://home01.blob.core.windows.net",
                                              managed_identity=True, client_id="abc",
                                              table_service_uri="https://home01.table.core.windows.net"))
    address = parse_url("https://lake01.blob.core.windows.net/input/a.parquet")

    chosen = settings_for(settings, address).connection

    assert chosen.service_uri == "https://lake01.blob.core.windows.net"
    assert (chosen.managed_identity, chosen.client_id) == (True, "abc")
    assert chosen.service_uri_for("table") == "https://lake01.table.core.windows.net", "not home01's table"
