"""Fuzz the blob reader and everything behind it; one command, any duration:

    python3 fuzz/fuzz_blob.py --seconds 600

Inputs come from hypothesis strategies (see `fuzz_inputs`): fully random bytes, byte-level
mutations of the golden blobs in fixtures/v*/, a valid header followed by a random body,
re-sealed chunk streams (chunks of the golden blobs dropped, duplicated, reordered or with
mutated data, then every chunk CRC, the END counts and digest, the compression and the
signature recomputed, so the grammars and the semantic invariants see them), and edited
JSON documents of the golden blobs put back through `jsonview.encode`.

Each input goes through `load_blob`, `tools.validate_file`, `jsonview.decode` (and
`encode` of the result), `diff` against a golden blob, the `inspect` summary
(`report.stream_summary`), validate's lean check `snapshot.check_file`, the restore
`snapshot.restore_file` (`vmbtool restore`) and 3 to 40 steps of the restored scenario.
Any exception other than `VmbtoolError` (and its subclasses) is a bug. So is a
disagreement between those paths: an input that validates but does not restore, or
that restores while validate or its check calls it invalid; a refusal that names
another problem than validate's first; a check whose first problem is not validate's;
a summary or a check counting other channels, packets, GPADLs or pending incoming
packets than decode holds; a restore in small RestoreFromBuffer buffers giving another
state than one in the default buffers; a restored state that saves to a blob with
problems. So is an input that runs past `--timeout` seconds or, with the address-space
limit, runs out of memory.

Each distinct bug (exception type + the innermost vmbtool frames) is saved once to
`--crashes` (default fuzz/crashes/) as `<signature>.vmb` with a `.txt` beside it
(traceback, whether the test key was given). `--replay FILE...` runs saved inputs again.
Exit status: 0 when no bug was found, 1 otherwise.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import random
import re
import resource
import signal
import struct
import sys
import time
import traceback
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import zstandard
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from vmbtool import codec, jsonview, report, tools
from vmbtool.blob import FLAG_SIGNED, load_blob, seal_body, sign
from vmbtool.blob import consumers as blob_consumers
from vmbtool.blob import reader as blob_reader
from vmbtool.chunks import crc32c, frame_bytes
from vmbtool.diff import diff as semantic_diff
from vmbtool.errors import VmbtoolError
from vmbtool.formats.chunk import CHUNK_TYPES, ChunkType
from vmbtool.formats.frames import SEALED_SINCE, SealFrame, SignatureFrame
from vmbtool.formats.header import FileHeader, HeaderPrefix
from vmbtool.snapshot import (
    DEFAULT_CHUNK_SIZE,
    check_file,
    restore_file,
    save_blob,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "v1"
KEY = (FIXTURES / "test-key").read_bytes()
DEFAULT_CRASHES = Path(__file__).resolve().parent / "crashes"
HEADER_FIELDS = ("format_major", "format_minor", "header_size", "flags", "compression",
                 "level", "writer_version", "created_ns", "channel_count")
INTERESTING = (0, 1, 2, 7, 8, 9, 15, 16, 24, 0x7F, 0x80, 0xFF, 0x100, 0xFFF, 0x1000, 0x1001,
               0x7FFF, 0x8000, 0xFFFF, 0x10000, 0xFFFFF, 0x100000, 0x2000000, 0x2000001,
               0x7FFFFFFF, 0x80000000, 0xFFFFFFF8, 0xFFFFFFFF, 1 << 32, (1 << 63) - 1,
               1 << 63, (1 << 64) - 1, -1)
PACKED = (("<B", 0xFF), ("<H", 0xFFFF), ("<I", 0xFFFFFFFF), ("<Q", (1 << 64) - 1))


class Bug(Exception):
    """An input made the code under test misbehave."""

    def __init__(self, what: str, tb: str, signature: str) -> None:
        super().__init__(what)
        self.what, self.tb, self.signature = what, tb, signature
        self.input = b""  # set when the input is not a blob (an edited JSON document)
        self.keyed = False


class Timeout(BaseException):  # noqa: N818 - BaseException: the library must not catch it
    """One input ran past --timeout."""


# -- the seeds: golden blobs, taken apart once --------------------------------------


@dataclass
class Seed:
    name: str
    data: bytes
    keyed: bool
    header: dict
    chunks: list[tuple[int, int, bytes]]  # (type, flags, data), END excluded
    doc: dict = field(default_factory=dict)


def load_seeds() -> list[Seed]:
    seeds = []
    for path in sorted(FIXTURES.parent.glob("v*/*.vmb")):  # every format version
        data = path.read_bytes()
        keyed = "signed" in path.name
        blob = load_blob(data, KEY if keyed else None)
        header = {name: blob.header[name] for name in HEADER_FIELDS}
        header["compression"] = str(header["compression"])
        chunks = [(c.type, c.flags, c.data) for c in blob.chunks if c.type != ChunkType.END]
        seeds.append(Seed(path.name, data, keyed, header, chunks, jsonview.decode(blob)))
    return seeds


SEEDS = load_seeds()


# -- building blobs -----------------------------------------------------------------


def build_header(fields: dict, extra: bytes = b"") -> bytes:
    """A FileHeader from `fields`, the bytes of a newer minor, and its CRC."""
    head = codec.build(FileHeader, {**fields, "reserved": 0}, "header") + extra
    return head + struct.pack("<I", crc32c(head))


def compress(body: bytes, rng: random.Random) -> bytes:
    """One zstd frame, or several, sometimes with skippable or empty frames between."""
    level = rng.choice((1, 3, 3, 9))
    if rng.random() < 0.8 or len(body) < 2:
        return zstandard.ZstdCompressor(level=level).compress(body)
    cut = rng.randrange(1, len(body))
    parts = [zstandard.ZstdCompressor(level=level).compress(body[:cut])]
    if rng.random() < 0.5:
        parts.append(struct.pack("<II", 0x184D2A50 + rng.randrange(16), 4) + b"skip")
    if rng.random() < 0.3:
        parts.append(zstandard.ZstdCompressor().compress(b""))
    parts.append(zstandard.ZstdCompressor(level=level).compress(body[cut:]))
    return b"".join(parts)


def seal_frame(header: bytes, body: bytes) -> bytes:
    """The seal frame a zstd body of this header's minor ends with (format 1.1+)."""
    prefix = codec.parse(HeaderPrefix, header, "header", 0, exact=False)
    if (prefix.format_major, prefix.format_minor) < SEALED_SINCE:
        return b""
    return codec.build(SealFrame, {"crc32c": crc32c(body)}, "body.seal")


