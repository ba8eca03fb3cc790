"""Corruption campaign over the golden blobs in fixtures/v1: truncations, bit flips, byte
overwrites, chunks swapped / duplicated / dropped, and length and count fields set to 0,
to just past the data and to 2^32-1.  Every damaged blob is refused by the library paths
the CLI uses:

- `blob.load_blob` raises a VmbtoolError (never another exception) whose `where` names a
  field path or a byte offset;
- `tools.validate_file` gives `valid=False` with a located problem;
- the decode path (`jsonview.decode(load_blob(...))`, what `decode` and `inspect` run);
- the restore path (`tools.restore_and_run` -> `snapshot.restore_file`): it raises a
  VmbtoolError and the fresh server channel whose restore failed is left in its pristine
  allocated state (compared with a never-touched channel built the same way).

Cheap checks (load_blob, then validate when it loads) run on every case, with a cache
for re-parsing untouched chunks (`parse_memo`); the decode and restore paths run, without
the cache, on a spread of each kind of case.  A sample also goes through the installed
`vmbtool` executable.  network.vmb (49 KB, 3 channels, ~15 ms a load) gets fewer random
cases than the others (400 flips, 150 overwrites, 500+ truncation lengths) to keep the
file near 20 s; VMBTOOL_CAMPAIGN_SCALE=5 runs 2,000 flips on it.  The format 1.1 golden
blobs (fixtures/v1.1) get flips, overwrites and truncations too, with nothing allowed.

Damage the END digest would catch is also re-sealed (chunk CRC, END digest and counts,
header CRC, compression and signature recomputed by `seal` below, an implementation of
FORMAT.md independent of the library's writer) so the deeper check is what refuses it.

Known issue (format 1.0, zstd): a few bit flips inside the compressed encoding leave the
decompressed body byte-identical (unused zstd frame-header and entropy-table bits), so the
blob still loads.  `accepted_flip_is_allowed` admits exactly those, by proving the body is
unchanged, and the tests count them; anything else that loads is a failure.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import io
import os
import random
import re
import struct
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import google_crc32c
import pytest
import zstandard

from vmbtool import codec, jsonview, report
from vmbtool.blob import load_blob
from vmbtool.chunks import split_chunks
from vmbtool.errors import VmbtoolError
from vmbtool.scenarios import SCENARIOS
from vmbtool.scenarios.base import Scenario
from vmbtool.tools import restore_and_run, validate_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import EXE, FIXTURE_DIR, FIXTURE_KEY, FIXTURE_KEY_FILE
from test_restore_atomic import observable  # noqa: E402

FIXTURES = FIXTURE_DIR / "v1"
NAMES = ("storage", "network", "pipe", "storage-signed")
SEED = 20260101

HEADER_SIZE = 56
CHUNK_HEADER = struct.Struct("<HBBII")  # type, flags, reserved, length, crc32c
SIGNATURE_SIZE = 44
SIG_PREFIX = struct.pack("<II4s", 0x184D2A5A, 36, b"HMS1")
T_CHANNEL, T_RING, T_GPADLS, T_PACKET, T_INCOMING, T_CHANNEL_END = 1, 2, 3, 4, 5, 6
T_SCENARIO, T_END = 0x10, 0xFF
U32_MAX = 0xFFFF_FFFF

# a field path or a byte offset: what every error's `where` must name
WHERE = re.compile(r"offset \d+|chunk@\d+|^header\.|^channels\[\d+\]|^scenario\b|^end\.|"
                   r"^blob\.end\b|^signature\b|^body\b")

# per fixture: random cases (flips, overwrites); network.vmb (49 KB, 3 channels) costs
# ~15 ms a load, so it gets fewer; VMBTOOL_CAMPAIGN_SCALE multiplies them all
SCALE = float(os.environ.get("VMBTOOL_CAMPAIGN_SCALE", "1"))
FLIPS = {"storage": 2000, "pipe": 2000, "storage-signed": 2000, "network": 400}
RESIGNED_FLIPS = 600  # storage-signed: flip, then sign again, so the HMAC is not the check
OVERWRITES = {"storage": 500, "pipe": 500, "storage-signed": 500, "network": 150}
TRUNCATIONS_BIG = 500  # an even spread of lengths for blobs over BIG bytes
BIG = 16384
DEEP_SAMPLE = {"storage": 8, "pipe": 8, "storage-signed": 8, "network": 3}


def scaled(n: int) -> int:
    return max(1, int(n * SCALE))


# -- the fixtures, parsed once -----------------------------------------------------------
@dataclass
class Fixture:
    name: str
    path: Path
    data: bytes
    key: bytes | None
    header: bytes
    body: bytes  # decompressed chunk stream
    chunks: list[bytes]  # framed, END chunk last
    level: int
    scenario: str
    seed: int
    stats: Counter = field(default_factory=Counter)

    @property
    def body_chunks(self) -> list[bytes]:
        return self.chunks[:-1]

    def types(self, chunks: list[bytes] | None = None) -> list[int]:
        return [ctype(c) for c in (self.chunks if chunks is None else chunks)]


def ctype(chunk: bytes) -> int:
    return int.from_bytes(chunk[:2], "little")


def decompress(compressed: bytes) -> bytes:
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(compressed),
                                                        read_across_frames=True)
    return reader.read()


@functools.cache
def fixture(name: str) -> Fixture:
    """A golden blob by name: `storage` is fixtures/v1/storage.vmb, `v1.1/pipe` is
    fixtures/v1.1/pipe.vmb."""
    path = FIXTURES.parent / (name if "/" in name else f"v1/{name}")
    path = path.with_name(path.name + ".vmb")
    data = path.read_bytes()
    key = FIXTURE_KEY if name.endswith("-signed") else None
    end = len(data) - (SIGNATURE_SIZE if key else 0)
    header = data[:HEADER_SIZE]
    body = decompress(data[HEADER_SIZE:end]) if header[20] else data[HEADER_SIZE:end]
    chunks = [body[r.offset:r.offset + 12 + len(r.data)] for r in split_chunks(body)]
    blob = load_blob(data, key)
    fx = Fixture(name, path, data, key, header, body, chunks, blob.header.level,
                 blob.scenario.scenario, blob.scenario.seed)
    assert fx.types()[-1] == T_END and fx.types()[-2] == T_SCENARIO
    return fx


# -- an independent writer: frame, seal, sign (FORMAT.md) ----------------------------------
def frame(chunk_type: int, data: bytes, flags: int = 1) -> bytes:
    return CHUNK_HEADER.pack(chunk_type, flags, 0, len(data), google_crc32c.value(data)) + data


def reframe(chunk: bytes, data: bytes) -> bytes:
    return frame(ctype(chunk), data, chunk[2])


def with_crc(header: bytes) -> bytes:
    """A 56-byte header with its header_crc32c recomputed."""
    return header[:52] + struct.pack("<I", google_crc32c.value(header[:52]))


def header_with(fx: Fixture, offset: int, value: bytes, fix_crc: bool = True) -> bytes:
    header = fx.header[:offset] + value + fx.header[offset + len(value):]
    return with_crc(header) if fix_crc else header


def sign(fx: Fixture, data: bytes) -> bytes:
    if fx.key is None:
        return data
    return data + SIG_PREFIX + hmac.new(fx.key, data, hashlib.sha256).digest()


def pack(fx: Fixture, body: bytes, header: bytes | None = None) -> bytes:
    """Header + compressed body (+ signature): the chunk stream taken as it is."""
    header = fx.header if header is None else header
    return sign(fx, header + zstandard.ZstdCompressor(level=fx.level).compress(body))


def seal(fx: Fixture, chunks: list[bytes], header: bytes | None = None, **end: int) -> bytes:
    """A whole blob around `chunks` (END excluded): END counts and digest, compression and
    signature recomputed; `end` overrides the counted values."""
    header = fx.header if header is None else header
    types = [ctype(c) for c in chunks]
    counts = {"channel_count": types.count(T_CHANNEL), "chunk_count": len(chunks),
              "packet_count": types.count(T_PACKET), **end}
    digest = hashlib.sha256(header + b"".join(chunks)).digest()
    end_chunk = frame(T_END, struct.pack("<III", counts["channel_count"], counts["chunk_count"],
                                         counts["packet_count"]) + digest)
    return pack(fx, b"".join(chunks) + end_chunk, header)


def put(data: bytes, offset: int, value: bytes) -> bytes:
    assert 0 <= offset and offset + len(value) <= len(data), (offset, len(data))
    return data[:offset] + value + data[offset + len(value):]


# -- the known issue, in one place ----------------------------------------------------------
def accepted_flip_is_allowed(fx: Fixture, mutated: bytes) -> bool:
    """A damaged blob that still loads is allowed only when its header and signature are
    the original's and its body decompresses to exactly the original chunk stream (the
    damage sat in bits zstd does not read).  Tighten here once the format checksums the
    compressed bytes."""
    if int.from_bytes(fx.header[10:12], "little") >= 1:
        return False  # format 1.1 seals the compressed bytes: no flip goes unseen
    if mutated[:HEADER_SIZE] != fx.header or len(mutated) != len(fx.data):
        return False
    end = len(mutated) - (SIGNATURE_SIZE if fx.key else 0)
    if mutated[end:] != fx.data[end:]:
        return False
    try:
        body = decompress(mutated[HEADER_SIZE:end])
    except zstandard.ZstdError:
        return False
    return body == fx.body


# -- the checks ----------------------------------------------------------------------------
def load_error(data: bytes, key: bytes | None) -> VmbtoolError | None:
    """load_blob's verdict: None when it loads; a VmbtoolError naming where otherwise.
    Any other exception escapes and fails the test."""
    try:
        load_blob(data, key)
    except VmbtoolError as exc:
        assert WHERE.search(exc.where), f"unlocated error: {exc}"
        assert str(exc).startswith("bad blob at ") or " at " in str(exc)
        return exc
    return None


def check_random(fx: Fixture, mutated: bytes, kind: str) -> None:
    """A random case: refused by load_blob, or allowed by the known issue (then it is the
    original blob in all but unread bits, and validate says so)."""
    error = load_error(mutated, fx.key)
    if error is not None:
        fx.stats[f"{kind} rejected"] += 1
        fx.stats[f"{kind} at {error.where.split(' ')[0].split('.')[0].split('@')[0]}"] += 1
        return
    assert accepted_flip_is_allowed(fx, mutated), f"{kind}: a damaged {fx.name} loads"
    assert validate_file(mutated, fx.key).valid
    fx.stats[f"{kind} allowed (body identical)"] += 1


@contextlib.contextmanager
def parse_memo():
    """Serve `codec.parse` from a cache for byte-identical input (same grammar, bytes,
    path and offset).  Parsing is a pure function of those, so every library check still
    runs and decides as before; only re-parsing the chunks a random case left untouched is
    skipped.  Used for the thousands of random cases, never for the deep checks."""
    original = codec.parse
    cache: dict = {}

    def parse(grammar, data, where, offset=0, exact=True):
        key = (id(grammar), bytes(data), where, offset, exact)
        value = cache.get(key)
        if value is None:
            value = cache[key] = original(grammar, data, where, offset, exact)
        return value

    codec.parse = parse
    try:
        yield
    finally:
        codec.parse = original


@contextlib.contextmanager
def recording_allocations():
    """Every server channel restore allocates, with how to build its never-touched twin."""
    allocated: list[tuple[str, object, int, object]] = []
    original = Scenario.allocate_server

    def allocate_server(self, index):
        channel = original(self, index)
        allocated.append((self.name, self.instance, index, channel))
        return channel

    Scenario.allocate_server = allocate_server
    try:
        yield allocated, original
    finally:
        Scenario.allocate_server = original


def restore_refused(data: bytes, key: bytes | None) -> VmbtoolError:
    """The CLI's restore path refuses the blob; the channel whose restore failed is left as
    freshly allocated, and nothing else is returned."""
    with recording_allocations() as (allocated, original):
        try:
            restore_and_run(data, 0, key)
        except VmbtoolError as exc:
            error = exc
        else:
            raise AssertionError("restore accepted a damaged blob")
        for name, instance, index, channel in allocated:
            if channel.restore_error is not None or channel.initializing:
                # a twin offering the same device instance (restore allocates before
                # the scenario chunk, with its seed, is read)
                twin = original(SCENARIOS[name].restoring(instance), index)
                mine, theirs = observable(channel), observable(twin)
                # offers of the channels restored before it share its bus
                assert channel.config.offer_key not in channel.bus.offers
                mine.pop("__offers__"), theirs.pop("__offers__")
                assert mine == theirs, f"restore left state behind in channel {index}"
                PRISTINE_CHECKS[f"channels[{index}]"] += 1
    assert WHERE.search(error.where), f"unlocated error: {error}"
    return error


PRISTINE_CHECKS: Counter = Counter()  # failed channel restores found pristine


def check_deep(fx: Fixture, mutated: bytes, *, structural: bool | None = True) -> str:
    """Every library path the CLI uses refuses the blob.

    structural: True, load_blob must refuse it; False, it must load (a semantic lie the
    checks catch); None, either.  Returns the where of the first problem."""
    error = load_error(mutated, fx.key)
    if structural is True:
        assert error is not None, f"a damaged {fx.name} loads"
    elif structural is False:
        assert error is None, f"expected to load: {error}"
    verdict = validate_file(mutated, fx.key)
    assert not verdict.valid
    where, _why = verdict.problems[0]
    assert WHERE.search(where), verdict.line()
    if error is not None:
        assert where == error.where
        # decode reads through load_blob
        with pytest.raises(VmbtoolError) as caught:
            jsonview.decode(load_blob(mutated, fx.key))
        assert caught.value.where == error.where
    else:
        # decode and inspect show a blob that parses, lies included: they must not crash
        jsonview.decode(load_blob(mutated, fx.key))
        report.stream_summary(mutated, fx.key, io.StringIO(), packets=True, rings=True,
                              gpadls=True, hexdump_rings=True)
    restore_refused(mutated, fx.key)
    fx.stats["deep checked"] += 1
    return where


# -- tests -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_the_resealer_reproduces_the_fixture(name):
    """`seal` writes the fixture byte for byte, so a refusal comes from the edit alone."""
    fx = fixture(name)
    assert seal(fx, fx.body_chunks) == fx.data
    assert load_error(fx.data, fx.key) is None
    assert validate_file(fx.data, fx.key).valid


@pytest.mark.parametrize("name", NAMES)
def test_every_truncation_is_refused(name):
    fx = fixture(name)
    size = len(fx.data)
    if size <= BIG:
        lengths = list(range(size))
    else:
        step = size / TRUNCATIONS_BIG
        lengths = sorted({int(i * step) for i in range(TRUNCATIONS_BIG)} | set(range(64))
                         | set(range(size - 64, size)))
    with parse_memo():
        for length in lengths:
            error = load_error(fx.data[:length], fx.key)
            assert error is not None, f"{name} truncated to {length} bytes loads"
            fx.stats["truncation rejected"] += 1
    assert fx.stats["truncation rejected"] == len(lengths) >= min(size, 500)
    rng = random.Random(f"{SEED}/{name}/truncate")
    for length in rng.sample(lengths, DEEP_SAMPLE[name]) + [0, HEADER_SIZE, size - 1]:
        check_deep(fx, fx.data[:length])
    if fx.key is not None:
        # signed again after the cut: what the signature hid, the body checks refuse
        for length in range(HEADER_SIZE, size - SIGNATURE_SIZE, 7):
            cut = sign(fx, fx.data[:length])
            assert load_error(cut, fx.key) is not None, length
            fx.stats["truncation re-signed rejected"] += 1


@pytest.mark.parametrize("name", NAMES)
def test_random_bit_flips_are_refused(name):
    fx = fixture(name)
    rng = random.Random(f"{SEED}/{name}/flip")
    bits = len(fx.data) * 8
    flips = scaled(FLIPS[name])
    sample = set(rng.sample(range(flips), DEEP_SAMPLE[name]))
    deep = []
    with parse_memo():
        for n in range(flips):
            bit = rng.randrange(bits)
            mutated = bytearray(fx.data)
            mutated[bit // 8] ^= 1 << (bit % 8)
            mutated = bytes(mutated)
            check_random(fx, mutated, "flip")
            if n in sample and not accepted_flip_is_allowed(fx, mutated):
                deep.append(mutated)
    for mutated in deep:
        check_deep(fx, mutated)
    rejected = fx.stats["flip rejected"]
    allowed = fx.stats["flip allowed (body identical)"]
    assert rejected + allowed == flips
    assert allowed <= flips // 100  # a rare accident of the encoding, not a hole
    print(f"\n{name}: {flips} flips, {rejected} rejected, {allowed} allowed (body identical)")


def test_random_bit_flips_in_a_re_signed_blob_are_refused():
    """storage-signed with the key: flip, then sign again, so the HMAC passes and the
    header CRC, zstd, chunk CRCs and END digest are what refuse the flip."""
    fx = fixture("storage-signed")
    rng = random.Random(f"{SEED}/resigned/flip")
    end = len(fx.data) - SIGNATURE_SIZE
    flips = scaled(RESIGNED_FLIPS)
    deep = []
    with parse_memo():
        for n in range(flips):
            bit = rng.randrange(end * 8)
            mutated = bytearray(fx.data[:end])
            mutated[bit // 8] ^= 1 << (bit % 8)
            mutated = sign(fx, bytes(mutated))
            check_random(fx, mutated, "re-signed flip")
            if n < DEEP_SAMPLE[fx.name] and not accepted_flip_is_allowed(fx, mutated):
                deep.append(mutated)
    for mutated in deep:
        check_deep(fx, mutated)
    rejected = fx.stats["re-signed flip rejected"]
    allowed = fx.stats["re-signed flip allowed (body identical)"]
    assert rejected + allowed == flips and allowed <= flips // 100


@pytest.mark.parametrize("name", NAMES)
def test_random_byte_range_overwrites_are_refused(name):
    fx = fixture(name)
    rng = random.Random(f"{SEED}/{name}/overwrite")
    count = scaled(OVERWRITES[name])
    deep = []
    with parse_memo():
        for n in range(count):
            start = rng.randrange(len(fx.data))
            length = rng.randint(1, min(64, len(fx.data) - start))
            while True:
                value = rng.randbytes(length)
                if value != fx.data[start:start + length]:
                    break
            mutated = put(fx.data, start, value)
            check_random(fx, mutated, "overwrite")
            if n < DEEP_SAMPLE[name] and not accepted_flip_is_allowed(fx, mutated):
                deep.append(mutated)
    for mutated in deep:
        check_deep(fx, mutated)
    assert fx.stats["overwrite rejected"] + fx.stats["overwrite allowed (body identical)"] \
        == count


V11 = {"v1.1/storage": 600, "v1.1/pipe": 600, "v1.1/pipe-plain": 600,
       "v1.1/storage-signed": 600, "v1.1/network": 100}


@pytest.mark.parametrize("name", sorted(V11))
def test_format_1_1_refuses_every_flip_truncation_and_overwrite(name):
    """The 1.1 golden blobs (the body sealed by a CRC32C of its compressed bytes, or
    stored uncompressed): the known 1.0 issue is gone, nothing damaged is allowed."""
    fx = fixture(name)
    rng = random.Random(f"{SEED}/{name}")
    count = scaled(V11[name])
    size = len(fx.data)
    with parse_memo():
        for _ in range(count):
            bit = rng.randrange(size * 8)
            mutated = bytearray(fx.data)
            mutated[bit // 8] ^= 1 << (bit % 8)
            check_random(fx, bytes(mutated), "flip")
        for _ in range(count // 4):
            start = rng.randrange(size)
            value = rng.randbytes(rng.randint(1, min(32, size - start)))
            if value != fx.data[start:start + len(value)]:
                check_random(fx, put(fx.data, start, value), "overwrite")
        step = max(1, size // 600)
        for length in range(0, size, step):
            check_random(fx, fx.data[:length], "truncation")
    assert not any("allowed" in k for k in fx.stats), fx.stats
    assert fx.stats["flip rejected"] == count


# -- structural damage: one helper refuses a list of cases ----------------------------------
@dataclass
class Case:
    what: str
    data: bytes
    structural: bool | None = True  # True: load_blob refuses it; None: load or validate


DEEP_LIMIT = {"storage": 5, "pipe": 5, "storage-signed": 5, "network": 2}


def refuse_all(fx: Fixture, cases: list[Case]) -> dict[str, str]:
    """Every case refused: by load_blob, or (a lie that parses) by validate.  A spread of
    them also through validate, decode and restore without the parse cache (check_deep).
    Returns where each was refused."""
    wheres: dict[str, str] = {}
    with parse_memo():
        for case in cases:
            assert case.data != fx.data, case.what
            error = load_error(case.data, fx.key)
            if case.structural:
                assert error is not None, f"{case.what}: the damaged {fx.name} blob loads"
            if error is None:
                verdict = validate_file(case.data, fx.key)
                assert not verdict.valid, f"{case.what}: the damaged {fx.name} blob is valid"
                where = verdict.problems[0][0]
                assert WHERE.search(where), verdict.line()
                fx.stats["structural cases refused by validate"] += 1
            else:
                where = error.where
                fx.stats["structural cases refused by load_blob"] += 1
            wheres[case.what] = where
    limit = DEEP_LIMIT[fx.name]
    for case in cases[::max(1, len(cases) // limit)][:limit]:
        check_deep(fx, case.data, structural=case.structural)
    return wheres


# -- chunks swapped, duplicated, dropped --------------------------------------------------
def chunk_edits(fx: Fixture) -> list[tuple[str, list[bytes]]]:
    """Rearranged chunk lists (END excluded), each different from the original."""
    body = fx.body_chunks
    n = len(body)
    types = fx.types(body)
    edits: list[tuple[str, list[bytes]]] = []
    rng = random.Random(f"{SEED}/{fx.name}/chunks")
    # every position for small blobs; for network, the ends, a sample and every chunk of
    # the channels' skeleton (CHANNEL, GPADLS, INCOMING, CHANNEL_END)
    positions = list(range(n)) if n <= 40 else sorted(
        set(range(6)) | set(range(n - 4, n)) | set(rng.sample(range(n), 6))
        | {i for i, t in enumerate(types) if t in (T_CHANNEL, T_CHANNEL_END, T_GPADLS,
                                                   T_INCOMING)})
    for i in positions:
        edits.append((f"drop chunk {i} ({types[i]:#x})", body[:i] + body[i + 1:]))
        edits.append((f"duplicate chunk {i} ({types[i]:#x})", body[:i + 1] + body[i:]))
        if i + 1 < n:
            swapped = list(body)
            swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
            edits.append((f"swap chunks {i} and {i + 1}", swapped))
    scenario = types.index(T_SCENARIO)
    edits.append(("scenario chunk twice", body + [body[scenario]]))
    edits.append(("a channel chunk after the scenario", body + [body[0]]))
    channel_starts = [i for i, t in enumerate(types) if t == T_CHANNEL]
    channel_ends = [i for i, t in enumerate(types) if t == T_CHANNEL_END]
    first = body[channel_starts[0]:channel_ends[0] + 1]
    edits.append(("channel 0 twice", first + body))
    edits.append(("a channel cut short of its end", body[:channel_ends[0]]
                  + body[channel_ends[0] + 1:]))
    edits.append(("no channels at all", body[scenario:]))
    edits.append(("nothing but the scenario chunk", [body[scenario]]))
    edits.append(("empty body", []))
    if len(channel_starts) > 1:
        second = body[channel_starts[1]:channel_ends[1] + 1]
        rest = body[channel_ends[1] + 1:]
        edits.append(("channels 0 and 1 swapped", second + first + rest))
        edits.append(("chunk of channel 1 inside channel 0",
                      body[:channel_ends[0]] + [body[channel_starts[1] + 1]]
                      + body[channel_ends[0]:]))
    return [(what, chunks) for what, chunks in edits if chunks != body]


def backlog_packet(chunk: bytes) -> bool:
    """A PACKET chunk of a packet in the backlog (PacketRecord: u32 lib_size, u64 txid,
    u8 state; state 1 is backlog)."""
    return ctype(chunk) == T_PACKET and chunk[12 + 4 + 8] == 1


@pytest.mark.parametrize("name", NAMES)
def test_chunks_swapped_duplicated_dropped(name):
    """Each edit twice: with the original END chunk (its digest or counts refuse it), and
    re-sealed (END digest and counts right), so the chunk order, the channel structure,
    the header's channel_count or the semantic checks must refuse it."""
    fx = fixture(name)
    body = fx.body_chunks
    edits = chunk_edits(fx)
    assert len(edits) >= 20
    cases = []
    for what, chunks in edits:
        cases.append(Case(f"{what}, END kept", pack(fx, b"".join(chunks) + fx.chunks[-1])))
        resealed = seal(fx, chunks)
        moved = [i for i in range(len(body)) if i < len(chunks) and chunks[i] != body[i]]
        if what.startswith("swap") and all(backlog_packet(body[i]) for i in moved):
            # two backlog packets swapped and sealed again: the backlog's order is state
            # the format holds as written (a VSP may send in any order): a different
            # valid blob, not damage
            assert validate_file(resealed, fx.key).valid, what
            fx.stats["re-sealed backlog swaps (a different valid state)"] += 1
            continue
        cases.append(Case(f"{what}, re-sealed", resealed, None))
    wheres = refuse_all(fx, cases)
    deeper = [w for what, w in wheres.items() if what.endswith("re-sealed")]
    assert len(deeper) >= 20
    # what refused the re-sealed edits was the structure, not a checksum
    assert not any("crc32c" in w or "digest" in w for w in deeper), deeper


