"""infra/*.bicep read as data, for the infrastructure tests.

No Bicep compiler installs here, so the tests stand on pycep-parser's JSON form
of each file and resolve the small part of Bicep's expression language they
need: symbols, property paths, the conditions on role assignments, and the
literal values of parameters and variables. pycep-parser writes an identifier
and a string literal alike (``name: tableName`` and ``name: 'x'`` are both a
str), so a str is an identifier only when the file declares that name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

from tests.helpers import ROOT

INFRA = ROOT / "infra"
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def bicep_files() -> list[Path]:
    """Every Bicep file azd or the postdeploy hook deploys."""
    return sorted(INFRA.rglob("*.bicep"))


@cache
def parse(path: Path) -> dict[str, Any]:
    """The file as pycep-parser's JSON form (cached: several tests read the same files)."""
    return dict(BicepParser().parse(file_path=path))


def resources(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(doc.get("resources") or {})


def body(resource: Mapping[str, Any]) -> dict[str, Any]:
    """A resource's own properties, under any loop or condition pycep wraps them in."""
    config = dict(resource["config"])
    return dict(config["config"]) if "loop_type" in config or "condition" in config else config


def condition(resource: Mapping[str, Any]) -> Any:
    """The resource's ``if (...)``, or None when it is always deployed."""
    return resource["config"].get("condition")


def is_loop(resource: Mapping[str, Any]) -> bool:
    return "loop_type" in resource["config"]


def operator(expr: Any) -> tuple[str, dict[str, Any]] | None:
    if isinstance(expr, dict) and "operator" in expr:
        return expr["operator"]["type"], expr["operator"]["operands"]
    return None


def function(expr: Any) -> tuple[str, dict[str, Any]] | None:
    if isinstance(expr, dict) and "function" in expr:
        return expr["function"]["type"], expr["function"]["parameters"]
    return None


def symbol(expr: Any) -> str:
    """The resource symbol an expression names: ``input``, ``queues[i]`` is ``queues``."""
    if isinstance(expr, str):
        return expr
    op = operator(expr)
    if op and op[0] == "index_accessor":
        return symbol(op[1]["operand_1"])
    raise AssertionError(f"not a plain resource reference: {expr!r}")


def path(expr: Any) -> tuple[str, ...]:
    """``roles.blobDataReader`` as ``('roles', 'blobDataReader')``."""
    if isinstance(expr, str):
        return (expr,)
    op = operator(expr)
    if op and op[0] == "property_accessor":
        return path(op[1]["operand_1"]) + path(op[1]["operand_2"])
    raise AssertionError(f"not a property path: {expr!r}")


def names_in(expr: Any) -> set[str]:
    """Every str anywhere in an expression: identifiers and literals alike."""
    if isinstance(expr, str):
        return {expr} | set(_INTERPOLATION.findall(expr))
    if isinstance(expr, dict):
        return set().union(*(names_in(v) for v in expr.values())) if expr else set()
    if isinstance(expr, list):
        return set().union(*(names_in(v) for v in expr)) if expr else set()
    return set()


def holds(cond: Any, values: Mapping[str, Any]) -> bool:
    """Whether a deployment condition is true when the named parameters have ``values``."""
    if cond is None:
        return True
    return bool(_evaluate_condition(cond, values))


def _evaluate_condition(expr: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(expr, str):
        return values[expr]
    op = operator(expr)
    if op and op[0] == "not":
        return not _evaluate_condition(op[1]["bool_value"], values)
    fn = function(expr)
    if fn and fn[0] == "empty":
        return not _evaluate_condition(fn[1]["item_to_test"], values)
    raise AssertionError(f"a condition these tests cannot read: {expr!r}")


class Scope:
    """Literal values of a file's parameters (their defaults) and variables, resolved on demand."""

    def __init__(self, doc: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> None:
        self.params = {k: v.get("default") for k, v in (doc.get("parameters") or {}).items()}
        self.params.update(overrides or {})
        self.variables = {k: v["value"] for k, v in (doc.get("variables") or {}).items()}

    def value(self, expr: Any) -> Any:
        """A literal, an identifier's value, an interpolated string, an array, an object or concat()."""
        if isinstance(expr, str):
            if expr in self.params:
                return self.params[expr]
            if expr in self.variables:
                return self.value(self.variables[expr])
            return _INTERPOLATION.sub(lambda m: str(self.value(m.group(1))), expr)
        if isinstance(expr, list):
            return [self.value(item) for item in expr]
        fn = function(expr)
        if fn and fn[0] == "concat":
            return [item for arg in fn[1].values() for item in self.value(arg)]
        if isinstance(expr, dict) and not operator(expr) and not fn:
            return {k: self.value(v) for k, v in expr.items()}
        return expr  # a runtime expression (module output, resource property): left as it is


@dataclass(frozen=True)
class Grant:
    """One role assignment: who, which built-in role, on which resource symbol, under which condition."""

    symbol: str
    principal: str
    role: str
    scope: str
    when: Any
    per_item: bool


def grants(doc: Mapping[str, Any]) -> Iterator[Grant]:
    """Every role assignment of a file, its role named by its key in the file's ``roles`` variable."""
    for name, resource in resources(doc).items():
        if resource["type"] != ROLE_ASSIGNMENT:
            continue
        props = body(resource)
        fn = function(props["properties"]["roleDefinitionId"])
        assert fn, f"{name}: role must be a built-in role id"
        assert fn[0] == "subscription_resource_id", f"{name}: role must be a built-in role id"
        role_path = path(fn[1]["resource_name_1"])
        assert role_path[0] == "roles", f"{name}: role must come from the roles variable"
        yield Grant(name, props["properties"]["principalId"], role_path[1], symbol(props["scope"]),
                    condition(resource), is_loop(resource))


def app_setting_names(doc: Mapping[str, Any]) -> list[str]:
    """The names of the app settings main.bicep composes in ``appSettings`` (read raw: names are literals)."""
    variables = {k: v["value"] for k, v in (doc.get("variables") or {}).items()}
    fn = function(variables["appSettings"])
    assert fn, "appSettings must be concat() of the setting arrays"
    assert fn[0] == "concat", "appSettings must be concat() of the setting arrays"
    return [item["name"] for part in fn[1].values() for item in variables[part]]
