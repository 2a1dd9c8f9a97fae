"""The roles granted cover what the code does to storage, and grant no more than the table below allows.

Capabilities are coarse on purpose (``blob:delete``, ``queue:send``): what a
built-in role lets a principal do to data, and what a storage call needs. The
storage calls are found in the code itself, so a new kind of call fails here
until someone decides which scope it happens on and which role covers it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient

from shared.settings import Settings
from tests.helpers import ROOT
from tests.infra.bicep import Grant, Scope, grants, holds, resources

#: Built-in role ids (the same in every tenant) and what each lets a principal do to data.
ROLES: dict[str, tuple[str, frozenset[str]]] = {
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": ("Storage Blob Data Reader", frozenset({"blob:read"})),
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": ("Storage Blob Data Contributor",
                                             frozenset({"blob:read", "blob:write", "blob:delete"})),
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": ("Storage Blob Data Owner",
                                             frozenset({"blob:read", "blob:write", "blob:delete", "blob:acl"})),
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": ("Storage Queue Data Contributor",
                                             frozenset({"queue:read", "queue:send", "queue:process",
                                                        "queue:manage"})),
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": ("Storage Table Data Contributor",
                                             frozenset({"table:read", "table:write", "table:delete"})),
    "3913510d-42f4-4e42-8a64-420c390055eb": ("Monitoring Metrics Publisher", frozenset({"telemetry:publish"})),
}

#: What each storage call needs. Calls that touch no data (client factories, close) need nothing.
CALLS: dict[str, frozenset[str]] = {
    "get_blob_properties": frozenset({"blob:read"}),
    "download_blob": frozenset({"blob:read"}),
    "exists": frozenset(),  # pathlib's, in cli.py; a BlobClient.exists would need blob:read, which every scope has
    "list_blobs": frozenset({"blob:read"}),
    "walk_blobs": frozenset({"blob:read"}),
    "get_container_properties": frozenset({"blob:read"}),
    "upload_blob": frozenset({"blob:write"}),
    "stage_block": frozenset({"blob:write"}),
    "commit_block_list": frozenset({"blob:write"}),
    "set_blob_metadata": frozenset({"blob:write"}),
    "set_http_headers": frozenset({"blob:write"}),
    "delete_blob": frozenset({"blob:delete"}),
    "get_blob_client": frozenset(), "get_container_client": frozenset(), "from_connection_string": frozenset(),
    "from_blob_url": frozenset(), "from_container_url": frozenset(), "close": frozenset(),
    # The backfill's queue and table calls (issue 9), ready for when they arrive.
    "send_message": frozenset({"queue:send"}),
    "receive_message": frozenset({"queue:process"}),
    "receive_messages": frozenset({"queue:process"}),
    "delete_message": frozenset({"queue:process"}),
    "update_message": frozenset({"queue:process"}),
    "peek_messages": frozenset({"queue:read"}),
    "get_queue_properties": frozenset({"queue:read"}),
    "get_entity": frozenset({"table:read"}),
    "query_entities": frozenset({"table:read"}),
    "list_entities": frozenset({"table:read"}),
    "create_entity": frozenset({"table:write"}),
    "upsert_entity": frozenset({"table:write"}),
    "update_entity": frozenset({"table:write"}),
    "get_queue_client": frozenset(), "get_table_client": frozenset(),
}

#: Which calls happen on which scope (the symbols of roles.bicep), with RECOMPRESS_DELETE_SOURCE off.
USES: dict[str, set[str]] = {
    # properties, ranged downloads, the health probe, the backfill's listing
    "input": {"get_blob_properties", "download_blob", "get_container_properties", "list_blobs"},
    # the idempotent protocol reads the old output's metadata, commits blocks, removes a stale output;
    # the savings report lists outputs with their metadata
    "output": {"get_blob_properties", "get_container_properties", "list_blobs", "upload_blob", "stage_block",
               "commit_block_list", "delete_blob"},
    # quarantine copies carry their report as metadata; stale ones are removed; the report lists them
    "quarantine": {"get_blob_properties", "get_container_properties", "list_blobs", "upload_blob",
                   "stage_block", "commit_block_list", "delete_blob"},
    # the backfill's queues and their poison queues; the host moves poison messages and creates poison queues
    "queues": {"send_message", "receive_messages", "delete_message", "get_queue_properties"},
    "table": {"get_entity", "query_entities", "upsert_entity", "update_entity", "create_entity"},
}
#: ...and with it on, the input is deleted after its output is published.
USES_WITH_DELETE = {"input": {"delete_blob"}}

#: Needs that no call in this code shows, each with its source.
PLATFORM_NEEDS: dict[str, frozenset[str]] = {
    "queues": frozenset({"queue:manage"}),  # the host creates <queue>-poison if it is missing
    "host": frozenset({"blob:read", "blob:write", "blob:delete", "blob:acl", "queue:read", "queue:send",
                       "queue:process", "queue:manage"}),  # Functions docs: AzureWebJobsStorage by identity
    "appInsights": frozenset({"telemetry:publish"}),  # local auth off: ingestion signs in
}

#: Capabilities a grant may carry beyond the need, because no narrower built-in role exists.
ALLOWED_EXTRA: dict[tuple[str, str], frozenset[str]] = {
    ("input", "blobDataContributor"): frozenset({"blob:write"}),  # the narrowest built-in role that deletes
    ("table", "tableDataContributor"): frozenset({"table:delete"}),  # no built-in role writes without delete
}

#: Whoever ran azd up: upload an input, read what came of it. Event Grid's topic: dead letters only.
OTHER_PRINCIPALS = {
    "deployerPrincipalId": {("input", "blobDataContributor"), ("output", "blobDataReader"),
                            ("quarantine", "blobDataReader")},
    "topicPrincipalId": {("deadLetter", "blobDataContributor")},
}

APP = "appPrincipalId"


def _sdk_methods() -> set[str]:
    classes: list[type] = [BlobClient, ContainerClient, BlobServiceClient]
    return {name for cls in classes for name in dir(cls) if not name.startswith("_")}


def storage_calls_in_code() -> set[str]:
    """Storage SDK methods called anywhere in the app (shared/ and function_app.py)."""
    known = _sdk_methods() | set(CALLS)
    sources = [ROOT / "function_app.py", *sorted((ROOT / "shared").rglob("*.py"))]
    called = {m for p in sources for m in re.findall(r"\.([a-z_]+)\(", p.read_text())}
    return called & known


def role_ids(roles_bicep: dict[str, Any]) -> dict[str, str]:
    value = roles_bicep["variables"]["roles"]["value"]
    assert isinstance(value, dict)
    return {str(k): str(v) for k, v in value.items()}


def capabilities(roles_bicep: dict[str, Any], role: str) -> frozenset[str]:
    return ROLES[role_ids(roles_bicep)[role]][1]


def needs(scope: str, delete_source: bool) -> frozenset[str]:
    calls = USES.get(scope, set()) | (USES_WITH_DELETE.get(scope, set()) if delete_source else set())
    needed: set[str] = set(PLATFORM_NEEDS.get(scope, frozenset()))
    for call in calls:
        needed |= CALLS[call]
    return frozenset(needed)


def app_grants(roles_bicep: dict[str, Any], delete_source: bool) -> list[Grant]:
    values = {"deleteSource": delete_source, "deployerPrincipalId": "someone"}
    return [g for g in grants(roles_bicep) if g.principal == APP and holds(g.when, values)]


def test_every_role_is_the_built_in_role_its_name_says(roles_bicep: dict[str, Any]) -> None:
    names = {key: ROLES[guid][0] for key, guid in role_ids(roles_bicep).items()}

    assert names == {
        "blobDataReader": "Storage Blob Data Reader",
        "blobDataContributor": "Storage Blob Data Contributor",
        "blobDataOwner": "Storage Blob Data Owner",
        "queueDataContributor": "Storage Queue Data Contributor",
        "tableDataContributor": "Storage Table Data Contributor",
        "monitoringMetricsPublisher": "Monitoring Metrics Publisher",
    }


def test_every_storage_call_in_the_code_is_placed_on_a_scope() -> None:
    called = storage_calls_in_code()
    placed = set().union(*USES.values(), *USES_WITH_DELETE.values())

    assert {"download_blob", "commit_block_list", "delete_blob", "list_blobs"} <= called
    assert called - set(CALLS) == set(), "a storage call this table does not know: add it to CALLS and USES"
    assert {c for c in called if CALLS[c]} - placed == set(), "which container (or queue) does it act on?"


@pytest.mark.parametrize("delete_source", [False, True], ids=["keep-source", "delete-source"])
def test_the_app_can_do_what_the_code_does(roles_bicep: dict[str, Any], delete_source: bool) -> None:
    granted: dict[str, set[str]] = {}
    for grant in app_grants(roles_bicep, delete_source):
        granted.setdefault(grant.scope, set()).update(capabilities(roles_bicep, grant.role))

    missing = {s: needs(s, delete_source) - granted.get(s, set()) for s in {*USES, *PLATFORM_NEEDS}}

    assert {s: m for s, m in missing.items() if m} == {}


@pytest.mark.parametrize("delete_source", [False, True], ids=["keep-source", "delete-source"])
def test_no_role_grants_the_app_more_than_it_needs(roles_bicep: dict[str, Any], delete_source: bool) -> None:
    excess = {}
    for grant in app_grants(roles_bicep, delete_source):
        extra = capabilities(roles_bicep, grant.role) - needs(grant.scope, delete_source)
        extra -= ALLOWED_EXTRA.get((grant.scope, grant.role), frozenset())
        if extra:
            excess[grant.symbol] = extra

    assert excess == {}


def test_the_app_may_delete_inputs_only_when_delete_source_is_on(roles_bicep: dict[str, Any]) -> None:
    def on_input(delete_source: bool) -> set[str]:
        found: set[str] = set()
        for grant in app_grants(roles_bicep, delete_source):
            if grant.scope == "input":
                found |= capabilities(roles_bicep, grant.role)
        return found

    assert on_input(False) == {"blob:read"}
    assert "blob:delete" in on_input(True)


def test_no_grant_reaches_the_data_account_as_a_whole_or_a_resource_group(roles_bicep: dict[str, Any]) -> None:
    scoped = resources(roles_bicep)
    kinds = {g.scope: scoped[g.scope]["type"] for g in grants(roles_bicep)}

    assert kinds.pop("host") == "Microsoft.Storage/storageAccounts"  # the host's own account only
    assert kinds.pop("appInsights") == "Microsoft.Insights/components"
    assert set(kinds.values()) == {
        "Microsoft.Storage/storageAccounts/blobServices/containers",
        "Microsoft.Storage/storageAccounts/queueServices/queues",
        "Microsoft.Storage/storageAccounts/tableServices/tables",
    }


def test_other_principals_get_only_their_few_grants(roles_bicep: dict[str, Any]) -> None:
    everyone = {"deleteSource": False, "deployerPrincipalId": "someone"}
    nobody = {"deleteSource": False, "deployerPrincipalId": ""}
    other = [g for g in grants(roles_bicep) if g.principal != APP]

    assert {p: {(g.scope, g.role) for g in other if g.principal == p and holds(g.when, everyone)}
            for p in OTHER_PRINCIPALS} == OTHER_PRINCIPALS
    assert {g.symbol for g in other if holds(g.when, nobody)} == {"topicWritesDeadLetters"}


def test_every_queue_the_backfill_and_the_trigger_use_is_created_and_granted(main_bicep: dict[str, Any],
                                                                           roles_bicep: dict[str, Any]) -> None:
    settings = Settings()
    scope = Scope(main_bicep)
    queue_grant = next(g for g in grants(roles_bicep) if g.scope == "queues")
    queues_param = main_bicep["modules"]["roles"]["config"]["params"]["queueNames"]

    assert scope.value("queueNames") == [
        settings.backfill_list_queue, f"{settings.backfill_list_queue}-poison",
        settings.backfill_blob_queue, f"{settings.backfill_blob_queue}-poison", "webjobs-blobtrigger-poison"]
    assert queue_grant.per_item
    assert queue_grant.principal == APP
    assert queues_param == main_bicep["modules"]["data"]["config"]["params"]["queueNames"] == "queueNames"
    assert scope.value("containerNames") == [settings.input_container, settings.output_container,
                                             settings.quarantine_container, "deadletter"]
    assert scope.value(main_bicep["modules"]["data"]["config"]["params"]["tableName"]) == settings.backfill_table