@pytest.mark.parametrize("name", NAMES)
def test_end_chunk_damage(name):
    fx = fixture(name)
    body, end = b"".join(fx.body_chunks), fx.chunks[-1]
    refuse_all(fx, [
        Case("no END chunk", pack(fx, body)),
        Case("END twice", pack(fx, body + end + end)),
        Case("a chunk after END", pack(fx, body + end + fx.chunks[0])),
        Case("END first", pack(fx, end + body)),
        Case("END before the scenario",
             pack(fx, b"".join(fx.body_chunks[:-1]) + end + fx.body_chunks[-1])),
        Case("END digest zeroed", pack(fx, body + reframe(end, end[12:24] + bytes(32)))),
        Case("END with a byte left over", pack(fx, body + reframe(end, end[12:] + b"\0"))),
        Case("END one byte short", pack(fx, body + reframe(end, end[12:-1]))),
        # the END chunk's own header is under no digest: its flags byte must be checked
        Case("END optional (flags 0)", pack(fx, body + frame(T_END, end[12:], 0))),
        Case("END as an unknown optional chunk", pack(fx, body + frame(0x0777, end[12:], 0))),
    ])


@pytest.mark.parametrize("name", ["storage", "network"])
def test_scenario_chunk_before_the_channels(name):
    fx = fixture(name)
    body = fx.body_chunks
    scenario = fx.types(body).index(T_SCENARIO)
    moved = [body[scenario]] + body[:scenario] + body[scenario + 1:]
    mutated = seal(fx, moved)
    assert load_error(mutated, fx.key) is not None
    assert not validate_file(mutated, fx.key).valid


