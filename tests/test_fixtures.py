"""The golden blobs of every format version (fixtures/v1: 1.0, fixtures/v1.1: 1.1): they
load, check, restore, re-save byte for byte and carry on. They are never regenerated here
(the recipes are each directory's make_fixtures.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import zstandard
from conftest import FIXTURE_DIR, FIXTURE_KEY

from vmbtool import codec
from vmbtool.blob import encode_blob, load_blob
from vmbtool.errors import BlobError
from vmbtool.formats.chunk import CHUNK_HEADER_SIZE, CHUNK_TYPES, ChunkType
from vmbtool.snapshot import DEFAULT_CHUNK_SIZE, check_file, restore_file, save_chunks
from vmbtool.status import NtStatus

VERSIONS = {FIXTURE_DIR / "v1": (1, 0), FIXTURE_DIR / "v1.1": (1, 1)}
FIXTURES = FIXTURE_DIR / "v1"
BLOBS = sorted(p for directory in VERSIONS for p in directory.glob("*.vmb"))
EXPECTED = {"storage.vmb": "storage", "network.vmb": "network", "pipe.vmb": "pipe",
            "storage-signed.vmb": "storage", "pipe-plain.vmb": "pipe"}
# the recipe's fixed inputs (make_fixtures.py)
SEED, STEPS, CREATED_NS, LEVEL = 11, 120, 1_700_000_000_000_000_000, 3


def key_for(path: Path) -> bytes | None:
    return FIXTURE_KEY if path.stem.endswith("-signed") else None


def load(path: Path):
    return load_blob(str(path), key=key_for(path))


def chunk_stream(data: bytes, header) -> bytes:
    """The decompressed body, seal and signature frames excluded."""
    end = len(data) - (44 if key_for_header(header) else 0)
    if header.format_minor >= 1 and str(header.compression) == "zstd":
        end -= 16
    body = data[header.header_size:end]
    if str(header.compression) == "none":
        return body
    return zstandard.ZstdDecompressor().decompressobj().decompress(body)


def key_for_header(header) -> bool:
    return bool(header.flags & 1)


def resave(path: Path) -> bytes:
    """Restore the blob as `vmbtool restore` does (`restore_file`) and save the restored
    scenario with the header's own settings (and note, as load_blob reads them)."""
    blob = load(path)
    header = blob.header
    restored = restore_file(str(path), key_for(path))
    level = None if str(header.compression) == "none" else header.level
    return encode_blob(save_chunks(restored, DEFAULT_CHUNK_SIZE, minor=header.format_minor,
                                   note=blob.note),
                       len(restored.servers),
                       level=level, key=key_for(path), created_ns=header.created_ns,
                       writer_version=header.writer_version, minor=header.format_minor)


def test_the_fixture_set_is_complete():
    assert sorted(p.name for p in (FIXTURE_DIR / "v1").glob("*.vmb")) == sorted(
        set(EXPECTED) - {"pipe-plain.vmb"})
    assert sorted(p.name for p in (FIXTURE_DIR / "v1.1").glob("*.vmb")) == sorted(EXPECTED)
    assert len(FIXTURE_KEY) == 32
    assert (FIXTURE_DIR / "v1.1" / "test-key").read_bytes() == FIXTURE_KEY


@pytest.mark.parametrize("path", BLOBS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture_loads_and_is_what_the_recipe_made(path):
    blob = load(path)
    header = blob.header
    assert (header.format_major, header.format_minor) == VERSIONS[path.parent]
    assert header.created_ns == CREATED_NS
    plain = path.name.endswith("-plain.vmb")
    assert str(header.compression) == ("none" if plain else "zstd")
    assert header.level == (0 if plain else LEVEL)
    assert len(blob.stats) == (len(blob.channels) if header.format_minor >= 1 else 0)
    assert blob.signed == (key_for(path) is not None)
    assert blob.scenario.scenario == EXPECTED[path.name]
    assert (blob.scenario.seed, blob.scenario.steps_taken) == (SEED, STEPS)
    assert header.channel_count == len(blob.channels) >= 1


@pytest.mark.parametrize("path", BLOBS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture_has_no_problems(path):
    """Validate's check (`check_file`) finds nothing, and counts what load_blob reads."""
    found = check_file(str(path), key_for(path))
    assert found.problems == []
    blob = load(path)
    assert (found.channels, found.packets) == (
        len(blob.channels), sum(len(saved.packets) for saved in blob.channels))


@pytest.mark.parametrize("path", BLOBS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture_chunks_re_encode_byte_for_byte(path):
    """crit-recode: every chunk's data parses and builds back to the same bytes."""
    blob = load(path)
    for raw in blob.chunks:
        grammar = CHUNK_TYPES[raw.type].grammar
        value = codec.parse(grammar, raw.data, CHUNK_TYPES[raw.type].name,
                            raw.offset + CHUNK_HEADER_SIZE)
        assert codec.build(grammar, value, CHUNK_TYPES[raw.type].name) == raw.data, raw.offset
    assert blob.chunks[-1].type == ChunkType.END


@pytest.mark.parametrize("path", BLOBS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_restored_fixture_re_saves_byte_identical(path):
    original = path.read_bytes()
    again = resave(path)
    header = load(path).header
    # the chunk streams first, so a difference names the chunk rather than zstd bytes
    assert chunk_stream(again, header) == chunk_stream(original, header)
    assert again == original


@pytest.mark.parametrize("path", BLOBS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_restored_fixture_carries_on(path):
    restored = restore_file(str(path), key_for(path))
    restored.start()
    restored.run(50)
    assert restored.steps_taken == STEPS + 50
    assert all(server.started for server in restored.servers)


@pytest.mark.parametrize("directory", VERSIONS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_signed_fixture_needs_its_key(directory):
    path = directory / "storage-signed.vmb"
    with pytest.raises(BlobError, match="give its key") as no_key:
        load_blob(str(path))
    assert no_key.value.status == NtStatus.UNSUCCESSFUL
    with pytest.raises(BlobError, match="HMAC does not match"):
        load_blob(str(path), key=bytes(32))
    with pytest.raises(BlobError, match="not signed"):
        load_blob(str(directory / "storage.vmb"), key=FIXTURE_KEY)


@pytest.mark.parametrize("directory", VERSIONS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_signed_and_unsigned_storage_fixtures_hold_the_same_state(directory):
    signed = load(directory / "storage-signed.vmb")
    plain = load(directory / "storage.vmb")
    assert [c.data for c in signed.chunks[:-1]] == [c.data for c in plain.chunks[:-1]]


@pytest.mark.skipif(shutil.which("zstd") is None, reason="the zstd command is not installed")
@pytest.mark.parametrize("path", [p for p in BLOBS if not p.name.endswith("-plain.vmb")],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_zstd_command_reads_the_body(path, tmp_path):
    """Something nobody here wrote: `zstd -d` decompresses the body (it skips the seal
    and signature frames) to the chunk stream vmbtool reads."""
    data = path.read_bytes()
    header = load(path).header
    body = tmp_path / "body.zst"
    body.write_bytes(data[header.header_size:])
    result = subprocess.run(["zstd", "-d", "-c", "-q", str(body)], capture_output=True,
                            check=True)
    assert result.stdout == chunk_stream(data, header)
    # a CHANNEL chunk first, or the NOTE chunk (1.1) before it
    assert result.stdout[:2] in ((1).to_bytes(2, "little"), (0x11).to_bytes(2, "little"))
