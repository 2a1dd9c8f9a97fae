"""The deployment files are well formed: Bicep parses, checkov passes, the hook scripts lint.

No Bicep compiler or azd installs here; these are the offline checks that can
run. checkov comes from its own venv (``.tools/checkov``, built by ``make test``,
which sets RECOMPRESS_REQUIRE_TOOLS so a missing checkov fails instead of skipping).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pycep import BicepParser

from tests.helpers import ROOT
from tests.infra.bicep import INFRA, bicep_files

CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"
HOOKS = INFRA / "hooks"
SH = shutil.which("sh") or "/bin/sh"
SKIP = re.compile(r"checkov:skip=(CKV2?_[A-Z]+_\d+):(.*)")


def test_there_is_bicep_to_check() -> None:
    names = {p.relative_to(INFRA).as_posix() for p in bicep_files()}

    assert {"main.bicep", "events/blob-created.bicep", "modules/roles.bicep"} <= names


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_every_bicep_file_parses(path: Path) -> None:
    doc = BicepParser().parse(file_path=path)

    assert doc.get("resources") or doc.get("modules"), f"{path.name} declares nothing"


def test_a_syntax_error_is_refused_with_its_place() -> None:
    with pytest.raises(Exception, match="line 2"):
        BicepParser().parse(text="param a string\nresource x 'Microsoft.Storage/storageAccounts@2023-05-01' = {{\n")


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_no_child_resource_is_nested(path: Path) -> None:
    """pycep-parser (and checkov, which uses it) keeps only the last of several nested child resources.

    A nested one could vanish from every check here, so children are top-level resources with ``parent:``.
    """
    nested = [line.strip() for line in path.read_text().splitlines() if re.match(r"\s+resource\s", line)]

    assert nested == []


def _checkov() -> dict[str, object]:
    if not CHECKOV.exists():
        if os.environ.get("RECOMPRESS_REQUIRE_TOOLS"):
            pytest.fail(f"{CHECKOV} is missing: make test builds it from requirements-checkov.txt")
        pytest.skip("checkov's venv is not built; make test builds it (.tools/checkov)")
    result = subprocess.run(
        [str(CHECKOV), "--framework", "bicep", "-d", str(INFRA), "--skip-download", "-o", "json"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
    )
    report = json.loads(result.stdout)
    assert isinstance(report, dict), "one framework, one report"
    return report


@pytest.fixture(scope="module")
def checkov_report() -> dict[str, object]:
    return _checkov()


def test_checkov_finds_no_failed_check_and_reads_every_file(checkov_report: dict[str, object]) -> None:
    summary = checkov_report["summary"]
    results = checkov_report["results"]
    assert isinstance(summary, dict)
    assert isinstance(results, dict)
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in results["failed_checks"]]

    assert failed == []
    assert summary["parsing_errors"] == 0, results.get("parsing_errors")
    assert summary["passed"] > 20, "checkov checked next to nothing: did it read the files?"


def _skip_comments() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in bicep_files():
        for match in SKIP.finditer(path.read_text()):
            found[f"{path.relative_to(INFRA).as_posix()}:{match.group(1)}"] = match.group(2).strip()
    return found


def test_every_skip_has_a_reason_is_used_and_is_listed_in_the_readme(checkov_report: dict[str, object]) -> None:
    results = checkov_report["results"]
    assert isinstance(results, dict)
    skipped = {f"{c['file_path'].lstrip('/')}:{c['check_id']}" for c in results["skipped_checks"]}
    comments = _skip_comments()
    readme = (ROOT / "README.md").read_text()

    assert all(len(reason) > 20 for reason in comments.values()), comments
    assert set(comments) == skipped, "a skip comment checkov did not use is stale; remove it"
    for key in comments:
        file, check = key.split(":")
        assert re.search(rf"\| `{check}` \|[^\n]*`{re.escape(file)}`", readme), f"README lists no {check} in {file}"


def test_the_posix_hook_lints() -> None:
    scripts = sorted(HOOKS.glob("*.sh"))
    assert scripts, "no POSIX hook"
    for script in scripts:
        assert script.read_text().startswith("#!/bin/sh\n"), "azure.yaml runs it with sh"
        subprocess.run([SH, "-n", str(script)], check=True)
        shellcheck = shutil.which("shellcheck")
        if shellcheck:
            result = subprocess.run([shellcheck, "--shell=sh", str(script)], capture_output=True, text=True,
                                    check=False)
            assert result.returncode == 0, result.stdout


def test_a_broken_posix_hook_would_be_caught(tmp_path: Path) -> None:
    broken = tmp_path / "broken.sh"
    broken.write_text("#!/bin/sh\nif true; then\n  echo unclosed\n")

    assert subprocess.run([SH, "-n", str(broken)], capture_output=True, check=False).returncode != 0


def test_the_powershell_hook_parses() -> None:
    pwsh = shutil.which("pwsh")
    if not pwsh:
        pytest.skip("PowerShell (pwsh) is not installed here; postdeploy.ps1 is checked by its shape only")
    script = HOOKS / "postdeploy.ps1"
    check = ("$errors = $null; [System.Management.Automation.Language.Parser]::ParseFile("
             f"'{script}', [ref]$null, [ref]$errors) | Out-Null; exit $errors.Count")
    assert subprocess.run([pwsh, "-NoProfile", "-Command", check], check=False).returncode == 0


def test_azure_yaml_runs_both_hooks_and_names_the_service_the_bicep_tags() -> None:
    text = (ROOT / "azure.yaml").read_text()
    main = (INFRA / "main.bicep").read_text()

    for run in re.findall(r"run:\s*(\S+)", text):
        assert (ROOT / run).is_file(), run
    assert re.search(r"posix:\s*\n\s*shell: sh\n\s*run: ./infra/hooks/postdeploy.sh", text)
    assert re.search(r"windows:\s*\n\s*shell: pwsh\n\s*run: ./infra/hooks/postdeploy.ps1", text)
    service = re.search(r"services:\n  (\w[\w-]*):\n    project: \.\n    language: python\n    host: function", text)
    assert service, "one Python function service, the repository root"
    assert f"serviceName: '{service.group(1)}'" in main