def packet_record_edit(chunk: bytes, *, save=None, routine=None) -> bytes:
    """A PACKET chunk with its SaveBuf or completion routine name replaced, re-framed
    (PacketRecord: u32 lib_size, PacketContext, u32 save_size, save_buf)."""
    data = chunk[12:]
    lib_size = struct.unpack_from("<I", data)[0]
    lib = data[4:4 + lib_size]
    old_save = data[8 + lib_size:]
    if routine is not None:
        length = lib[27]
        assert len(routine) == length
        lib = lib[:28] + routine + lib[28 + length:]
    save = old_save if save is None else save
    return reframe(chunk, struct.pack("<I", lib_size) + lib + struct.pack("<I", len(save))
                   + save)


def test_restore_failure_inside_a_channel_leaves_it_pristine():
    """Lies that parse and pass the blob-level checks but that RestoreFromBuffer or the
    VSP's restore callback refuses: the CLI's restore path fails, and the channel whose
    restore failed is exactly a freshly allocated one (the channels restored before it
    are discarded with the scenario)."""
    storage, network = fixture("storage"), fixture("network")
    s_body, n_body = storage.body_chunks, network.body_chunks
    s_packets = [i for i, c in enumerate(s_body) if ctype(c) == T_PACKET]
    n_packets = [i for i, c in enumerate(n_body) if ctype(c) == T_PACKET
                 and not backlog_packet(c) and len(c) > 12]
    starts = [i for i, t in enumerate(network.types(n_body)) if t == T_CHANNEL]
    ends = [i for i, t in enumerate(network.types(n_body)) if t == T_CHANNEL_END]

    def replaced(body, index, chunk):
        out = list(body)
        out[index] = chunk
        return out

    k = s_packets[2]
    record = s_body[k][12:]
    transfer_state = record[8 + struct.unpack_from("<I", record)[0]:]
    assert len(transfer_state) == 10  # storage's TRANSFER_STATE
    last_channel_packet = max(i for i in n_packets if i > starts[2])
    save = n_body[last_channel_packet][12:]
    lib_size = struct.unpack_from("<I", save)[0]
    receive = save[8 + lib_size:]
    assert len(receive) == 8  # RECEIVE_STATE: u16 queue, u16 section, u32 frame_length
    cases = {
        "channels 0 and 1 swapped": (network, network.body_chunks[starts[1]:ends[1] + 1]
                                     + n_body[:starts[1]] + n_body[ends[1] + 1:],
                                     "channels[0]"),
        "a SaveBuf one byte short": (storage, replaced(s_body, k, packet_record_edit(
            s_body[k], save=transfer_state[:-1])), "channels[0].packets[txid="),
        "a completion routine the VSP never had": (storage, replaced(
            s_body, k, packet_record_edit(s_body[k], routine=b"x" * s_body[k][12 + 4 + 27])),
            "channels[0].packets[txid="),
        "channel 2's RECEIVE names another queue": (network, replaced(
            n_body, last_channel_packet, packet_record_edit(
                n_body[last_channel_packet], save=struct.pack("<H", 7) + receive[2:])),
            "channels[2].packets[txid="),
    }
    before = sum(PRISTINE_CHECKS.values())
    for what, (fx, chunks, where) in cases.items():
        mutated = seal(fx, chunks)
        found = check_deep(fx, mutated, structural=False)
        channel, _, field_path = where.partition(".")
        # restore_file names the channel, then RestoreFromBuffer's own path ("channel....")
        assert found.startswith(channel) and field_path in found, (what, found)
        error = restore_refused(mutated, fx.key)
        assert error.where.startswith(channel) and field_path in error.where, (what, error)
    # the VSP's refusals happen inside RestoreFromBuffer (the swapped channels may be
    # refused earlier, by the blob-level checks, before any channel is allocated)
    assert sum(PRISTINE_CHECKS.values()) - before >= 2 * (len(cases) - 1)


