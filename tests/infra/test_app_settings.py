"""The app settings the Bicep sets are the ones the app reads, generated from shared/settings.py.

"Reads" is measured, not listed: the app's own settings code runs against an
environment that records every name it is asked for. The few names only the
Functions host or a library reads are listed with the reason.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import telemetry
from shared.settings import (
    BICEP_BEGIN,
    BICEP_END,
    PREFIX,
    STORAGE_CONNECTION,
    TRUE_WORDS,
    Settings,
    azd_parameters,
    bicep_block,
    documented,
    env_name,
)
from tests.helpers import ROOT
from tests.infra.bicep import INFRA, Scope, app_setting_names, function, names_in, path, resources

C = STORAGE_CONNECTION

#: Read by the Functions host or by a library the app configures, not by the app's own code.
READ_ELSEWHERE = {
    "AzureWebJobsStorage__accountName": "the host's own storage, by identity",
    "AzureWebJobsStorage__credential": "the host's own storage, by identity",
    "AzureWebJobsStorage__clientId": "the host's own storage: which user-assigned identity",
    f"{C}__queueServiceUri": "the blob trigger's poison queue is on its connection's account; the backfill's queues",
    f"{C}__tableServiceUri": "the backfill's job table (issue 9)",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "the host and azure-monitor-opentelemetry's exporter: Entra ID "
                                                 "sign-in where Application Insights has local auth off",
}

#: Without these the deployed app cannot start, reach its data or send telemetry.
REQUIRED = {
    f"{C}__blobServiceUri", f"{C}__queueServiceUri", f"{C}__tableServiceUri", f"{C}__credential", f"{C}__clientId",
    "AzureWebJobsStorage__accountName", "AzureWebJobsStorage__credential", "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}

#: Flex Consumption refuses these (the runtime is in functionAppConfig), or they would carry a key.
FORBIDDEN = {
    "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTSHARE", "AzureWebJobsStorage", C,
}


class Recording(dict[str, str]):
    """An empty environment that remembers every name it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return default

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return False


def names_the_app_reads() -> set[str]:
    env = Recording()
    Settings.from_env(env)
    telemetry.destination(env)
    return env.asked


@pytest.fixture(scope="module")
def set_by_bicep(main_bicep: dict[str, Any]) -> list[str]:
    return app_setting_names(main_bicep)


def test_the_recording_sees_what_the_app_reads() -> None:
    read = names_the_app_reads()

    assert {"RECOMPRESS_MODE", C, f"{C}__blobServiceUri", f"{C}__clientId",
            "APPLICATIONINSIGHTS_CONNECTION_STRING"} <= read


def test_every_setting_the_bicep_sets_is_read_by_the_app_or_the_host(set_by_bicep: list[str]) -> None:
    unread = set(set_by_bicep) - names_the_app_reads() - set(READ_ELSEWHERE)

    assert unread == set()


def test_every_required_setting_and_every_recompress_setting_is_set_once(set_by_bicep: list[str]) -> None:
    assert len(set_by_bicep) == len(set(set_by_bicep))
    assert REQUIRED - set(set_by_bicep) == set()
    assert {env_name(s) for s in documented()} <= set(set_by_bicep)
    assert FORBIDDEN & set(set_by_bicep) == set()


def test_the_names_read_elsewhere_are_really_read_there() -> None:
    """The exporter reads the authentication string itself; if it stopped, telemetry would go unsigned."""
    import azure.monitor.opentelemetry.exporter as exporter

    sources = "".join(p.read_text() for p in Path(exporter.__file__).parent.rglob("_constants.py"))

    assert "APPLICATIONINSIGHTS_AUTHENTICATION_STRING" in sources


