"""One pass (issue 15): `validate` and `restore` read an unsigned blob once.

For one file, the test counts what each command does to its bytes — the bytes the
decompressor hands out, the bytes SHA-256 digests, the bytes CRC32C checks, and every
parse of a structure at an offset — and fails if any byte is done twice: the
decompressed bytes are the body's decoded size, the digest covers the header and the
chunks before END, the CRCs cover the header, each chunk's data and (1.1) the
compressed frame under the seal, each exactly once, and no structure is parsed twice at
one offset.
"""

from __future__ import annotations

import io
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import zstandard
from conftest import ROOT

from vmbtool import blob, chunks, codec, frame, tools
from vmbtool.blob import BlobReader
from vmbtool.blob import envelope as blob_envelope
from vmbtool.blob import pipe as blob_pipe
from vmbtool.blob import reader as blob_reader
from vmbtool.blob.consumers import Keep
from vmbtool.formats.chunk import CHUNK_HEADER_SIZE
from vmbtool.scenarios import SCENARIOS
from vmbtool.snapshot import ONE_PASS_MAX, SAVE_BUFFER_SIZE, restore_file, save_blob


@dataclass
class Tally:
    decompressed: int = 0
    digested: int = 0
    crc: int = 0
    parses: Counter = field(default_factory=Counter)
    read: int = 0


class CountingHash:
    def __init__(self, tally: Tally, inner: Any) -> None:
        self.tally, self.inner = tally, inner

    def update(self, data: bytes) -> None:
        self.tally.digested += len(data)
        self.inner.update(data)

    def copy(self) -> CountingHash:
        return CountingHash(self.tally, self.inner.copy())

    def digest(self) -> bytes:
        return self.inner.digest()


class CountingStream:
    def __init__(self, tally: Tally, inner: Any) -> None:
        self.tally, self.inner = tally, inner

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.tally.decompressed += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class CountingFile(io.BytesIO):
    def __init__(self, data: bytes, tally: Tally) -> None:
        super().__init__(data)
        self.tally = tally

    def read(self, n: int | None = -1) -> bytes:
        data = super().read(n)
        self.tally.read += len(data)
        return data


@pytest.fixture
def counted(monkeypatch):
    """Every decompressed byte, digested byte, CRC'd byte and parse, tallied."""
    import hashlib

    import google_crc32c

    tally = Tally()

    class Hashlib:
        @staticmethod
        def sha256(data: bytes = b"") -> CountingHash:
            tally.digested += len(data)
            return CountingHash(tally, hashlib.sha256(data))

    class Crc:
        @staticmethod
        def value(data: bytes) -> int:
            tally.crc += len(data)
            return google_crc32c.value(data)

        @staticmethod
        def extend(crc: int, data: bytes) -> int:
            tally.crc += len(data)
            return google_crc32c.extend(crc, data)

    real_stream, real_parse_at = blob_envelope.body_stream, codec.parse_at

    def body_stream(*args: Any, **kwargs: Any) -> Any:
        return CountingStream(tally, real_stream(*args, **kwargs))

    def parse_at(grammar: Any, data: Any, pos: int, where: str, offset: int = 0,
                 whole: str | None = None, scan: bool = False) -> Any:
        tally.parses[(id(grammar), offset, pos)] += 1
        return real_parse_at(grammar, data, pos, where, offset, whole, scan)

    monkeypatch.setattr(blob_reader, "hashlib", Hashlib)
    monkeypatch.setattr(blob_pipe, "hashlib", Hashlib)
    monkeypatch.setattr(chunks, "google_crc32c", Crc)
    monkeypatch.setattr(frame, "google_crc32c", Crc)
    monkeypatch.setattr(blob_envelope, "body_stream", body_stream)
    monkeypatch.setattr(codec, "parse_at", parse_at)
    return tally


@dataclass
class Expected:
    decoded: int  # the body's decoded size
    digested: int  # header + every framed chunk before END
    crc: int  # header before its CRC + every chunk's data + the sealed frame