# -- length and count fields ------------------------------------------------------------
def counts_of(fx: Fixture) -> dict[str, int]:
    types = fx.types(fx.body_chunks)
    return {"channel_count": types.count(T_CHANNEL), "chunk_count": len(types),
            "packet_count": types.count(T_PACKET)}


@pytest.mark.parametrize("name", NAMES)
def test_end_and_header_counts(name):
    """END channel_count / chunk_count / packet_count and the header's channel_count set to
    0, one past the truth and 2^32-1, everything else re-sealed."""
    fx = fixture(name)
    truth = counts_of(fx)
    cases, expect = [], {}
    for count, actual in truth.items():
        for value in (0, actual + 1, U32_MAX):
            what = f"end.{count} = {value}"
            cases.append(Case(what, seal(fx, fx.body_chunks, **{count: value})))
            expect[what] = f"end.{count}"
    for value in (0, truth["channel_count"] + 1, U32_MAX):
        header = header_with(fx, 48, struct.pack("<I", value))
        what = f"header.channel_count = {value}"
        cases.append(Case(what, seal(fx, fx.body_chunks, header=header)))
        expect[what] = "header.channel_count"
        # header CRC right, the END digest of the old header
        cases.append(Case(f"{what}, old digest", pack(fx, b"".join(fx.chunks), header=header)))
        expect[f"{what}, old digest"] = ("header.channel_count", "end.digest")
        # header CRC stale
        what = f"{what}, header CRC stale"
        cases.append(Case(what, seal(fx, fx.body_chunks, header=header_with(
            fx, 48, struct.pack("<I", value), fix_crc=False))))
        expect[what] = "header.header_crc32c"  # seal() signs it again
    wheres = refuse_all(fx, cases)
    for what, where in wheres.items():
        assert where.startswith(expect[what]), (what, where)


