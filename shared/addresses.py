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
#: The storage endpoints of Azure's clouds: an account is named by its host, and the host keeps its cloud.
_AZURE_HOST = re.compile(r"^(?P<account>[a-z0-9]{3,24})\.(?:blob|dfs)\.(?P<suffix>core\.(?:windows\.net|"
                         r"chinacloudapi\.cn|usgovcloudapi\.net|cloudapi\.de))$", re.IGNORECASE)
_LOOPBACK = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1", "::1": "[::1]"}


@dataclass(frozen=True)
class BlobAddress:
    """A container, a blob name (or prefix) inside it, and the account's blob endpoint when the text named one."""

    text: str
    container: str
    blob: str
    account: str | None = None
    #: ``https://<account>.blob.<cloud suffix>``, or an emulator's ``http://127.0.0.1:<port>/<account>``.
    endpoint: str | None = None

    @property
    def emulator(self) -> bool:
        return bool(self.endpoint and self.endpoint.startswith("http://"))


def is_url(text: str) -> bool:
    """Whether ``text`` is one of the URL forms (it then always names a blob, never a local path)."""
    return bool(_URL.match(text)) or text.startswith(AZ_SCHEME)


def shown(text: str) -> str:
    """An address as messages may show it: without its query, which may hold a SAS signature."""
    return text.split("?", 1)[0]


def parse_url(text: str, *, blob_required: bool = True) -> BlobAddress:
    """Parse ``az://``, ``abfs[s]://`` and ``http[s]://`` addresses; InputError in one line otherwise."""
    if text.startswith(AZ_SCHEME):
        return _split(text, text[len(AZ_SCHEME):], None, None, blob_required)
    parts = urlsplit(text, allow_fragments=False)  # '#' is a legal character in a blob name
    if parts.query:
        raise InputError(shown(text), "carries a query string (a SAS token?), which is never used: the app signs "
                                      "in with its own credential; remove everything from '?'")
    scheme = parts.scheme.lower()
    if scheme in ("abfs", "abfss"):
        container, at, host = parts.netloc.rpartition("@")
        if not at or not container:
            raise InputError(text, "names no container; use abfss://<container>@<account>.dfs.core.windows.net/<path>")
        account, endpoint = _azure_endpoint(text, host)
        return _checked(BlobAddress(text, container, unquote(parts.path.lstrip("/")), account, endpoint),
                        blob_required)
    if scheme in ("http", "https"):
        path = unquote(parts.path.lstrip("/"))
        host = (parts.hostname or "").lower()
        if host in _LOOPBACK:  # an emulator: path style, the account first
            account, _, rest = path.partition("/")
            if not account:
                raise InputError(text, "names no account; use http://127.0.0.1:10000/<account>/<container>/<blob>")
            port = f":{parts.port}" if parts.port else ""
            return _split(text, rest, account, f"{scheme}://{_LOOPBACK[host]}{port}/{account}", blob_required)
        account, endpoint = _azure_endpoint(text, parts.netloc)
        return _split(text, path, account, endpoint, blob_required)
    raise InputError(text, "is not a blob address; use container/blob, az://, abfss:// or https://")


def _split(text: str, rest: str, account: str | None, endpoint: str | None, blob_required: bool) -> BlobAddress:
    container, _, blob = rest.partition("/")
    return _checked(BlobAddress(text, container, blob, account, endpoint), blob_required)


def _checked(address: BlobAddress, blob_required: bool) -> BlobAddress:
    if not address.container or (blob_required and not address.blob):
        raise InputError(address.text, "names no blob; use container/blob" if blob_required else
                         "names no container; use container/prefix")
    return address


def _azure_endpoint(text: str, host: str) -> tuple[str, str]:
    """The account a storage host names, and its blob endpoint in the same cloud."""
    match = _AZURE_HOST.match(host)
    if not match:
        raise InputError(text, f"host {host!r} is not a storage account endpoint (<account>.blob.core.windows.net "
                               "or <account>.dfs.core.windows.net, or another Azure cloud's); custom domains "
                               "are not followed")
    account = match.group("account").lower()
    return account, f"https://{account}.blob.{match.group('suffix').lower()}"


def settings_for(settings: Settings, address: BlobAddress) -> Settings:
    """Settings whose connection reaches ``address``'s endpoint: these, or the same identity on that account.

    The configured endpoint is compared whole (account, cloud, emulator port), never by account name
    alone. A connection string holds one account's key, so another endpoint is refused, naming the setting
    to change; so is another emulator, which no identity can reach.
    """
    from shared.storage import context

    configured = context(settings).service.url.rstrip("/").lower()
    if address.endpoint is None or address.endpoint.lower() == configured:
        return settings
    connection = settings.connection
    if connection.connection_string or address.emulator:
        raise ConfigError(
            STORAGE_CONNECTION,
            f"reaches {configured}, but {shown(address.text)} is in {address.endpoint}; set {STORAGE_CONNECTION} to "
            f"that account's connection string, or set {STORAGE_CONNECTION}__serviceUri={address.endpoint} to use "
            "an identity")
    return replace(settings, connection=replace(connection, service_uri=address.endpoint, queue_service_uri=None,
                                                table_service_uri=None))


def storage_for(settings: Settings, address: BlobAddress) -> StorageContext:
    """The storage context that reaches ``address`` (a separate one for another account: no cache churn)."""
    from shared.storage import StorageContext, context

    chosen = settings_for(settings, address)
    return context(settings) if chosen is settings else StorageContext(chosen)
