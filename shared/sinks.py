"""Where an output goes before it is published: memory (HTTP answers) or a local file (the CLI).

A sink takes the engine's bytes as they come and makes them visible only on
:meth:`Sink.commit`, which the pipeline calls after the proof; on any failure
it calls :meth:`Sink.abort` and nothing remains. The blob sink, which needs
the Azure SDK, lives beside the other storage code in ``shared.storage``.
Nothing here decodes Parquet or touches storage.
"""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from shared.errors import OptionError


class Sink(Protocol):
    """Where the engine writes; nothing is visible until :meth:`commit`."""

    def write(self, data: Any) -> int: ...

    def commit(self, metadata: dict[str, str]) -> None: ...

    def abort(self) -> None: ...

    def restart(self) -> bool:
        """Forget everything written so far and start the file again; False if this sink cannot."""
        ...


class BufferSink:
    """An in-memory sink for HTTP responses; ``value`` is the finished file."""

    def __init__(self) -> None:
        self.stream = pa.BufferOutputStream()
        self.value: pa.Buffer | None = None

    def write(self, data: Any) -> int:
        return int(self.stream.write(data))

    def commit(self, metadata: dict[str, str]) -> None:
        self.value = self.stream.getvalue()

    def abort(self) -> None:
        self.value = None

    def restart(self) -> bool:
        self.stream = pa.BufferOutputStream()
        return True


_KINDS = {stat.S_ISDIR: "a folder", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
          stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket"}


class LocalFileSink:
    """Writes beside the destination and renames into place on commit, so no partial file ever appears.

    A symlink destination is written through, to its target, as ``cp`` would;
    anything that is not a regular file (a device, FIFO, socket or folder) is
    refused, since renaming over it would replace ``/dev/null`` with a file.
    The temporary file is created with mode 0666 and the process umask applies,
    as for any file a program creates; an existing destination keeps its mode.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.target = Path(os.path.realpath(path))
        mode = _existing_mode(self.target, path)
        folder = self.target.parent
        if not folder.is_dir():
            raise FileNotFoundError(2, f"folder {str(folder)!r} does not exist", str(path))
        self._temp = folder / f".{self.target.name}.{uuid.uuid4().hex[:12]}.partial"
        fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        if mode is not None:
            os.fchmod(fd, stat.S_IMODE(mode))
        self._file = os.fdopen(fd, "wb")

    def write(self, data: Any) -> int:
        return self._file.write(data)

    def commit(self, metadata: dict[str, str]) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._temp, self.target)

    def abort(self) -> None:
        self._file.close()
        self._temp.unlink(missing_ok=True)

    def restart(self) -> bool:
        self._file.seek(0)
        self._file.truncate()
        return True


def _existing_mode(target: Path, given: Path) -> int | None:
    """The mode of an existing regular-file destination; refuse any other kind of thing."""
    try:
        info = target.stat()
    except FileNotFoundError:
        return None
    if stat.S_ISREG(info.st_mode):
        return info.st_mode
    kind = next((name for test, name in _KINDS.items() if test(info.st_mode)), "not a regular file")
    raise OptionError(str(given), f"is {kind}; the destination must be a regular file path")


class Counted:
    """What the engines write into: forwards to a sink and counts the bytes on the way."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.closed = False
        self._bytes = 0

    def write(self, data: Any) -> int:
        written = int(self.sink.write(data))
        self._bytes += written
        return written

    def tell(self) -> int:
        return self._bytes

    def flush(self) -> None:
        return None

    def restart(self) -> bool:
        if not self.sink.restart():
            return False
        self._bytes = 0
        return True