@pytest.mark.parametrize("name", NAMES)
def test_header_fields(name):
    fx = fixture(name)
    size = len(fx.data)
    cases = []
    for value in (0, HEADER_SIZE - 1, HEADER_SIZE + 1, size + 1, U32_MAX):
        for fix_crc in (True, False):
            header = header_with(fx, 12, struct.pack("<I", value), fix_crc)
            cases.append(Case(f"header_size = {value}{'' if fix_crc else ', CRC stale'}",
                              header + fx.data[HEADER_SIZE:]))
    # every other field changed with the header CRC made right: the END digest covers the
    # header, so even the informational fields (level, writer, created_ns) are refused
    # unless the blob is sealed again
    fields = {"magic": (0, b"VMBSAVF\0"), "format_major": (8, b"\2\0"),
              "format_minor": (10, b"\x09\0"), "flags": (16, b"\2\0\0\0"),
              "flags signed": (16, b"\1\0\0\0" if fx.key is None else b"\0\0\0\0"),
              "compression none": (20, b"\0"), "compression 2": (20, b"\2"),
              "level": (21, bytes([fx.header[21] ^ 1])), "reserved": (22, b"\1\0"),
              "writer_version": (24, b"0.0.9"), "writer_version non-ascii": (24, b"\xff"),
              "created_ns": (40, b"\0" * 8)}
    for what, (offset, value) in fields.items():
        cases.append(Case(what, header_with(fx, offset, value) + fx.data[HEADER_SIZE:]))
    wheres = refuse_all(fx, cases)
    for what, where in wheres.items():
        assert where.startswith(("header", "end.digest", "signature", "body", "chunk")), \
            (what, where)
        if what.startswith("header_size"):
            assert where.startswith(("header", "signature")), (what, where)