def signature_frame(out: bytes) -> bytes:
    return codec.build(SignatureFrame, {"hmac": sign(KEY, out)}, "signature")


def seal(header: bytes, chunks: list[bytes], rng: random.Random, signed: bool,
         compressed: bool, end: bytes | None = None) -> bytes:
    """Header + body + END (recomputed, or `end` as given) + signature when `signed`."""
    if end is None and (not compressed or rng.random() < 0.9):
        out = seal_body(header, chunks, rng.choice((1, 3)) if compressed else None, None)
    else:
        if end is None:
            end = seal_body(header, chunks, None, None)[len(header) + len(b"".join(chunks)):]
        body = b"".join(chunks) + end
        if compressed:
            body = compress(body, rng)
            body += seal_frame(header, body)
        out = header + body
    if signed:
        out += signature_frame(out)
    return out


# -- mutators -------------------------------------------------------------------------


def havoc(data: bytes, rng: random.Random, rounds: int | None = None) -> bytes:
    """AFL-style byte mutations."""
    buf = bytearray(data)
    for _ in range(rounds or rng.choice((1, 1, 2, 3, 5, 8))):
        op = rng.randrange(9)
        if not buf:
            buf += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
            continue
        pos = rng.randrange(len(buf))
        if op == 0:
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos] = rng.randrange(256)
        elif op == 2:
            fmt, mask = rng.choice(PACKED)
            size = struct.calcsize(fmt)
            if pos + size <= len(buf):
                struct.pack_into(fmt, buf, pos, rng.choice(INTERESTING) & mask)
        elif op == 3:
            end = min(len(buf), pos + rng.randrange(1, 64))
            del buf[pos:end]
        elif op == 4:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 32)))
        elif op == 5:
            end = min(len(buf), pos + rng.randrange(1, 128))
            block = buf[pos:end]
            at = rng.randrange(len(buf) + 1)
            buf[at:at] = block
        elif op == 6:
            del buf[pos:]
        elif op == 7:
            fmt, mask = rng.choice(PACKED)
            size = struct.calcsize(fmt)
            if pos + size <= len(buf):
                (value,) = struct.unpack_from(fmt, buf, pos)
                struct.pack_into(fmt, buf, pos, (value + rng.choice((-8, -1, 1, 8))) & mask)
        else:
            end = min(len(buf), pos + rng.randrange(1, 32))
            buf[pos:end] = b"\0" * (end - pos)
    return bytes(buf)


