"""Fixtures of the infrastructure tests: infra/*.bicep parsed once per session."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.bicep import INFRA, parse


@pytest.fixture(scope="session")
def main_bicep() -> dict[str, Any]:
    return parse(INFRA / "main.bicep")


@pytest.fixture(scope="session")
def roles_bicep() -> dict[str, Any]:
    return parse(INFRA / "modules" / "roles.bicep")


@pytest.fixture(scope="session")
def app_bicep() -> dict[str, Any]:
    return parse(INFRA / "modules" / "function-app.bicep")


@pytest.fixture(scope="session")
def events_bicep() -> dict[str, Any]:
    return parse(INFRA / "events" / "blob-created.bicep")