def test_identity_settings_name_the_managed_identity_and_no_key_anywhere(main_bicep: dict[str, Any]) -> None:
    variables = {k: v["value"] for k, v in main_bicep["variables"].items()}
    values = {item["name"]: item["value"] for part in ("connectionSettings", "hostSettings", "telemetrySettings")
              for item in variables[part]}
    text = "\n".join(p.read_text() for p in INFRA.rglob("*.bicep"))

    assert values[f"{C}__credential"] == values["AzureWebJobsStorage__credential"] == "managedidentity"
    assert path(values[f"{C}__clientId"]) == path(values["AzureWebJobsStorage__clientId"]) == (
        "identity", "outputs", "clientId")
    assert "Authorization=AAD" in values["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    assert "AccountKey" not in text
    assert "listKeys(account" not in text
    assert "listKeys(data" not in text
    assert text.count("allowSharedKeyAccess: false") == 2
    assert "DisableLocalAuth: true" in text


def test_the_function_app_takes_exactly_the_composed_settings(main_bicep: dict[str, Any],
                                                             app_bicep: dict[str, Any]) -> None:
    site = resources(app_bicep)["app"]["config"]
    module = main_bicep["modules"]["app"]["config"]

    assert site["properties"]["siteConfig"]["appSettings"] == "appSettings"
    assert module["params"]["appSettings"] == "appSettings"
    assert not any(r["type"] == "Microsoft.Web/sites/config" for r in resources(app_bicep).values())


def _generated(text: str) -> str:
    return text[text.index(BICEP_BEGIN):text.index(BICEP_END) + len(BICEP_END)]


def test_the_bicep_parameters_are_generated_from_the_settings() -> None:
    main = (INFRA / "main.bicep").read_text()

    assert _generated(main) == bicep_block(), (
        "regenerate: python -m shared settings --format bicep, pasted over the block in infra/main.bicep")


def test_the_generated_block_has_every_setting_at_its_default(main_bicep: dict[str, Any]) -> None:
    scope = Scope(main_bicep)
    defaults = {n: v for n, v in scope.params.items() if n.startswith(PREFIX)}
    words = scope.value("recompressTrueWords")

    assert Settings.from_env({k: v for k, v in defaults.items() if v}) == Settings()
    assert set(defaults) == {env_name(s) for s in documented()}
    assert tuple(words) == TRUE_WORDS


def test_azd_parameters_are_generated_and_match_main_bicep(main_bicep: dict[str, Any]) -> None:
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = main_bicep["parameters"]

    assert {k: v for k, v in params.items() if k.startswith(PREFIX)} == azd_parameters(), (
        "regenerate: python -m shared settings --format azd, into infra/main.parameters.json")
    assert set(params) <= set(declared), "ARM refuses a parameter main.bicep does not declare"
    required = {name for name, spec in declared.items() if spec["default"] is None}
    assert required <= set(params), "azd would prompt for these"


def test_delete_source_reads_the_flag_the_way_the_app_does(main_bicep: dict[str, Any]) -> None:
    expr = main_bicep["variables"]["deleteSource"]["value"]

    called = function(expr)

    assert called is not None
    assert called[0] == "contains"
    assert {"recompressTrueWords", "RECOMPRESS_DELETE_SOURCE"} <= names_in(expr)
    assert main_bicep["modules"]["roles"]["config"]["params"]["deleteSource"] == "deleteSource"


def _python_versions() -> Iterator[tuple[str, str]]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    yield "mypy python_version", pyproject["tool"]["mypy"]["python_version"]
    yield "requires-python", pyproject["project"]["requires-python"].removeprefix(">=")
    target = pyproject["tool"]["ruff"]["target-version"].removeprefix("py")
    yield "ruff target-version", f"{target[0]}.{target[1:]}"


def test_the_python_version_is_the_one_the_project_is_tested_on(main_bicep: dict[str, Any]) -> None:
    deployed = Scope(main_bicep).value("pythonVersion")

    assert {name: deployed for name, _ in _python_versions()} == dict(_python_versions())
    assert main_bicep["modules"]["app"]["config"]["params"]["pythonVersion"] == "pythonVersion"