def random_chunk(rng: random.Random) -> tuple[int, int, bytes]:
    ctype = rng.choice((*CHUNK_TYPES, 0, 0x11, 0x7FFF, 0xFFFF, rng.randrange(1 << 16)))
    flags = rng.choice((0, 1, 1, 2, 0xFF))
    data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 96)))
    if ctype in CHUNK_TYPES and rng.random() < 0.5:
        seed = rng.choice(SEEDS)
        same = [c for c in seed.chunks if c[0] == ctype]
        if same:
            data = havoc(rng.choice(same)[2], rng)
    return ctype, flags, data


def mutate_chunks(chunks: list[tuple[int, int, bytes]],
                  rng: random.Random) -> list[tuple[int, int, bytes]]:
    """Chunk-level mutations; the caller re-frames them with correct CRCs."""
    out = list(chunks)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        op = rng.randrange(10)
        i = rng.randrange(len(out)) if out else 0
        if not out:
            out.append(random_chunk(rng))
        elif op <= 3:  # mutate one chunk's data (the likeliest way into the grammars)
            t, f, d = out[i]
            out[i] = (t, f, havoc(d, rng))
        elif op == 4:
            del out[i]
        elif op == 5:
            out.insert(rng.randrange(len(out) + 1), out[i])
        elif op == 6:
            j = rng.randrange(len(out))
            out[i], out[j] = out[j], out[i]
        elif op == 7:
            out.insert(rng.randrange(len(out) + 1), random_chunk(rng))
        elif op == 8:
            t, f, d = out[i]
            out[i] = (rng.choice((t, rng.choice(list(CHUNK_TYPES)), 0x20)),
                      rng.choice((0, 1, 2, 0x80)), d)
        else:
            del out[i:i + rng.randrange(1, 8)]
    return out


def mutate_header(fields: dict, rng: random.Random) -> tuple[dict, bytes]:
    fields = dict(fields)
    extra = b""
    name = rng.choice(HEADER_FIELDS + ("newer_minor",) * 2)
    if name == "newer_minor":
        fields["format_minor"] = rng.choice((1, 2, 0xFFFF))
        extra = bytes(rng.randrange(256) for _ in range(rng.choice((4, 8, 13, 100))))
        fields["header_size"] = 56 + len(extra)
    elif name == "compression":
        fields["compression"] = rng.choice(("none", "zstd"))
    elif name == "writer_version":
        fields["writer_version"] = rng.choice(("", "9.9.9", "x" * 16))
    elif name == "level":
        fields["level"] = rng.choice((-128, -1, 0, 1, 19, 22, 127))
    else:
        fields[name] = rng.choice(INTERESTING) & 0xFFFF if name.startswith("format") \
            else rng.choice(INTERESTING) & 0xFFFFFFFF
    return fields, extra


def resealed(seed: Seed, rng: random.Random) -> tuple[bytes, bool]:
    """The seed's chunks mutated, then framed, sealed and signed correctly."""
    chunks = mutate_chunks(seed.chunks, rng) if rng.random() < 0.9 else list(seed.chunks)
    fields, extra = dict(seed.header), b""
    if rng.random() < 0.15:
        fields, extra = mutate_header(fields, rng)
    channels = sum(t == ChunkType.CHANNEL for t, _, _ in chunks)
    if rng.random() < 0.9:
        fields["channel_count"] = channels
    signed = rng.random() < 0.2 or seed.keyed and rng.random() < 0.7
    fields["flags"] = (fields["flags"] & ~FLAG_SIGNED) | (FLAG_SIGNED if signed else 0)
    compressed = rng.random() < 0.5
    fields["compression"] = "zstd" if compressed else "none"
    fields["level"] = 3 if compressed else 0
    try:
        header = build_header(fields, extra)
    except VmbtoolError:
        header = build_header(seed.header)
    framed = [frame_bytes(t, d, f & 0xFF) for t, f, d in chunks]
    end = None
    if rng.random() < 0.1:  # a lying or damaged END chunk, with a correct CRC
        digest = hashlib.sha256(header + b"".join(framed)).digest()
        values = [channels, len(framed), sum(t == ChunkType.PACKET for t, _, _ in chunks)]
        values[rng.randrange(3)] = rng.choice(INTERESTING) & 0xFFFFFFFF
        data = struct.pack("<III", *values) + digest
        end = frame_bytes(ChunkType.END, havoc(data, rng) if rng.random() < 0.3 else data, 1)
    keyed = signed if rng.random() < 0.95 else not signed
    return seal(header, framed, rng, signed, compressed, end), keyed


