"""Every input codec inflates to exactly the declared size, or the page is refused."""

from __future__ import annotations

import pytest

from shared.parquet import codecs
from shared.parquet import footer as ft
from tests.shared.parquet.corpus import ARROW, hadoop_lz4
from tests.shared.parquet.corpus import pack as _pack

DATA = b"parquet pages repeat themselves " * 200 + bytes(range(256))

@pytest.mark.parametrize("codec", sorted(ARROW))
def test_round_trip_and_exact_size(codec: int) -> None:
    packed = _pack(codec, DATA)
    assert codecs.decompress(codec, packed, len(DATA)) == DATA
    for wrong in (len(DATA) - 1, len(DATA) + 1, len(DATA) + 1000):
        with pytest.raises(codecs.CodecError):
            codecs.decompress(codec, packed, wrong)


@pytest.mark.parametrize("codec", sorted(ARROW))
def test_corrupt_payload_is_refused(codec: int) -> None:
    packed = bytearray(_pack(codec, DATA))
    packed = packed[: len(packed) // 2]
    with pytest.raises(codecs.CodecError):
        codecs.decompress(codec, bytes(packed), len(DATA))


def test_legacy_lz4_in_both_framings() -> None:
    framed = hadoop_lz4(DATA)
    assert codecs.decompress(ft.LZ4, framed, len(DATA)) == DATA
    raw_block = _pack(ft.LZ4_RAW, DATA)
    assert codecs.decompress(ft.LZ4, raw_block, len(DATA)) == DATA
    with pytest.raises(codecs.CodecError):
        codecs.decompress(ft.LZ4, framed, len(DATA) + 1)


def test_uncompressed_and_empty() -> None:
    assert codecs.decompress(ft.UNCOMPRESSED, DATA, len(DATA)) == DATA
    with pytest.raises(codecs.CodecError):
        codecs.decompress(ft.UNCOMPRESSED, DATA, len(DATA) - 1)
    assert codecs.decompress(ft.ZSTD, codecs.compress_zstd(b"", 3), 0) == b""


def test_gzip_members_and_zstd_level() -> None:
    first, second = _pack(ft.GZIP, DATA[:100]), _pack(ft.GZIP, DATA[100:])
    assert codecs.decompress(ft.GZIP, first + second, len(DATA)) == DATA
    assert len(codecs.compress_zstd(DATA, 19)) <= len(codecs.compress_zstd(DATA, 1))


def test_lzo_and_unknown_codecs_are_unsupported() -> None:
    with pytest.raises(codecs.UnsupportedCodec, match="LZO"):
        codecs.decompress(ft.LZO, b"x", 1)
    with pytest.raises(codecs.UnsupportedCodec):
        codecs.decompress(42, b"x", 1)
