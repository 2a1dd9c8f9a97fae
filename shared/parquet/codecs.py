"""Decompressing Parquet page payloads and compressing them with zstd, with exact sizes.

A page header declares its uncompressed size; a payload that inflates to any
other size is damage, and must be refused rather than padded or cut. pyarrow's
``Codec.decompress`` (used because it releases the GIL) returns a buffer of the
size it was asked for even when the data held less, so each codec gets a check
that pins the real size. This module never interprets the bytes it inflates.
"""

from __future__ import annotations

import struct
import threading
import zlib

import pyarrow as pa

from shared.parquet.footer import BROTLI, CODEC_NAMES, GZIP, LZ4, LZ4_RAW, LZO, SNAPPY, UNCOMPRESSED, ZSTD


class CodecError(ValueError):
    """A payload failed to decompress to its declared size."""


class UnsupportedCodec(CodecError):
    """A codec this app cannot read (LZO, or an id parquet.thrift does not define)."""


_LOCAL = threading.local()


def _codec(name: str, level: int | None = None) -> pa.Codec:
    """A codec object per thread: Arrow does not promise that one codec object is thread-safe."""
    cache: dict[str, pa.Codec] = _LOCAL.__dict__.setdefault("codecs", {})
    key = f"{name}:{level}"
    found = cache.get(key)
    if found is None:
        found = pa.Codec(name, compression_level=level) if level is not None else pa.Codec(name)
        cache[key] = found
    return found


def _checked_shrink(name: str, data: bytes | memoryview, size: int) -> bytes:
    """Decompress with pyarrow, proving the payload holds exactly ``size`` bytes.

    pyarrow pads a short result; but the same codecs fail when the output
    buffer is too small, so a success at ``size`` and a failure at ``size - 1``
    pin the size exactly.
    """
    codec = _codec(name)
    try:
        out = codec.decompress(data, decompressed_size=size, asbytes=True)
    except (OSError, pa.ArrowException) as exc:
        raise CodecError(f"{name} data does not decompress ({exc})") from exc
    if size > 0:
        try:
            codec.decompress(data, decompressed_size=size - 1, asbytes=True)
        except (OSError, pa.ArrowException):
            return bytes(out)
        raise CodecError(f"{name} data decompresses to fewer than the {size} bytes declared")
    return bytes(out)


def _snappy_length(data: bytes | memoryview) -> int:
    """A snappy stream starts with its uncompressed length as a varint."""
    result = shift = 0
    for index in range(min(len(data), 5)):
        current = data[index]
        result |= (current & 0x7F) << shift
        if not current & 0x80:
            return result
        shift += 7
    raise CodecError("snappy data has no valid length preamble")


def _snappy(data: bytes | memoryview, size: int) -> bytes:
    declared = _snappy_length(data)
    if declared != size:
        raise CodecError(f"snappy data holds {declared} bytes, the header declares {size}")
    try:
        return bytes(_codec("snappy").decompress(data, decompressed_size=size, asbytes=True))
    except (OSError, pa.ArrowException) as exc:
        raise CodecError(f"snappy data does not decompress ({exc})") from exc


def _gzip(data: bytes | memoryview, size: int) -> bytes:
    """GZIP (or zlib) members, concatenated; never inflates past ``size + 1`` bytes."""
    out = bytearray()
    rest = bytes(data)
    try:
        while True:
            inflater = zlib.decompressobj(wbits=47)
            out += inflater.decompress(rest, size + 1 - len(out))
            if not inflater.eof:
                if len(out) > size:
                    raise CodecError(f"gzip data holds more than the {size} bytes declared")
                raise CodecError("gzip data is truncated")
            rest = inflater.unused_data
            if not rest.strip(b"\x00"):
                break
    except zlib.error as exc:
        raise CodecError(f"gzip data does not decompress ({exc})") from exc
    if len(out) != size:
        raise CodecError(f"gzip data holds {len(out)} bytes, the header declares {size}")
    return bytes(out)


def _brotli(data: bytes | memoryview, size: int) -> bytes:
    stream = pa.CompressedInputStream(pa.BufferReader(bytes(data)), "brotli")
    try:
        out = stream.read(size + 1)
    except (OSError, pa.ArrowException) as exc:
        raise CodecError(f"brotli data does not decompress ({exc})") from exc
    if len(out) != size:
        raise CodecError(f"brotli data holds {len(out)} bytes, the header declares {size}")
    return bytes(out)


def _zstd(data: bytes | memoryview, size: int) -> bytes:
    # Arrow's zstd checks the result's size itself (too short and too long both fail).
    try:
        return bytes(_codec("zstd").decompress(data, decompressed_size=size, asbytes=True))
    except (OSError, pa.ArrowException) as exc:
        raise CodecError(f"zstd data does not decompress to {size} bytes ({exc})") from exc


def _lz4_hadoop(data: bytes | memoryview, size: int) -> bytes:
    """parquet-mr's LZ4: blocks of big-endian (decompressed size, compressed size) then an LZ4 block."""
    view = memoryview(data)
    out = bytearray()
    pos = 0
    while pos < len(view):
        if pos + 8 > len(view):
            raise CodecError("Hadoop LZ4 frame header is truncated")
        expected, compressed = struct.unpack(">II", view[pos:pos + 8])
        pos += 8
        if compressed > len(view) - pos or expected > size - len(out):
            raise CodecError("Hadoop LZ4 frame sizes do not fit the page")
        out += _checked_shrink("lz4_raw", view[pos:pos + compressed], expected)
        pos += compressed
    if len(out) != size:
        raise CodecError(f"Hadoop LZ4 data holds {len(out)} bytes, the header declares {size}")
    return bytes(out)


def _lz4_legacy(data: bytes | memoryview, size: int) -> bytes:
    """The deprecated LZ4 codec: Hadoop framing first, then a bare LZ4 block, as Arrow does."""
    try:
        return _lz4_hadoop(data, size)
    except CodecError:
        return _checked_shrink("lz4_raw", data, size)


def decompress(codec: int, data: bytes | memoryview, size: int) -> bytes:
    """The payload's bytes decompressed; CodecError unless they are exactly ``size`` bytes."""
    if codec == UNCOMPRESSED:
        if len(data) != size:
            raise CodecError(f"uncompressed data is {len(data)} bytes, the header declares {size}")
        return bytes(data)
    if codec == SNAPPY:
        return _snappy(data, size)
    if codec == GZIP:
        return _gzip(data, size)
    if codec == BROTLI:
        return _brotli(data, size)
    if codec == ZSTD:
        return _zstd(data, size)
    if codec == LZ4_RAW:
        return _checked_shrink("lz4_raw", data, size)
    if codec == LZ4:
        return _lz4_legacy(data, size)
    if codec == LZO:
        raise UnsupportedCodec("LZO")
    raise UnsupportedCodec(f"codec {codec}")


def codec_name(codec: int) -> str:
    return CODEC_NAMES.get(codec, f"codec {codec}")


def inflates_to(packed: bytes | memoryview, original: bytes | memoryview) -> bool:
    """Whether zstd ``packed`` decompresses to exactly ``original`` (the round-trip proof of a rewritten page)."""
    try:
        return _zstd(packed, len(original)) == original
    except CodecError:
        return False


def compress_zstd(data: bytes | memoryview, level: int) -> bytes:
    """zstd at ``level``; pyarrow releases the GIL, so chunks compress in parallel on threads."""
    return bytes(_codec("zstd", level).compress(data, asbytes=True))