def random_body(rng: random.Random) -> tuple[bytes, bool]:
    """A valid header, then a random body (raw, zstd, random chunks or none)."""
    seed = rng.choice(SEEDS)
    fields = dict(seed.header)
    compressed = rng.random() < 0.5
    signed = rng.random() < 0.2
    fields.update(compression="zstd" if compressed else "none", level=3 if compressed else 0,
                  flags=FLAG_SIGNED if signed else 0,
                  channel_count=rng.choice((0, 1, 2, 3, 0xFFFFFFFF)))
    header = build_header(fields)
    kind = rng.randrange(4)
    if kind == 0:
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 512)))
        if compressed and rng.random() < 0.7:
            body = compress(body, rng)
            body += seal_frame(header, body)
        out = header + body
        if signed:
            out += signature_frame(out)
        return out, signed
    chunks = [random_chunk(rng) for _ in range(rng.randrange(0, 12))]
    framed = [frame_bytes(t, d, f) for t, f, d in chunks]
    return seal(header, framed, rng, signed, compressed,
                None if kind < 3 else frame_bytes(*random_chunk(rng)[::2], 1)), signed


def mutated_file(seed: Seed, rng: random.Random) -> tuple[bytes, bool]:
    """Byte-level damage to a golden blob (most of it stops at a checksum)."""
    data = seed.data
    if rng.random() < 0.1:  # splice two seeds
        other = rng.choice(SEEDS).data
        cut = rng.randrange(len(data))
        data = data[:cut] + other[rng.randrange(len(other)):]
    return havoc(data, rng), seed.keyed if rng.random() < 0.9 else not seed.keyed


# -- JSON documents -------------------------------------------------------------------


def leaves(node, path=()):
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from leaves(v, (*path, i))


def set_at(doc, path, value) -> None:
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


def ring_descriptor_edit(doc: dict, rng: random.Random) -> bool:
    """Write a hostile packet descriptor (or indices) into a ring's unread bytes."""
    rings = [r for ch in doc["channels"] for r in ch.get("rings", {}).values()]
    if not rings:
        return False
    ring = rng.choice(rings)
    data = bytearray.fromhex(ring["data"])
    size = len(data)
    if rng.random() < 0.3:
        ring[rng.choice(("read_index", "write_index"))] = rng.choice(
            (rng.randrange(0, size, 8), rng.randrange(0, size), size, size - 8,
             rng.choice(INTERESTING) & 0xFFFFFFFF))
        return True
    used = (ring["write_index"] - ring["read_index"]) % size
    if used > 16 and rng.random() < 0.3:  # garbage inside the unread packets' bodies
        for _ in range(rng.choice((1, 4, 16))):
            pos = (ring["read_index"] + 16 + rng.randrange(used - 16)) % size
            data[pos] = rng.randrange(256)
        ring["data"] = data.hex()
        return True
    at = ring["read_index"] if rng.random() < 0.8 else rng.randrange(0, size, 8)
    if at == ring["write_index"]:
        ring["write_index"] = (at + rng.choice((24, 32, 64, 128))) % size
    desc = list(struct.unpack_from("<HHHHQ", data, at % (size - 16)))
    slot = rng.randrange(5)
    desc[slot] = rng.choice(INTERESTING) & (0xFFFF if slot < 4 else (1 << 64) - 1)
    if slot == 0:
        desc[0] = rng.choice((0, 5, 6, 7, 8, 9, 10, 11, 12, desc[0]))
    struct.pack_into("<HHHHQ", data, at % (size - 16), *desc)
    ring["data"] = data.hex()
    return True