def count_fields(fx: Fixture) -> list[tuple[str, int, int, int, int]]:
    """(what, chunk index, byte offset in the chunk's data, width, value now) of the length
    and count fields of the packet and channel grammars (FORMAT.md)."""
    out = []
    for i, chunk in enumerate(fx.body_chunks):
        data = chunk[12:]
        t = ctype(chunk)
        if t == T_CHANNEL:
            out.append(("channel.friendly_name length", i, 72, 2,
                        struct.unpack_from("<H", data, 72)[0]))
        elif t == T_RING:
            out.append(("ring.data_pages", i, 21, 4, struct.unpack_from("<I", data, 21)[0]))
        elif t in (T_GPADLS, T_INCOMING):
            out.append((f"{'gpadls' if t == T_GPADLS else 'pending_incoming'} count", i, 0, 4,
                        struct.unpack_from("<I", data, 0)[0]))
            if t == T_GPADLS and out[-1][-1]:
                # first GPADL: u32 handle, u8, u8, u32, u32, then u32 pfn count
                out.append(("gpadl.pfns count", i, 4 + 14, 4,
                            struct.unpack_from("<I", data, 18)[0]))
        elif t == T_PACKET:
            lib_size = struct.unpack_from("<I", data, 0)[0]
            out.append(("packet.lib_buf size", i, 0, 4, lib_size))
            out.append(("packet.save_buf size", i, 4 + lib_size, 4,
                        struct.unpack_from("<I", data, 4 + lib_size)[0]))
            # PacketContext: u64 txid, u8 state, u16 type, u32 flags, u32 ring_offset,
            # u64 pointer (27 bytes), then the routine's u8 length
            routine = data[4 + 27]
            out.append(("packet.completion_routine length", i, 4 + 27, 1, routine))
            payload_at = 4 + 28 + routine
            payload = struct.unpack_from("<I", data, payload_at)[0]
            out.append(("packet.payload length", i, payload_at, 4, payload))
            kind_at = payload_at + 4 + payload
            kind = struct.unpack_from("<H", data, kind_at)[0]
            if kind == 9:
                out.append(("packet.external gpa ranges count", i, kind_at + 2, 4,
                            struct.unpack_from("<I", data, kind_at + 2)[0]))
                out.append(("packet.external pfns count", i, kind_at + 14, 4,
                            struct.unpack_from("<I", data, kind_at + 14)[0]))
            elif kind in (7, 8):
                out.append(("packet.external ranges count", i, kind_at + 7, 4,
                            struct.unpack_from("<I", data, kind_at + 7)[0]))
        elif t == T_SCENARIO:
            n = data[0]
            vsp = struct.unpack_from("<I", data, 17 + n)[0]
            vsc = struct.unpack_from("<I", data, 21 + n + vsp)[0]
            guests_at = 25 + n + vsp + vsc
            out += [("scenario.name length", i, 0, 1, n),
                    ("scenario.vsp_state size", i, 17 + n, 4, vsp),
                    ("scenario.vsc_state size", i, 21 + n + vsp, 4, vsc),
                    ("scenario.guests count", i, guests_at, 4,
                     struct.unpack_from("<I", data, guests_at)[0]),
                    ("scenario.guests[0].context size", i, guests_at + 4, 4,
                     struct.unpack_from("<I", data, guests_at + 4)[0])]
    # a few of each kind is enough for a blob with hundreds of packets
    seen: Counter = Counter()
    kept = []
    for entry in out:
        seen[entry[0]] += 1
        if seen[entry[0]] <= 2:
            kept.append(entry)
    return kept


