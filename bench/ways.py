"""The ways of recompressing being compared, each as the command line of a child process.

The app is run through its real CLI (``python -m shared recompress``) so its
start-up and imports count, as they do for every invocation in production,
once per engine: ``app`` (auto: the default, which picks exact or re-encode per
file), ``app-exact`` (full proof), ``app-exact-pages`` (``--verify pages``) and
``app-reencode``. Every app way asks for ``--json`` so the mode it actually
ran is read from its report. Each peer is a script in ``bench/peers``. Children get the benchmark's
environment without any ``RECOMPRESS_*`` setting, so the app runs at its
defaults unless a way says otherwise, and without ``PYTHONDONTWRITEBYTECODE``:
an installed app runs from cached bytecode, so recompiling the project's
modules on every run would charge the app a start-up cost it doesn't have.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench import PEERS, ROOT, WORK

APP = "app"
EXACT, EXACT_PAGES, REENCODE = "app-exact", "app-exact-pages", "app-reencode"
#: Re-encode under the ``modern`` reader profile (BYTE_STREAM_SPLIT and DELTA_* allowed): its size target.
REENCODE_MODERN = "app-reencode-modern"
#: Every way of running the app, in the order they are reported: auto first, then each engine.
APP_WAYS = (APP, EXACT, EXACT_PAGES, REENCODE, REENCODE_MODERN)
#: What each app way passes to the CLI, beyond SRC, DST and the level.
APP_FLAGS: dict[str, tuple[str, ...]] = {
    APP: (),
    EXACT: ("--mode", "exact"),
    EXACT_PAGES: ("--mode", "exact", "--verify", "pages"),
    REENCODE: ("--mode", "reencode"),
    REENCODE_MODERN: ("--mode", "reencode", "--readers", "modern"),
}
#: The peers the local targets are measured against (the notes' way is a baseline, not a target).
TARGET_PEERS = ("pyarrow", "polars", "duckdb")
#: Inherited settings that would skew a child: the caller's storage, and no bytecode cache.
DROPPED = frozenset({"ParquetStorage", "PYTHONDONTWRITEBYTECODE"})


@dataclass(frozen=True)
class Way:
    """One way to turn SRC into DST: its short name, a label, and its command line."""

    name: str
    label: str
    argv: Callable[[str, str], list[str]]
    is_app: bool = False
    extra_env: Mapping[str, str] = field(default_factory=dict)
    #: Where the child runs; for the app, the folder ``python -m shared`` is found in.
    cwd: Path = ROOT

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("RECOMPRESS_") and k not in DROPPED}
        return {**base, **self.extra_env}


def snapshot_app() -> Path:
    """Copy the app's package (``shared/``) aside and return the folder to run it from.

    Others may edit or commit ``shared/`` while a run takes its ten minutes;
    running a copy taken at the start keeps every figure of one run about one
    version of the app. ``shared`` imports nothing else from the project.
    """
    root = WORK / "app"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(ROOT / "shared", root / "shared", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def app(level: int | None = None, env: Mapping[str, str] | None = None, root: Path = ROOT,
        kind: str = APP) -> Way:
    """The app's CLI from ``root`` as way ``kind`` (one of :data:`APP_WAYS`), at its default level or ``level``."""
    flags = [*APP_FLAGS[kind], *(["--level", str(level)] if level is not None else [])]

    def argv(src: str, dst: str) -> list[str]:
        return [sys.executable, "-m", "shared", "recompress", src, dst, "--no-progress", "--json", *flags]

    name = kind if level is None else f"{kind}@{level}"
    label = " ".join(["app CLI", *flags]) if flags else "app CLI (auto)"
    return Way(name, label, argv, is_app=True, extra_env=dict(env or {}), cwd=root)


def app_mode(stdout: str) -> tuple[str, str]:
    """The mode and its reason from the app's ``--json`` report (its last line), or empty strings."""
    lines = stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1]) if lines else {}
    except ValueError:
        return "", ""
    if not isinstance(report, dict):
        return "", ""
    return str(report.get("mode") or ""), str(report.get("mode_reason") or "")


def peer(name: str, label: str, script: str, env: Mapping[str, str] | None = None) -> Way:
    """A peer script from ``bench/peers``."""
    path = str(PEERS / script)

    def argv(src: str, dst: str) -> list[str]:
        return [sys.executable, path, src, dst]

    return Way(name, label, argv, extra_env=dict(env or {}))


def local_ways(app_root: Path = ROOT) -> list[Way]:
    """Everything compared on local files: the app's five ways, the notes' way and the three libraries."""
    return [
        *(app(root=app_root, kind=kind) for kind in APP_WAYS),
        peer("notes", "notes' way (BytesIO, pandas)", "notes_local.py"),
        peer("pyarrow", "pyarrow read_table+write_table", "pyarrow_rw.py"),
        peer("polars", "polars read+write_parquet", "polars_rw.py"),
        peer("duckdb", "DuckDB COPY", "duckdb_copy.py"),
    ]


def blob_ways(connection_string: str, app_root: Path = ROOT) -> list[Way]:
    """The app against the notes' way, blob to blob, both given the storage in ``ParquetStorage``."""
    env = {"ParquetStorage": connection_string}
    return [app(env=env, root=app_root), peer("notes", "notes' way (BytesIO, pandas)", "notes_blob.py", env)]