def mutate_doc(doc: dict, rng: random.Random) -> dict:
    doc = copy.deepcopy(doc)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        try:
            if rng.random() < 0.2 and ring_descriptor_edit(doc, rng):
                continue
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, struct.error):
            pass  # an earlier edit left no ring to edit (a string index, no data...)
        paths = [(p, v) for p, v in leaves(doc) if p and not (isinstance(v, str) and
                                                               len(v) > 4096)]
        path, value = rng.choice(paths)
        r = rng.random()
        if isinstance(value, bool):
            new = rng.choice((not value, 2, None))
        elif isinstance(value, int):
            new = rng.choice((rng.choice(INTERESTING), value + rng.choice((-1, 1, 8)),
                              value ^ (1 << rng.randrange(32)), str(value), None, 1.5))
        elif isinstance(value, str):
            if value and all(c in "0123456789abcdef" for c in value) and len(value) % 2 == 0:
                raw = bytes.fromhex(value)
                new = havoc(raw, rng).hex() if r < 0.8 else rng.choice(("xyz", "abc"))
            else:
                new = rng.choice(("", "x" * 300, "\u00e9\u00e9", "storage", "network",
                                  "pipe", "gpa_direct", "none", "backlog", "in-ring",
                                  "completion", "paused", "active", "client", 7, None))
        elif isinstance(value, list):
            new = list(value)
            if new and r < 0.4:
                del new[rng.randrange(len(new))]
            elif new and r < 0.8:
                new.insert(rng.randrange(len(new) + 1), copy.deepcopy(rng.choice(new)))
            elif r < 0.9:
                rng.shuffle(new)
            else:
                new = rng.choice(({}, None, [None], "x"))
        elif isinstance(value, dict):
            new = dict(value)
            if new and r < 0.6:
                del new[rng.choice(list(new))]
            else:
                new = rng.choice(([], None, {"kind": "none", "body": None}))
        else:
            new = rng.choice((0, "", [], {}))
        set_at(doc, path, new)
    # keep the lie consistent where it is cheap, so the invariants get to see it
    if rng.random() < 0.7:
        for ch in doc.get("channels") or []:
            if isinstance(ch, dict) and isinstance(ch.get("channel_end"), dict):
                for name, key in (("gpadl_count", "gpadls"), ("packet_count", "packets"),
                                  ("incoming_count", "pending_incoming")):
                    if isinstance(ch.get(key), list):
                        ch["channel_end"][name] = len(ch[key])
        doc.pop("end", None)
        if isinstance(doc.get("header"), dict) and isinstance(doc.get("channels"), list):
            doc["header"]["channel_count"] = len(doc["channels"])
    return doc


def encoded_doc(seed: Seed, rng: random.Random) -> tuple[bytes, bool]:
    """An edited JSON document of a golden blob, encoded (a VmbtoolError is fine)."""
    doc = mutate_doc(seed.doc, rng)
    keyed = bool(seed.keyed) if rng.random() < 0.95 else not seed.keyed
    try:
        return jsonview.encode(doc, KEY if keyed else None), keyed
    except VmbtoolError:
        return seed.data, seed.keyed
    except Exception as exc:
        bug = bug_from(exc, "jsonview.encode of an edited document")
        bug.input, bug.keyed = json.dumps(doc).encode(), keyed
        raise bug from None


# -- the targets --------------------------------------------------------------------


def signature_of(exc: BaseException, stage: str) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "vmbtool" in f.filename or "formats" in f.filename]
    inner = frames[-2:] if frames else traceback.extract_tb(exc.__traceback__)[-1:]
    where = ";".join(f"{Path(f.filename).name}:{f.lineno}" for f in inner)
    return f"{stage}:{type(exc).__name__}:{where}"


def bug_from(exc: BaseException, stage: str) -> Bug:
    tb = "".join(traceback.format_exception(exc))
    return Bug(f"{stage}: {type(exc).__name__}: {exc}"[:500], tb, signature_of(exc, stage))


def run_targets(data: bytes, keyed: bool, *, steps: int = 3,
                buffer_size: int | None = None) -> str:
    """Feed one input to every target; raises Bug; returns how far it got.

    Lean reads stream every ring in blocks here, not only those of 1 MiB or more: the
    fuzzer's blobs are small, and the streamed walk must say what the whole one says."""
    streamed_min, blob_consumers.STREAMED_MIN = blob_consumers.STREAMED_MIN, 0
    try:
        return feed(data, keyed, steps, buffer_size)
    finally:
        blob_consumers.STREAMED_MIN = streamed_min


def threaded_verdict(data: bytes, key: bytes | None) -> tools.Verdict:
    """validate_file with every body read through `blob.pipe.BodyPipe` (decompressed and
    digested on threads), as bodies of 1 MiB or more are: the fuzzer's are smaller."""
    pipe_min, blob_reader.PIPE_MIN = blob_reader.PIPE_MIN, 0
    try:
        return tools.validate_file(data, key)
    finally:
        blob_reader.PIPE_MIN = pipe_min


def restore_outcome(restore) -> tuple:
    """A restore's answer: the restored scenario saved again, or where and why it refused."""
    try:
        scenario = restore()
    except VmbtoolError as exc:
        return ("refused", exc.where, exc.why)
    return ("restored", save_blob(scenario, created_ns=0))


