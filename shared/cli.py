"""Command line over the same pipeline: ``python -m shared recompress SRC DST``.

SRC and DST are each a local path or a ``container/blob`` name in the
configured storage. A path is local when it starts with ``/``, ``./``, ``../``
or ``~``, when it has no ``/``, when it exists, or when its first folder
exists; otherwise it names a blob. ``az://container/blob``, ``abfss://`` and
``https://`` addresses always name a blob (see :mod:`shared.addresses`).

``python -m shared backfill`` runs a whole backfill job here, without the
Functions host, with the same job record as ``POST /api/backfill``.

Bad input ends with exit status 2 and exactly one line on stderr; storage
failures with status 1. No DST is left behind either way.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pyarrow as pa

from shared import pipeline
from shared.addresses import BlobAddress, is_url, parse_url
from shared.errors import (
    InputError,
    MissingContainerError,
    NotFoundError,
    RecompressError,
    StorageError,
    VerificationError,
)
from shared.pipeline import Progress
from shared.readers import POLICIES
from shared.reencode import release_memory_promptly
from shared.report import Report
from shared.settings import (
    MODES,
    PROOFS,
    Settings,
    azd_parameters,
    bicep_block,
    describe,
    documented,
    example_values,
    markdown_table,
    parse_columns,
    parse_level,
    whole_number,
)
from shared.sinks import LocalFileSink, Sink

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

    from shared.storage import StorageContext

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


@dataclass(frozen=True)
class Location:
    """Where a file lives: a local path, or a container and blob name."""

    text: str
    container: str | None = None
    blob: str | None = None
    #: For the URL forms: the parsed address, with the account endpoint it names.
    address: BlobAddress | None = None

    @property
    def is_blob(self) -> bool:
        return self.container is not None


def parse_location(text: str) -> Location:
    """Tell a local path from a ``container/blob`` name (see the module docstring)."""
    if is_url(text):
        address = parse_url(text)
        return Location(text, address.container, address.blob, address)
    path = Path(text).expanduser()
    if text.startswith(("/", "./", "../", "~", ".\\")) or "/" not in text.strip("/"):
        return Location(str(path))
    if path.exists() or Path(text.split("/", 1)[0]).is_dir():
        return Location(str(path))
    return _as_blob(text, text)


def _as_blob(text: str, rest: str) -> Location:
    container, _, blob = rest.partition("/")
    if not container or not blob:
        raise InputError(text, "names no blob; use container/blob")
    return Location(text, container, blob)


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the rule for every bad input), not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message}\n")


#: ``python -m shared settings --format F``: each rendering of the one list of settings.
SETTINGS_FORMATS: dict[str, Callable[[], str]] = {
    "markdown": markdown_table,
    "example": lambda: json.dumps(example_values(), indent=4),
    "bicep": bicep_block,
    "azd": lambda: json.dumps(azd_parameters(), indent=4),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="python -m shared",
        description="Rewrite Parquet files as verified, lossless zstd Parquet.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    rec = commands.add_parser(
        "recompress",
        help="recompress one file",
        description="Recompress SRC into DST. Each is a local path or container/blob "
                    "(az://container/blob forces storage). Storage comes from ParquetStorage "
                    "and the RECOMPRESS_* settings, as in the app.",
    )
    rec.add_argument("src", metavar="SRC", help="input Parquet file: path or container/blob")
    rec.add_argument("dst", metavar="DST", help="output file: path or container/blob")
    rec.add_argument("--mode", choices=MODES, help=describe("mode"))
    rec.add_argument("--verify", choices=PROOFS, help=describe("verify"))
    rec.add_argument("--readers", choices=POLICIES, help=describe("readers"))
    rec.add_argument("--level", type=_level, help=describe("zstd_level"))
    rec.add_argument("--columns", type=_columns, help=describe("columns"))
    rec.add_argument("--row-group-size", type=_as_setting("row_group_size"), metavar="ROWS",
                     help=describe("row_group_size"))
    rec.add_argument("--json", action="store_true", help="print the report as JSON")
    rec.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    docs = commands.add_parser(
        "settings",
        help="print the app settings with their defaults and meanings",
        description="Print every RECOMPRESS_* setting, as the README's table (markdown), as the Values of "
                    "local.settings.json.example (example), as the parameter block of infra/main.bicep (bicep) "
                    "or as the RECOMPRESS_* entries of infra/main.parameters.json (azd). All four are generated "
                    "from this, and tests keep them in step.",
    )
    docs.add_argument("--format", choices=SETTINGS_FORMATS, default="markdown")
    fill = commands.add_parser(
        "backfill",
        help="recompress what is already in the input container",
        description="Run a backfill job here, without the Functions host: list the input container (or a "
                    "prefix of it), process every blob as the trigger would, and keep the same job record "
                    "as POST /api/backfill. Exit 0 when every blob was processed, 1 when some failed.",
    )
    fill.add_argument("--prefix", default="",
                      help="only blobs whose names start with this; an az://, abfss:// or https:// address "
                           "names the container too, which must be the input container")
    fill.add_argument("--dry-run", action="store_true",
                      help="process nothing: count what would be written, skipped or is quarantined already")
    fill.add_argument("--workers", type=_workers, default=2, metavar="N",
                      help="blobs processed at once (default 2)")
    fill.add_argument("--json", action="store_true", help="print the final job status as JSON")
    fill.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    saved = commands.add_parser(
        "report",
        help="how many bytes the outputs saved, by folder and mode, and what was quarantined",
        description="Sum the outputs' recorded input sizes against their own, from the containers that "
                    "ParquetStorage and the RECOMPRESS_* settings name; list the quarantined files with their "
                    "reasons. Reads metadata only.",
    )
    saved.add_argument("--prefix", default="", help="only blobs whose names start with this")
    saved.add_argument("--json", action="store_true", help="print the report as JSON")
    saved.add_argument("--chart", metavar="FILE.png", type=Path,
                       help="also draw bytes before and after by folder (needs matplotlib)")
    return parser


def _level(raw: str) -> int:
    try:
        return parse_level(raw, "--level")
    except RecompressError as exc:
        raise argparse.ArgumentTypeError(exc.problem) from None


def _rows(raw: str) -> int:
    try:
        value = whole_number(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _as_setting(name: str) -> Callable[[str], Any]:
    """An option parsed exactly as its app setting is, so the bounds are written once."""
    parse = next(spec.metadata["parse"] for spec in documented() if spec.name == name)

    def convert(raw: str) -> Any:
        try:
            return parse(raw, f"--{name.replace('_', '-')}")
        except RecompressError as exc:
            raise argparse.ArgumentTypeError(exc.problem) from None

    return convert


def _workers(raw: str) -> int:
    value = _rows(raw)
    if value > 64:
        raise argparse.ArgumentTypeError(f"must be at most 64, got {value}")
    return value


def _columns(raw: str) -> tuple[str, ...] | None:
    try:
        return parse_columns(raw, "--columns")
    except RecompressError as exc:
        raise argparse.ArgumentTypeError(exc.problem) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "settings":
        print(SETTINGS_FORMATS[args.format]())
        return 0
    if args.command == "report":
        return _savings(args)
    if args.command == "backfill":
        return _backfill(args)
    release_memory_promptly()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    try:
        settings = Settings.from_env().with_overrides(
            zstd_level=args.level, columns=args.columns, row_group_size=args.row_group_size, mode=args.mode,
            verify=args.verify, readers=args.readers,
        )
        src = parse_location(args.src)
        dst = parse_location(args.dst)
        report = recompress(src, dst, settings, show_progress=not args.no_progress and sys.stderr.isatty())
    except (RecompressError, OSError) as exc:
        print(f"error: {_one_line(exc, args.src)}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        print("interrupted; no output written", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated; no output written", file=sys.stderr)
        return 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(json.dumps(report.as_dict()) if args.json else report.line())
    return 0


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C, so every sink aborts and no partial file stays behind."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def exit_code(exc: BaseException) -> int:
    """2 when the user must change the command or its input, 1 when storage or the app failed."""
    if isinstance(exc, NotFoundError):
        return EXIT_BAD_INPUT
    if isinstance(exc, StorageError | VerificationError):
        return EXIT_FAILED
    return EXIT_BAD_INPUT


def _one_line(exc: BaseException, src: str) -> str:
    if isinstance(exc, OSError):
        return f"{exc.filename or src}: {exc.strerror or exc}"
    return str(exc)


def recompress(src: Location, dst: Location, settings: Settings, *, show_progress: bool = False) -> Report:
    """Run the pipeline between any pair of locations."""
    with _progress_bar(show_progress) as progress:
        if src.is_blob:
            return _from_blob(src, dst, settings, progress)
        return _from_file(Path(src.text), dst, settings, progress)


def _from_blob(src: Location, dst: Location, settings: Settings, progress: Progress | None) -> Report:
    from shared.blobs import blob_to_blob
    from shared.storage import open_blob

    source = _storage(settings, src).blob(src.container or "", src.blob or "")
    if dst.is_blob:
        return blob_to_blob(source, _blob_dst(_storage(settings, dst), dst), settings, progress)
    sink = _local_sink(dst)  # before the download: a bad DST fails first
    try:
        opened = open_blob(source, settings)
    except BaseException:
        sink.abort()
        raise
    return pipeline.run(opened.file, src.text, opened.size, opened.etag, sink, settings, dst.text, progress)


def _from_file(path: Path, dst: Location, settings: Settings, progress: Progress | None) -> Report:
    if path.is_dir():
        raise IsADirectoryError(21, "is a directory, expected a Parquet file", str(path))
    # A plain file, not a memory map: mapped pages would stay in the RSS. Raises FileNotFoundError naming it.
    source = pa.OSFile(str(path))
    size = source.size()
    if dst.is_blob:
        from shared.storage import BlockBlobSink

        target = _blob_dst(_storage(settings, dst), dst)
        sink: Sink = BlockBlobSink(target, settings, replaces="*")  # like cp: DST may exist
    else:
        sink = _local_sink(dst)
    return pipeline.run(source, str(path), size, None, sink, settings, dst.text, progress)


def _blob_dst(storage: StorageContext, dst: Location) -> BlobClient:
    """The destination blob, once its container is known to exist: checked before any work is done.

    When DST could also have been a local path, the error says which reading
    was taken and how to ask for the other.
    """
    container = storage.service.get_container_client(dst.container or "")
    try:
        storage.call(f"container {dst.container!r}", container.get_container_properties)
    except (MissingContainerError, NotFoundError) as exc:
        hint = "" if is_url(dst.text) else (
            f"; it was read as container {dst.container!r} because no local folder {dst.container!r} exists: "
            f"for a local file create the folder or write ./{dst.text}")
        raise InputError(dst.text, f"container {dst.container!r} does not exist{hint}") from exc
    return storage.blob(dst.container or "", dst.blob or "")


def _savings(args: argparse.Namespace) -> int:
    """``python -m shared report``: the savings report, as a table, JSON, and optionally a chart."""
    from shared.savings import summarize

    try:
        settings = Settings.from_env()
        with _ticker(sys.stderr.isatty() and not args.json) as tick:
            savings = summarize(_storage(settings), settings, args.prefix, tick)
        if args.chart is not None:
            _chart(savings.as_dict(), args.chart)
    except (RecompressError, OSError) as exc:
        print(f"error: {_one_line(exc, args.prefix)}", file=sys.stderr)
        return exit_code(exc)
    print(json.dumps(savings.as_dict()) if args.json else savings.table())
    return 0


def _backfill(args: argparse.Namespace) -> int:
    """``python -m shared backfill``: the job of ``POST /api/backfill``, run in this process."""
    from shared import backfill

    release_memory_promptly()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings, prefix = _backfill_scope(Settings.from_env(), args.prefix)
        _storage(settings)  # quiet the SDK's logging
        with _job_bar(not args.no_progress and sys.stderr.isatty()) as bar:
            status = backfill.run_here(settings, prefix, dry_run=args.dry_run, workers=args.workers,
                                       on_progress=bar)
    except (RecompressError, OSError) as exc:
        print(f"error: {_one_line(exc, args.prefix)}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        print("interrupted; the job record keeps what was done", file=sys.stderr)
        return 130
    print(json.dumps(status.as_dict()) if args.json else status.line())
    return EXIT_FAILED if status.failed else 0


def _backfill_scope(settings: Settings, prefix: str) -> tuple[Settings, str]:
    """A plain prefix lies in the input container; an address must name it, and may name another account."""
    if not is_url(prefix):
        return settings, prefix
    from shared.addresses import settings_for

    address = parse_url(prefix, blob_required=False)
    if address.container != settings.input_container:
        raise InputError(prefix, f"names container {address.container!r}, but the backfill reads "
                                 f"RECOMPRESS_INPUT_CONTAINER={settings.input_container!r}; set that setting "
                                 f"to {address.container!r} to backfill it")
    return settings_for(settings, address), address.blob


class _job_bar:
    """A tqdm bar of blobs done against blobs found so far (the total grows while listing)."""

    def __init__(self, enabled: bool) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=0, unit=" blobs", file=sys.stderr, leave=False)

    def __enter__(self) -> Callable[[Any], None] | None:
        return None if self._bar is None else self._update

    def _update(self, tally: Any) -> None:
        self._bar.total = tally.found
        self._bar.n = tally.done
        self._bar.refresh()

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


class _ticker:
    """A tqdm counter of blobs listed, for long listings on a terminal; nothing otherwise."""

    def __init__(self, enabled: bool) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(unit=" blobs", file=sys.stderr, leave=False)

    def __enter__(self) -> Callable[[], None] | None:
        return None if self._bar is None else (lambda: self._bar.update(1))

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


def _chart(report: dict[str, Any], path: Path) -> None:
    """Bytes before and after by folder, as a bar chart."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise OSError(2, "--chart needs matplotlib (pip install matplotlib)", str(path)) from exc
    folders = report["by_folder"]
    names = list(folders)
    figure, axes = plt.subplots(figsize=(max(4, len(names) * 1.2), 4))
    positions = range(len(names))
    axes.bar([p - 0.2 for p in positions], [folders[n]["bytes_in"] / 1e6 for n in names], 0.4, label="before")
    axes.bar([p + 0.2 for p in positions], [folders[n]["bytes_out"] / 1e6 for n in names], 0.4, label="after")
    axes.set_xticks(list(positions), names, rotation=30, ha="right")
    axes.set_ylabel("MB")
    axes.set_title(f"bytes before and after recompression{' under ' + report['prefix'] if report['prefix'] else ''}")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _storage(settings: Settings, location: Location | None = None) -> StorageContext:
    """The storage context, for blob locations only: local runs never load the Azure SDK."""
    from shared.addresses import storage_for
    from shared.storage import context, quiet_sdk_logging

    quiet_sdk_logging()
    if location is None or location.address is None:
        return context(settings)
    return storage_for(settings, location.address)


def _local_sink(dst: Location) -> LocalFileSink:
    return LocalFileSink(Path(dst.text))


class _progress_bar:
    """A tqdm bar over rows, with a total, percentage and ETA from the footer, when a person is watching."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._bar: Any = None

    def __enter__(self) -> Progress | None:
        return self if self._enabled else None

    def start(self, rows: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=rows, unit=" rows", unit_scale=True, file=sys.stderr, leave=False)

    def advance(self, rows: int) -> None:
        if self._bar is not None:
            self._bar.update(rows)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