def layout(data: bytes) -> Expected:
    """What reading `data` once takes, worked out apart from the reader."""
    with BlobReader(data, consumer=Keep()) as reader:
        for _ in reader.channels():
            pass
        header_size, frame_end = reader.header.header_size, reader.frame_end
        raws = reader.chunks
    body = zstandard.ZstdDecompressor().decompress(data[header_size:frame_end])
    end_at = raws[-1].offset
    return Expected(len(body), header_size + end_at,
                    header_size - 4 + sum(r.length for r in raws) + frame_end - header_size)


def small_blob() -> bytes:
    scenario = SCENARIOS["storage"].create(7)
    scenario.run(60)
    return save_blob(scenario, created_ns=0)


def piped_blob() -> bytes:
    """The benchmarks' channel of 5,000 packets of mixed, poorly compressible payloads:
    more than blob.PIPE_MIN (1 MiB) compressed, so the body is decompressed and
    digested on the pipe's threads, and within snapshot.ONE_PASS_MAX decoded."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import workloads
    finally:
        sys.path.pop(0)
    workloads.register()
    return save_blob(workloads.build_channel_workload(5000), created_ns=0,
                     chunk_size=SAVE_BUFFER_SIZE)


BLOBS = {"small": small_blob, "piped": piped_blob}


@pytest.fixture(scope="module")
def blobs() -> Any:
    """The blobs; the benchmarks' scenario stays registered (a restore picks its VSP by
    the offer) while this module's tests run, and no longer."""
    before = dict(SCENARIOS)
    yield {kind: build() for kind, build in BLOBS.items()}
    SCENARIOS.clear()
    SCENARIOS.update(before)


def assert_once(tally: Tally, expected: Expected, size: int) -> None:
    assert tally.decompressed == expected.decoded
    assert tally.digested == expected.digested
    assert tally.crc == expected.crc
    twice = {key: n for key, n in tally.parses.items() if n > 1}
    assert not twice, f"{len(twice)} structures parsed more than once"
    assert size <= tally.read <= size + 64  # the file, and the few bytes of two headers


@pytest.mark.parametrize("kind", sorted(BLOBS))
def test_restore_reads_every_byte_once(kind, blobs, counted):
    data = blobs[kind]
    expected = layout(data)
    assert (len(data) > blob.PIPE_MIN) == (kind == "piped")  # the threads, or not
    assert expected.decoded <= ONE_PASS_MAX
    counted.__init__()  # the layout's own read is not counted
    restored = restore_file(CountingFile(data, counted))
    assert_once(counted, expected, len(data))
    assert sum(counted.parses.values()) > 0
    assert save_blob(restored, created_ns=0, chunk_size=SAVE_BUFFER_SIZE) == data


@pytest.mark.parametrize("kind", sorted(BLOBS))
def test_validate_reads_every_byte_once(kind, blobs, counted, monkeypatch, tmp_path):
    data = blobs[kind]
    expected = layout(data)
    path = tmp_path / "blob.vmb"
    path.write_bytes(data)
    opened = []
    real_open = blob_reader.open_source

    def open_source(source: Any) -> Any:
        f, size = real_open(source)
        opened.append(source)
        with f:
            return CountingFile(f.read(), counted), size

    monkeypatch.setattr(blob_reader, "open_source", open_source)
    counted.__init__()
    verdict = tools.validate_file(str(path))
    assert verdict.valid, verdict.problems
    assert len(opened) == 1
    assert_once(counted, expected, len(data))


def test_a_structure_parsed_twice_is_seen(blobs, counted):
    """The parse tally can fail: a second restore of the same bytes parses them again."""
    data = blobs["small"]
    restore_file(data)
    restore_file(data)
    assert any(n > 1 for n in counted.parses.values())


def test_chunk_header_size_is_what_the_layout_counts():
    assert CHUNK_HEADER_SIZE == 12