def summary_counts(text: str) -> list[tuple[int, int, int]]:
    """Each channel's (packets, GPADLs, pending incoming) as the `inspect` summary says."""
    packets = [int(n) for n in re.findall(r"^  packets: (\d+) ", text, re.M)]
    others = re.findall(r"^  GPADLs: (\d+); pending incoming: (\d+);", text, re.M)
    return [(p, int(g), int(i)) for p, (g, i) in zip(packets, others, strict=True)]


def feed(data: bytes, keyed: bool, steps: int, buffer_size: int | None) -> str:
    key = KEY if keyed else None
    stage = "load_blob"
    try:
        try:
            blob = load_blob(data, key)
        except VmbtoolError:
            stage = "validate_file"
            verdict = tools.validate_file(data, key)
            if verdict.valid:
                raise Bug("validate_file says valid, load_blob refused", "",
                          "validate_file:disagrees-with-load") from None
            stage = "validate_file (threads)"
            if threaded_verdict(data, key) != verdict:
                raise Bug("validate with the body decompressed and digested on threads "
                          "says otherwise", "", "validate:threads-differ") from None
            stage = "restore_file"
            if restore_outcome(lambda: restore_file(data, key))[0] != "refused":
                raise Bug("the streamed restore took a blob load_blob refuses", "",
                          "restore_file:accepts-unloadable") from None
            return "refused"
        stage = "validate_file"
        verdict = tools.validate_file(data, key)
        stage = "validate_file (threads)"
        if threaded_verdict(data, key) != verdict:
            raise Bug("validate with the body decompressed and digested on threads says "
                      "otherwise", "", "validate:threads-differ")
        stage = "jsonview.decode"
        doc = jsonview.decode(blob)
        json.dumps(doc)
        held = [(len(ch["packets"]), len(ch["gpadls"]), len(ch["pending_incoming"]))
                for ch in doc["channels"]]
        stage = "inspect"
        options = {"packets": True, "rings": True, "gpadls": True, "hexdump_rings": False}
        streamed = io.StringIO()
        report.stream_summary(data, key, streamed, flt={}, **options)
        if summary_counts(streamed.getvalue()) != held:
            raise Bug(f"the summary counts {summary_counts(streamed.getvalue())} (packets, "
                      f"GPADLs, pending incoming), decode holds {held}", "",
                      "inspect:counts-differ-from-decode")
        report.stream_summary(data, key, io.StringIO(), packets=False, rings=True,
                              gpadls=False, hexdump_rings=True)
        stage = "diff"
        for change in semantic_diff(doc, SEEDS[len(data) % len(SEEDS)].doc):
            str(change)
        stage = "jsonview.encode"
        try:
            jsonview.encode(doc, key)
        except VmbtoolError:
            pass
        stage = "check_file"
        found = check_file(data, key)
        if (found.channels, found.packets) != (len(held), sum(p for p, _, _ in held)):
            raise Bug(f"validate's check counts {found.channels} channels and "
                      f"{found.packets} packets, decode {len(held)} and "
                      f"{sum(p for p, _, _ in held)}", "", "check_file:counts-differ")
        if found.problems and verdict.problems[:1] != found.problems[:1]:
            raise Bug(f"validate says {verdict.problems[:1]}, its lean check "
                      f"{found.problems[:1]}", "", "validate:check-differs")
        stage = "restore_file"
        size = DEFAULT_CHUNK_SIZE if buffer_size is None else buffer_size
        try:
            scenario = restore_file(data, key, size)
        except VmbtoolError as exc:
            if verdict.valid:
                raise Bug(f"validate says valid, restore refused: {exc}", "",
                          f"restore:refuses-valid:{exc.where.split('[')[0]}") from None
            if verdict.problems[:1] != [(exc.where, exc.why)]:
                raise Bug(f"restore refused with {(exc.where, exc.why)}, validate's first "
                          f"problem is {verdict.problems[:1]}", "",
                          "restore:refuses-with-another-problem") from None
            return "invalid"
        if found.problems or not verdict.valid:
            raise Bug(f"restore accepted a blob validate refuses: {verdict.problems[:1]} "
                      f"(its check: {found.problems[:1]})", "", "restore:accepts-invalid")
        if len(scenario.servers) != len(held):
            raise Bug(f"restore gave {len(scenario.servers)} channels, decode {len(held)}",
                      "", "restore:channels-differ")
        stage = "restore_file (buffers)"
        again = save_blob(scenario, created_ns=0)
        if buffer_size is not None:  # the same state, whatever the RestoreFromBuffer calls
            if restore_outcome(lambda: restore_file(data, key)) != ("restored", again):
                raise Bug(f"restore in buffers of {buffer_size} B and in buffers of "
                          f"{DEFAULT_CHUNK_SIZE} B differ", "", "restore_file:buffers-differ")
        stage = "check_file (re-saved)"
        if check_file(again).problems:
            raise Bug(f"the restored state saves to a blob with problems: "
                      f"{check_file(again).problems[:1]}", "", "restore:resaves-invalid")
        stage = "run-after-restore"
        scenario.start()
        scenario.run(steps)
        return "restored"
    except (Bug, Timeout):
        raise
    except VmbtoolError:
        return f"error in {stage}"  # a one-line Error: for the user, not a bug
    except Exception as exc:
        raise bug_from(exc, stage) from None


