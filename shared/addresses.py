"""Blob addresses as people already write them, and the storage each one must be reached through.

Besides ``container/blob`` and ``az://container/blob``, the CLI takes the forms other tools print:

- ``abfs://`` and ``abfss://container@account.dfs.core.windows.net/path``: Spark's and adlfs' form;
- ``https://account.blob.core.windows.net/container/blob`` (or ``.dfs.``), as copied from the portal
  or Storage Explorer, and Azurite's path-style ``http://127.0.0.1:10000/account/container/blob``.

A URL names an account. One other than the configured account is reached with the configured identity
settings, or refused in one line saying which setting to change: never silently sent to the wrong one.
This module parses and chooses; it performs no request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from shared.errors import ConfigError, InputError
from shared.settings import STORAGE_CONNECTION, Settings

if TYPE_CHECKING:
    from shared.storage import StorageContext

AZ_SCHEME = "az://"
_URL = re.compile(r"^(abfss?|https?)://", re.IGNORECASE)
_AZURE_HOST = re.compile(r"^(?P<account>[a-z0-9]{3,24})\.(?:blob|dfs)\.core\.(?:windows\.net|chinacloudapi\.cn|"
                         r"usgovcloudapi\.net)$", re.IGNORECASE)


@dataclass(frozen=True)
class BlobAddress:
    """A container, a blob name (or prefix) inside it, and the account when the text named one."""

    text: str
    container: str
    blob: str
    account: str | None = None


def is_url(text: str) -> bool:
    """Whether ``text`` is one of the URL forms (it then always names a blob, never a local path)."""
    return bool(_URL.match(text)) or text.startswith(AZ_SCHEME)


def parse_url(text: str, *, blob_required: bool = True) -> BlobAddress:
    """Parse ``az://``, ``abfs[s]://`` and ``http[s]://`` addresses; InputError in one line otherwise."""
    if text.startswith(AZ_SCHEME):
        return _split(text, text[len(AZ_SCHEME):], None, blob_required)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in ("abfs", "abfss"):
        container, at, host = parts.netloc.rpartition("@")
        account = _account_of_host(text, host)
        if not at or not container:
            raise InputError(text, "names no container; use abfss://<container>@<account>.dfs.core.windows.net/<path>")
        return _checked(BlobAddress(text, container, unquote(parts.path.lstrip("/")), account), blob_required)
    if scheme in ("http", "https"):
        path = unquote(parts.path.lstrip("/"))
        if _AZURE_HOST.match(parts.hostname or ""):
            return _split(text, path, _account_of_host(text, parts.hostname or ""), blob_required)
        account, _, rest = path.partition("/")  # path style: Azurite, or a custom domain
        if not account:
            raise InputError(text, "names no account; use https://<account>.blob.core.windows.net/<container>/<blob>")
        return _split(text, rest, account, blob_required)
    raise InputError(text, "is not a blob address; use container/blob, az://, abfss:// or https://")


def _split(text: str, rest: str, account: str | None, blob_required: bool) -> BlobAddress:
    container, _, blob = rest.partition("/")
    return _checked(BlobAddress(text, container, blob, account), blob_required)


def _checked(address: BlobAddress, blob_required: bool) -> BlobAddress:
    if not address.container or (blob_required and not address.blob):
        raise InputError(address.text, "names no blob; use container/blob" if blob_required else
                         "names no container; use container/prefix")
    return address


def _account_of_host(text: str, host: str) -> str:
    match = _AZURE_HOST.match(host)
    if not match:
        raise InputError(text, f"host {host!r} is not a storage account endpoint "
                               "(<account>.blob.core.windows.net or <account>.dfs.core.windows.net)")
    return match.group("account").lower()


def settings_for(settings: Settings, address: BlobAddress) -> Settings:
    """Settings whose connection reaches ``address``'s account: these, or the same identity on that account.

    A connection string holds one account's key, so another account is refused, naming the setting to change.
    """
    from shared.storage import context

    configured = context(settings).service.account_name or ""
    if address.account is None or address.account.lower() == configured.lower():
        return settings
    connection = settings.connection
    if connection.connection_string:
        raise ConfigError(
            STORAGE_CONNECTION,
            f"holds a connection string for account {configured!r}, but {address.text} is in account "
            f"{address.account!r}; set {STORAGE_CONNECTION} to that account's connection string, or set "
            f"{STORAGE_CONNECTION}__serviceUri=https://{address.account}.blob.core.windows.net to use an identity")
    uri = f"https://{address.account}.blob.core.windows.net"
    return replace(settings, connection=replace(connection, service_uri=uri, queue_service_uri=None,
                                                table_service_uri=None))


def storage_for(settings: Settings, address: BlobAddress) -> StorageContext:
    """The storage context that reaches ``address`` (a separate one for another account: no cache churn)."""
    from shared.storage import StorageContext, context

    chosen = settings_for(settings, address)
    return context(settings) if chosen is settings else StorageContext(chosen)