@pytest.mark.parametrize("name", NAMES)
def test_grammar_length_and_count_fields(name):
    """Each length or count field set to 0, to just past the data, and to its maximum:
    re-sealed (chunk CRC, END digest) so the grammar is what refuses it, and with the
    chunk's old CRC, which refuses it first."""
    fx = fixture(name)
    fields = count_fields(fx)
    kinds = {f[0] for f in fields}
    assert {"channel.friendly_name length", "ring.data_pages", "packet.lib_buf size",
            "packet.save_buf size", "packet.payload length", "scenario.guests count",
            "pending_incoming count", "gpadls count"} <= kinds
    cases = []
    for what, index, offset, width, now in fields:
        chunk = fx.body_chunks[index]
        data = chunk[12:]
        fmt = {1: "<B", 2: "<H", 4: "<I"}[width]
        past = len(data) - offset - width + 1 if ("length" in what or "size" in what) \
            else now + 1
        for value in sorted({0, past, (1 << (8 * width)) - 1} - {now}):
            if value >= 1 << (8 * width):
                continue
            edited = reframe(chunk, put(data, offset, struct.pack(fmt, value)))
            chunks = list(fx.body_chunks)
            chunks[index] = edited
            cases.append(Case(f"chunk {index} {what} = {value}, re-sealed", seal(fx, chunks)))
            chunks[index] = chunk[:12] + edited[12:]
            cases.append(Case(f"chunk {index} {what} = {value}, old CRC", seal(fx, chunks)))
    assert len(cases) >= 40
    wheres = refuse_all(fx, cases)
    for what, where in wheres.items():
        if what.endswith("old CRC"):
            assert where.endswith(".crc32c"), (what, where)
        else:
            assert "crc32c" not in where and "digest" not in where, (what, where)