# -- hypothesis strategies -------------------------------------------------------------

GENERATORS = {
    "resealed": lambda rng: resealed(rng.choice(SEEDS), rng),
    "json": lambda rng: encoded_doc(rng.choice(SEEDS), rng),
    "random_body": random_body,
    "mutated_file": lambda rng: mutated_file(rng.choice(SEEDS), rng),
}
WEIGHTS = (("resealed", 8), ("json", 6), ("random_body", 2), ("mutated_file", 3))


KINDS = tuple(name for name, weight in WEIGHTS for _ in range(weight)) + ("random_bytes",) * 2


@st.composite
def fuzz_inputs(draw) -> tuple[str, bytes, bool, Bug | None]:
    """(how it was made, bytes, whether to pass the key, a bug met while making it)."""
    kind = draw(st.sampled_from(KINDS))
    if kind == "random_bytes":
        prefix = draw(st.sampled_from((b"", b"VMBSAVE\0", SEEDS[0].data[:56])))
        return kind, prefix + draw(st.binary(max_size=2048)), draw(st.booleans()), None
    rng = random.Random(draw(st.integers(0, (1 << 64) - 1)))
    try:
        data, keyed = GENERATORS[kind](rng)
    except Bug as bug:  # jsonview.encode of an edited document: the input is the JSON
        return kind, bug.input, bug.keyed, bug
    return kind, data, keyed, None


# -- the driver ---------------------------------------------------------------------


@dataclass
class Stats:
    inputs: int = 0
    outcomes: dict = field(default_factory=dict)
    kinds: dict = field(default_factory=dict)
    bugs: dict = field(default_factory=dict)  # signature -> (Bug, path)


