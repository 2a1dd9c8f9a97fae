"""The Event Grid subscription delivers the input container's BlobCreated events to the blob trigger.

The subscription is deployed by the postdeploy hook from main.bicep's outputs,
so the chain is checked link by link: setting -> output -> hook -> parameter -> filter.
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from types import ModuleType
from typing import Any

import azure.functions as func

from tests.helpers import ROOT
from tests.infra.bicep import INFRA, body, function, path, resources

HOOKS = {"sh": INFRA / "hooks" / "postdeploy.sh", "ps1": INFRA / "hooks" / "postdeploy.ps1"}


def subscription(events_bicep: dict[str, Any]) -> dict[str, Any]:
    found = [r for r in resources(events_bicep).values()
             if r["type"] == "Microsoft.EventGrid/systemTopics/eventSubscriptions"]
    assert len(found) == 1
    properties: dict[str, Any] = body(found[0])["properties"]
    return properties


@cache
def fresh_function_app() -> ModuleType:
    """function_app.py loaded anew: ``get_functions`` lists an app once, and other tests may have listed it."""
    spec = importlib.util.spec_from_file_location("function_app_as_indexed", ROOT / "function_app.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def blob_trigger() -> tuple[str, dict[str, Any]]:
    found = [(f.get_function_name(), f.get_trigger().get_dict_repr())
             for f in fresh_function_app().app.get_functions()
             if f.get_trigger().get_dict_repr()["type"] == "blobTrigger"]
    assert len(found) == 1
    return found[0]


def test_the_filter_names_the_input_container_parameter_and_only_blob_created(events_bicep: dict[str, Any]) -> None:
    filter_ = subscription(events_bicep)["filter"]

    assert filter_["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"]
    assert filter_["subjectBeginsWith"] == "/blobServices/default/containers/${inputContainerName}/blobs/"
    assert "inputContainerName" in events_bicep["parameters"]
    assert events_bicep["parameters"]["inputContainerName"]["default"] is None, "must come from the deployment"


def test_the_webhook_is_the_blob_extensions_with_its_system_key(events_bicep: dict[str, Any]) -> None:
    url = subscription(events_bicep)["destination"]["properties"]["endpointUrl"]
    key = events_bicep["variables"]["blobsExtensionKey"]["value"]
    listed = function(key["operator"]["operands"]["operand_1"])

    assert url.startswith("https://${app.properties.defaultHostName}/runtime/webhooks/blobs?")
    assert "functionName=Host.Functions.${functionName}&code=${blobsExtensionKey}" in url
    assert listed is not None
    assert listed[1]["func_name"] == "listKeys"
    assert listed[1]["resource_identifier"] == "${app.id}/host/default"
    assert path(key["operator"]["operands"]["operand_2"]) == ("systemKeys", "blobs_extension")


def test_undeliverable_events_go_to_the_dead_letter_container(events_bicep: dict[str, Any]) -> None:
    props = subscription(events_bicep)
    dead = props["deadLetterWithResourceIdentity"]

    assert dead["identity"]["type"] == "SystemAssigned"  # the topic's identity, granted in roles.bicep
    assert dead["deadLetterDestination"]["properties"]["blobContainerName"] == "deadLetterContainerName"
    assert {"maxDeliveryAttempts", "eventTimeToLiveInMinutes"} <= set(props["retryPolicy"])


def test_the_app_has_one_event_grid_blob_trigger_on_the_input_container() -> None:
    name, trigger = blob_trigger()

    assert trigger["source"] == func.BlobSource.EVENT_GRID.value  # Flex Consumption supports no other
    assert trigger["path"] == f"{fresh_function_app().INPUT_CONTAINER}/{{name}}"
    assert name == "recompress_blob"


def test_main_outputs_what_the_hook_passes_on(main_bicep: dict[str, Any]) -> None:
    outputs = {k: v["value"] for k, v in main_bicep["outputs"].items()}

    assert outputs["INPUT_CONTAINER"] == "RECOMPRESS_INPUT_CONTAINER"
    assert outputs["DEAD_LETTER_CONTAINER"] == "deadLetterContainerName"
    assert outputs["BLOB_TRIGGER_FUNCTION"] == blob_trigger()[0]
    assert outputs["HEALTH_URL"].endswith("/api/health")
    assert {"FUNCTION_APP_URL", "OUTPUT_CONTAINER", "QUARANTINE_CONTAINER"} <= set(outputs)
    assert main_bicep["modules"]["roles"]["config"]["params"]["inputContainerName"] == "RECOMPRESS_INPUT_CONTAINER"


def _passed(script: str) -> dict[str, str]:
    """``param=$VAR`` (sh) or ``param=$env:VAR`` (PowerShell) pairs of the deployment command."""
    return dict(re.findall(r"(\w+)=\"?\$(?:env:)?\{?(\w+)", script))


def test_both_hooks_pass_every_parameter_from_main_biceps_outputs(events_bicep: dict[str, Any],
                                                                  main_bicep: dict[str, Any]) -> None:
    required = {n for n, p in events_bicep["parameters"].items() if p["default"] is None}
    outputs = set(main_bicep["outputs"])

    for kind, hook in HOOKS.items():
        passed = _passed(hook.read_text())
        assert required <= set(passed), f"{kind}: {required - set(passed)}"
        assert {passed[p] for p in required} <= outputs, kind
        assert passed["inputContainerName"] == "INPUT_CONTAINER", kind
        assert "events/blob-created.bicep" in hook.read_text().replace("'events' 'blob-created.bicep'",
                                                                       "events/blob-created.bicep")
        assert "HEALTH_URL" in hook.read_text(), f"{kind} must call /api/health after deploying"