@pytest.mark.parametrize("name", NAMES)
def test_chunk_header_length_and_type(name):
    """ChunkHeader.length 0, one short, just past the stream and 2^32-1, and the type,
    flags and reserved bytes, on chunks across the body and on END; the chunk's CRC is
    left as it was."""
    fx = fixture(name)
    n = len(fx.body_chunks)
    stream = len(fx.body)
    cases = []
    for i in sorted({0, 1, 2, 3, n // 2, n - 2, n - 1, n}):  # n: the END chunk
        chunk = fx.chunks[i]
        past = stream - sum(len(c) for c in fx.chunks[:i]) - 12 + 1
        for what, at, value in (("length 0", 4, struct.pack("<I", 0)),
                                ("length one short", 4, struct.pack("<I", len(chunk) - 13)),
                                ("length past the stream", 4, struct.pack("<I", past)),
                                ("length 2^32-1", 4, struct.pack("<I", U32_MAX)),
                                ("type unknown", 0, struct.pack("<H", 0x0777)),
                                ("type 0", 0, struct.pack("<H", 0)),
                                ("flags 2", 2, b"\x02"), ("flags 0", 2, b"\x00"),
                                ("reserved 1", 3, b"\x01")):
            chunks = list(fx.chunks)
            chunks[i] = put(chunk, at, value)
            cases.append(Case(f"chunk {i} {what}", pack(fx, b"".join(chunks))))
    wheres = refuse_all(fx, cases)
    for what, where in wheres.items():
        if "length" in what and "past" not in what or "flags" in what:
            assert "chunk@" in where or "body" in where, (what, where)


# -- through the executable ---------------------------------------------------------------


def cli_cases() -> list[tuple[str, str, bytes, bool]]:
    """(label, fixture, damaged bytes, signed) for the executable."""
    s, net, pipe, signed = (fixture(n) for n in NAMES)
    rng = random.Random(f"{SEED}/cli")
    flip = bytearray(s.data)
    flip[len(s.data) // 2] ^= 0x10
    net_flip = bytearray(net.data)
    net_flip[20000] ^= 0x01
    swapped = list(pipe.body_chunks)
    swapped[1], swapped[2] = swapped[2], swapped[1]
    return [
        ("storage truncated in the body", "storage", s.data[:len(s.data) // 2], False),
        ("storage truncated in the header", "storage", s.data[:20], False),
        ("storage bit flip", "storage", bytes(flip), False),
        ("network bit flip", "network", bytes(net_flip), False),
        ("network overwrite", "network", put(net.data, 30000, rng.randbytes(16)), False),
        ("pipe chunks swapped, re-sealed", "pipe", seal(pipe, swapped), False),
        ("pipe chunk duplicated, re-sealed", "pipe",
         seal(pipe, pipe.body_chunks[:3] + pipe.body_chunks[2:]), False),
        ("storage END chunk_count 2^32-1", "storage",
         seal(s, s.body_chunks, chunk_count=U32_MAX), False),
        ("storage header channel_count 0", "storage",
         seal(s, s.body_chunks, header=header_with(s, 48, b"\0\0\0\0")), False),
        ("storage header_size 2^32-1", "storage",
         header_with(s, 12, b"\xff\xff\xff\xff") + s.data[HEADER_SIZE:], False),
        ("storage chunk length 2^32-1", "storage",
         pack(s, b"".join([put(s.chunks[0], 4, b"\xff\xff\xff\xff")] + s.chunks[1:])), False),
        ("storage no END chunk", "storage", pack(s, b"".join(s.body_chunks)), False),
        ("signed storage bit flip", "storage-signed",
         put(signed.data, 900, bytes([signed.data[900] ^ 4])), True),
        ("signed storage truncated", "storage-signed", signed.data[:-10], True),
        ("signed storage re-signed, END packet_count 0", "storage-signed",
         seal(signed, signed.body_chunks, packet_count=0), True),
        ("empty file", "storage", b"", False),
    ]


COMMANDS = (("validate",), ("inspect",), ("decode",), ("restore", "--run-steps", "1"))


@pytest.mark.skipif(EXE is None, reason="the vmbtool console script is not on PATH")
def test_the_executable_refuses_a_sample(tmp_path):
    """Damaged blobs through validate, inspect, decode and restore (each case one command
    in turn, the first case all four): exit 1, one `Error: ... at <where>: ...` line
    on stderr (validate: its `INVALID at` verdict on stdout and the tally on stderr), no
    traceback."""
    env = {k: v for k, v in os.environ.items() if k not in ("VMBTOOL_KEY_FILE", "NO_COLOR")}
    cases = cli_cases()
    assert 10 <= len(cases) <= 20
    runs = []
    for number, (label, _name, data, signed) in enumerate(cases):
        path = tmp_path / f"case{number}.vmb"
        path.write_bytes(data)
        key = ["--key-file", str(FIXTURE_KEY_FILE)] if signed else []
        commands = COMMANDS if number == 0 else [COMMANDS[number % len(COMMANDS)]]
        runs += [(label, [EXE, command[0], str(path), *command[1:], *key])
                 for command in commands]
    assert {args[1] for _label, args in runs} == {c[0] for c in COMMANDS}
    running: list[tuple[str, str, subprocess.Popen]] = []
    for label, args in runs:
        if len(running) >= 3:  # a few at a time on a small machine
            running[-3][2].wait(60)
        running.append((label, args[1], subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)))
    for label, command, process in running:
        stdout, stderr = process.communicate(timeout=60)
        out, err = stdout.decode(), stderr.decode()
        assert process.returncode == 1, (label, command, process.returncode, err)
        assert "Traceback" not in out + err, (label, command, err)
        if command == "validate":
            assert re.search(r": INVALID at \S.*: ", out), (label, out)
            assert err.strip() == "0 valid, 1 invalid", (label, err)
            continue
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and " at " in lines[0], \
            (label, command, err)
        assert WHERE.search(lines[0].split(" at ", 1)[1]), (label, command, lines[0])


def test_campaign_figures():
    """What the campaign tried, checked as a whole (run with -s to see it); runs last in
    this file, after the tests that fill the figures. Every fixture met damage, every
    damaged blob was refused somewhere named (or allowed only as the same body), and
    failed channel restores were found pristine."""
    figures = {name: fixture(name).stats for name in NAMES + tuple(sorted(V11))}
    if not any(figures.values()):
        pytest.skip("the figures come from this file's other tests: run the whole file")
    for name, stats in figures.items():
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(stats.items()) if " at " not in k)
        print(f"\n{name}: {summary}")
        rejected = sum(v for k, v in stats.items() if k.endswith(" rejected"))
        assert rejected >= 100, (name, rejected)  # hundreds of cases a fixture
        for kind in {k[:-len(" rejected")] for k in stats if k.endswith(" rejected")}:
            located = sum(v for k, v in stats.items() if k.startswith(f"{kind} at "))
            # each rejection of a random case was counted with the place it named
            assert located in (0, stats[f"{kind} rejected"]), (name, kind, located)
        allowed = sum(v for k, v in stats.items() if k.endswith("(body identical)"))
        assert allowed <= rejected, (name, allowed, rejected)  # the known issue stays rare
    print(f"\nfailed channel restores found pristine (CLI restore path): "
          f"{sum(PRISTINE_CHECKS.values())} {dict(PRISTINE_CHECKS)}")
    assert sum(PRISTINE_CHECKS.values()) > 0