def save_crash(bug: Bug, data: bytes, keyed: bool, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1(bug.signature.encode()).hexdigest()[:12]
    suffix = ".json" if bug.input else ".vmb"  # a JSON document: `vmbtool encode` it
    path = directory / f"{name}{'.keyed' if keyed else ''}{suffix}"
    path.write_bytes(data)
    path.with_suffix(".txt").write_text(
        f"signature: {bug.signature}\nwhat: {bug.what}\nkeyed: {keyed}\n"
        f"replay: python3 fuzz/fuzz_blob.py --replay {path}\n\n{bug.tb}")
    return path


def one(stats: Stats, kind: str, data: bytes, keyed: bool, timeout: float,
        crashes: Path | None, quiet: bool, made_with: Bug | None = None) -> None:
    stats.inputs += 1
    stats.kinds[kind] = stats.kinds.get(kind, 0) + 1
    if made_with is not None:  # making the input already found a bug
        record(stats, made_with, data, keyed, crashes, quiet)
        stats.outcomes["BUG"] = stats.outcomes.get("BUG", 0) + 1
        return
    if timeout:
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        pick = zlib.crc32(data)
        outcome = run_targets(data, keyed, steps=(3, 3, 10, 40)[pick % 4], buffer_size=(
            None if pick % 3 else 1 + pick % 8192))
    except Bug as bug:
        outcome = "BUG"
        record(stats, bug, data, keyed, crashes, quiet)
    except Timeout:
        outcome = "BUG"
        tb = "".join(traceback.format_stack())
        record(stats, Bug(f"timeout after {timeout} s", tb, "timeout"), data, keyed,
               crashes, quiet)
    except MemoryError as exc:
        outcome = "BUG"
        record(stats, bug_from(exc, "memory"), data, keyed, crashes, quiet)
    finally:
        if timeout:
            signal.setitimer(signal.ITIMER_REAL, 0)
    stats.outcomes[outcome] = stats.outcomes.get(outcome, 0) + 1


def record(stats: Stats, bug: Bug, data: bytes, keyed: bool, crashes: Path | None,
           quiet: bool) -> None:
    if bug.signature in stats.bugs:
        return
    path = save_crash(bug, data, keyed, crashes) if crashes else None
    stats.bugs[bug.signature] = (bug, path)
    if not quiet:
        print(f"  BUG #{len(stats.bugs)}: {bug.what.splitlines()[0][:160]}"
              f"{f' -> {path}' if path else ''}", flush=True)


def fuzz(seconds: float, seed: int, crashes: Path | None, timeout: float = 10.0,
         batch: int = 200, quiet: bool = False, inputs: int | None = None) -> Stats:
    """Run hypothesis batches until `seconds` have passed, or, given `inputs`, until
    that many inputs have run (the same inputs for the same seed, however fast the
    machine is: the suite's short pass)."""
    stats = Stats()
    deadline = time.monotonic() + seconds if inputs is None else float("inf")

    def done() -> bool:
        return stats.inputs >= inputs if inputs is not None else time.monotonic() >= deadline

    last_report = time.monotonic()

    def on_alarm(signum, frame):
        raise Timeout()

    previous = signal.signal(signal.SIGALRM, on_alarm) if timeout else None
    try:
        round_number = 0
        while not done():
            @hypothesis_seed(seed * 1_000_003 + round_number)
            @settings(max_examples=batch, deadline=None, database=None,
                      phases=[Phase.generate], derandomize=False,
                      suppress_health_check=list(HealthCheck))
            @given(fuzz_inputs())
            def batch_run(case):
                if done():
                    return
                kind, data, keyed, made_with = case
                one(stats, kind, data, keyed, timeout, crashes, quiet, made_with)

            batch_run()
            round_number += 1
            if not quiet and time.monotonic() - last_report >= 10:
                last_report = time.monotonic()
                print(f"[{seconds - max(0.0, min(seconds, deadline - last_report)):7.0f} s] "
                      f"{stats.inputs} inputs, {len(stats.bugs)} bugs, outcomes "
                      f"{dict(sorted(stats.outcomes.items()))}", flush=True)
    finally:
        if timeout:
            signal.signal(signal.SIGALRM, previous)
    return stats


def replay(paths: list[str], timeout: float) -> int:
    def on_alarm(signum, frame):
        raise Timeout()

    signal.signal(signal.SIGALRM, on_alarm)
    failed = 0
    for path in paths:
        stats = Stats()
        data, keyed = Path(path).read_bytes(), ".keyed." in Path(path).name
        if path.endswith(".json"):  # an edited document that broke jsonview.encode
            try:
                data = jsonview.encode(json.loads(data), KEY if keyed else None)
            except VmbtoolError as exc:
                print(f"{path}: ok (encode refuses it: {exc})")
                continue
            except Exception as exc:
                print(f"{path}: BUG {bug_from(exc, 'jsonview.encode').tb}")
                failed += 1
                continue
        one(stats, "replay", data, keyed, timeout, None, True)
        if stats.bugs:
            failed += 1
            for bug, _ in stats.bugs.values():
                print(f"{path}: BUG {bug.what}\n{bug.tb}")
        else:
            print(f"{path}: ok ({', '.join(stats.outcomes)})")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: "
                        "random; printed so a run can be repeated)")
    parser.add_argument("--crashes", type=Path, default=DEFAULT_CRASHES,
                        help="where to save bug-triggering inputs")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds one input may take before it counts as a bug")
    parser.add_argument("--memory-mb", type=int, default=2048,
                        help="address-space limit; running out counts as a bug (0: none)")
    parser.add_argument("--replay", nargs="+", metavar="FILE", help="run saved inputs again")
    args = parser.parse_args(argv)
    if args.memory_mb:
        limit = args.memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if args.replay:
        return replay(args.replay, args.timeout)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    print(f"fuzzing for {args.seconds:g} s, seed {seed}, crashes -> {args.crashes}",
          flush=True)
    started = time.monotonic()
    stats = fuzz(args.seconds, seed, args.crashes, args.timeout)
    took = time.monotonic() - started
    print(f"done: {stats.inputs} inputs in {took:.0f} s ({stats.inputs / took:.0f}/s), "
          f"{len(stats.bugs)} distinct bugs")
    print(f"  inputs by kind: {dict(sorted(stats.kinds.items()))}")
    print(f"  outcomes: {dict(sorted(stats.outcomes.items()))}")
    for signature, (bug, path) in stats.bugs.items():
        print(f"  {signature}\n    {bug.what.splitlines()[0][:200]}\n    saved: {path}")
    return 1 if stats.bugs else 0


if __name__ == "__main__":
    sys.exit(main())
