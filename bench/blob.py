"""Blob to blob through the project's own Azurite: the app's CLI against the notes' way.

A private Azurite (free ports, a temporary data folder) keeps the run from
touching the developer's own emulator or its data. The input is uploaded
once; each timed run writes its own output blob, which is sized, checked
through its footer alone, and deleted before the next run.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench.datagen import Spec
from bench.local import Log, Samples, interleave, warm
from bench.measure import Sample, failure, run_child
from bench.ways import Way, app_mode, blob_ways

#: Not the name of any folder in the project root, so the CLI reads it as a container.
CONTAINER = "bench-blob"
INPUT_BLOB = "in.parquet"


def run_blob(spec: Spec, repeats: int, log: Log, app_root: Path) -> tuple[Samples, Sequence[Way]]:
    """Upload ``spec``'s file to a fresh Azurite and time every blob way on it."""
    from azure.storage.blob import BlobServiceClient

    from devhost.azurite import Azurite, free_port

    with tempfile.TemporaryDirectory(prefix="bench-azurite-") as temp:
        folder = Path(temp)
        azurite = Azurite(folder / "data", blob_port=free_port(), queue_port=free_port(),
                          log_file=folder / "azurite.log")
        with azurite:
            service = BlobServiceClient.from_connection_string(azurite.connection_string)
            container = service.create_container(CONTAINER)
            warm(spec.path)
            with spec.path.open("rb") as data:
                container.upload_blob(INPUT_BLOB, data, overwrite=True, max_concurrency=4)
            log(f"  uploaded {spec.path.name} to Azurite on port {azurite.blob_port}")
            ways = blob_ways(azurite.connection_string, app_root)

            def run_one(name: str, way: Way) -> Sample:
                target = container.get_blob_client(f"{way.name}.out.parquet")
                if target.exists():
                    target.delete_blob()
                child = run_child(way.argv(f"{CONTAINER}/{INPUT_BLOB}", f"{CONTAINER}/{target.blob_name}"),
                                  env=way.env(), cwd=way.cwd)
                error = failure(child)
                size = 0
                if target.exists():
                    size = int(target.get_blob_properties().size)
                    error = error or _check_footer(target.download_blob(offset=max(0, size - 4 * 1024**2)).readall(),
                                                   spec.rows)
                    target.delete_blob()
                elif not error:
                    error = "no output blob"
                mode, reason = app_mode(child.stdout) if way.is_app else ("", "")
                return Sample(child.wall_s, child.cpu_s, child.rss_bytes, size, error, child.other_cpu_s, mode,
                              reason)

            for way in ways:  # untimed: Node's JIT and Azurite's caches warm up on the first requests
                run_one(spec.name, way)
            return interleave([spec.name], ways, repeats, run_one, log), ways


def _check_footer(tail: bytes, rows: int) -> str:
    """Read the row count from a file's last bytes only, without downloading the whole output."""
    if len(tail) < 12 or tail[-4:] != b"PAR1":
        return "output blob is not Parquet"
    length = int.from_bytes(tail[-8:-4], "little")
    if length + 8 > len(tail):
        return ""  # footer larger than what was fetched: leave unchecked rather than download it all
    try:
        found = pq.read_metadata(pa.BufferReader(b"PAR1" + tail[-(length + 8):])).num_rows
    except (OSError, pa.ArrowException) as exc:
        return f"unreadable output footer ({exc})"
    return "" if found == rows else f"output holds {found} rows, expected {rows}"
