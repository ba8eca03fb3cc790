"""The fast path generated from the grammars (vmbtool/generated/, written by
vmbtool.fastgen) against the grammars.

What the compiled parse gives must be what the plain grammar gives, to the types (enum
fields are EnumIntegerStrings, arrays ListContainers), what it builds byte for byte what
the plain grammar builds, and it must refuse what the plain grammar refuses: on every
chunk of every golden blob, on objects drawn from the grammars (and broken ones), on
mutated bytes. What it does not accept it refuses with `fastpath.Refuse` and nothing
else. Then: the codec really takes the fast path, falls back with the plain grammar's
messages on a refusal (and only on one), and the switch turns the fast path off.

The grammars of the formats are tested as generated and checked in; the grammars made
here (ZOO and the small ones) are generated and compiled on the spot (fastgen).
"""

from __future__ import annotations

import hashlib
import inspect
import io
import os
import random
import struct
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType
from uuid import UUID

import construct.core
import pytest
from conftest import FIXTURE_KEY, ROOT
from construct import (
    Bytes,
    Const,
    Container,
    Enum,
    EnumIntegerString,
    FocusedSeq,
    FormatField,
    GreedyBytes,
    Int8sl,
    Int8ul,
    Int16sl,
    Int16ul,
    Int32ub,
    Int32ul,
    ListContainer,
    PaddedString,
    PascalString,
    Pass,
    Prefixed,
    PrefixedArray,
    Renamed,
    StringEncoded,
    Struct,
    Switch,
    VarInt,
    this,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmbtool import chunks as chunks_module
from vmbtool import codec, fastgen, fastpath, lean
from vmbtool.blob import load_blob
from vmbtool.errors import BlobError
from vmbtool.formats.chunk import CHUNK_TYPES, ChunkHeader, ChunkType
from vmbtool.formats.common import (
    ExternalData,
    GpaRange,
    GuidAdapter,
    Since,
    StrictEnum,
    StrictFlagAdapter,
    StrictPrefixed,
)
from vmbtool.formats.gpadl import Gpadl
from vmbtool.formats.header import FileHeader, HeaderPrefix
from vmbtool.formats.incoming import Incoming
from vmbtool.formats.packet import PacketContext, PacketRecord
from vmbtool.formats.ring import RingState
from vmbtool.formats.scenario import GuestChannel
from vmbtool.formats.vsp import VspState
from vmbtool.generated.chunk import CHUNK_HEADER_LAYOUT
from vmbtool.status import NtStatus

FIXTURES = ROOT / "fixtures"
KEY = FIXTURE_KEY
BLOBS = sorted(FIXTURES.glob("*/*.vmb"))

# A grammar of what the formats do not use (yet) but the fast path compiles: big-endian
# and signed fields, a plain Enum, Bytes(this.n), a Prefixed that may leave bytes over,
# signed lengths and counts, Since inside a StrictPrefixed and at the end.
ZOO = Struct(
    "n" / Int8ul,
    "signed" / Int16sl,
    "big" / Int32ub,
    "blob" / Bytes(this.n),
    "e" / Enum(Int8ul, a=1, b=2),
    "inner" / Prefixed(Int16ul, Struct("x" / Int8ul, "rest" / GreedyBytes)),
    "loose" / Prefixed(Int8ul, Struct("y" / Int16ul)),
    "name" / PascalString(Int8sl, "utf8"),
    "tail" / StrictPrefixed(Int8ul, Struct("z" / Int8ul,
                                           Since("1.1", "w" / Int16ul, default=7))),
    "arr" / PrefixedArray(Int8sl, Int16ul),
    Since("1.1", "last" / Int32ul),
)

# Where a refusal hangs on one check of the generated code: a fixed-width read running
# past the end of a length-prefixed part just before a GreedyBytes, bytes left over in a
# StrictPrefixed part followed by something that parses, negative lengths and counts.
GREEDY_TAIL = StrictPrefixed(Int8ul, Struct("z" / Int16ul, "rest" / GreedyBytes))
LEFTOVER = Struct("u" / StrictPrefixed(Int8ul, Struct("y" / Int8ul)), "t" / GreedyBytes)
SIGNED = Struct("name" / PascalString(Int8sl, "utf8"),
                "arr" / PrefixedArray(Int8sl, Struct("v" / Int16ul)))

GRAMMARS = {
    **{kind.name: kind.grammar for kind in CHUNK_TYPES.values()},
    "ChunkHeader": ChunkHeader, "FileHeader": FileHeader, "HeaderPrefix": HeaderPrefix,
    "PacketContext": PacketContext, "ExternalData": ExternalData, "VspState": VspState,
    "GpaRange": GpaRange, "Gpadl": Gpadl, "Incoming": Incoming, "GuestChannel": GuestChannel,
    "zoo": ZOO, "greedy_tail": GREEDY_TAIL, "leftover": LEFTOVER, "signed": SIGNED,
}
TEST_ONLY = {"zoo", "greedy_tail", "leftover", "signed"}  # no generated module has them
COMPILED = {name: codec.compiled(grammar) if name not in TEST_ONLY
            else fastgen.compile_grammar(grammar) for name, grammar in GRAMMARS.items()}


def key_for(path: Path) -> bytes | None:
    return KEY if path.stem.endswith("-signed") else None


# what a fast parse builds, standing for construct's own values (`vmbtool.fastpath`)
STANDS_FOR = {fastpath.FieldContainer: Container, fastpath.FieldList: ListContainer,
              fastpath.EnumIntegerString: EnumIntegerString,
              fastpath.EnumInteger: construct.core.EnumInteger}


def kind(obj) -> type:
    """The construct class a value is or stands for."""
    return STANDS_FOR.get(type(obj), type(obj))


def same(a, b, where="obj") -> None:
    """Equal and of the same types all the way down (Container equality alone would take
    a str for an EnumIntegerString and a list for a ListContainer)."""
    assert kind(a) is kind(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        keys_a = [k for k in a if not str(k).startswith("_")]
        keys_b = [k for k in b if not str(k).startswith("_")]
        assert keys_a == keys_b, where
        for k in keys_a:
            same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, EnumIntegerString):
        assert str(a) == str(b) and a.intvalue == b.intvalue, where
    else:
        assert a == b, where


def plain_outcome(grammar, data):
    try:
        stream = io.BytesIO(data)
        obj = grammar.parse_stream(stream)
    except Exception:
        return None
    return obj, stream.tell()


def fast_outcome(compiled, data):
    try:
        return compiled.parse_from(data)
    except (fastpath.Refuse, fastpath.TooManyElements):  # anything else fails the test
        return None


def copied(obj):
    """A scanned object with each view of its data made bytes (the plain parse's)."""
    if isinstance(obj, memoryview):
        return obj.tobytes()
    if isinstance(obj, tuple):
        return tuple(copied(v) for v in obj)
    if isinstance(obj, dict):
        out = type(obj)()
        for k, v in obj.items():
            out[k] = copied(v)
        return out
    if isinstance(obj, list):
        return type(obj)(copied(v) for v in obj)
    return obj


def views_only(obj, data) -> None:
    """Every byte string of a scanned object is a view of `data`, none a copy."""
    assert not isinstance(obj, bytes | bytearray) or len(obj) == 0 or isinstance(obj, str)
    if isinstance(obj, memoryview):
        assert obj.obj is data
    elif isinstance(obj, dict):
        for v in obj.values():
            views_only(v, data)
    elif isinstance(obj, list | tuple):
        for v in obj:
            views_only(v, data)


def agree(name: str, data: bytes) -> bool:
    """Fast and plain parse both refuse `data` or give the same object, same length
    consumed (bytes and memoryview input alike); returns whether they accepted. A
    grammar with a scan (`codec.parse(views=True)`) scans to the same object, its byte
    strings views of the data."""
    plain = plain_outcome(GRAMMARS[name], data)
    for given_data in (data, memoryview(data), bytearray(data)):
        fast = fast_outcome(COMPILED[name], given_data)
        assert (plain is None) == (fast is None), f"{name}: plain {plain}, fast {fast}"
        if plain is not None:
            same(fast[0], plain[0])
            assert fast[1] == plain[1]
    scan = COMPILED[name].scan_from if COMPILED[name] is not None else None
    if scan is not None:
        try:
            scanned = scan(data)
        except (fastpath.Refuse, fastpath.TooManyElements):
            scanned = None
        assert (plain is None) == (scanned is None), f"{name}: plain {plain}, scan {scanned}"
        if plain is not None:
            same(copied(scanned[0]), copied(codec._scanned(GRAMMARS[name], plain[0])))
            assert scanned[1] == plain[1]
            views_only(scanned[0], data)
    return plain is not None


def codec_both(call):
    """The codec's answer (or error text) with the fast path on and off."""
    answers = []
    for enabled in (True, False):
        previous = codec.use_fast_path(enabled)
        try:
            answers.append(("ok", call()))
        except BlobError as exc:
            answers.append(("error", str(exc), exc.status))
        except Exception as exc:  # what the plain grammar lets through, alike
            answers.append(("raised", type(exc), str(exc)))
        finally:
            codec.use_fast_path(previous)
    return answers


# -- every grammar compiles ---------------------------------------------------------------
def test_every_grammar_compiles():
    for name, grammar in GRAMMARS.items():
        assert isinstance(COMPILED[name], fastpath.CompiledGrammar), name
        assert (codec.compiled(grammar) is None) == (name in TEST_ONLY), name


# vmbtool/fastgen writes out what these methods do; a change to them needs a change there
COPIED = [GuidAdapter._decode, GuidAdapter._encode, StrictEnum._decode, StrictPrefixed._parse,
          StrictFlagAdapter._decode, StrictFlagAdapter._encode, Since._parse, Since._build]
COPIED_SHA256 = "943cee076e9f3953218fef60273b4a3d31ed557c427492fa45d17619a64b127d"


def test_the_custom_classes_it_copies_are_unchanged():
    text = "".join(inspect.getsource(method) for method in COPIED)
    assert hashlib.sha256(text.encode()).hexdigest() == COPIED_SHA256, (
        "formats/common.py changed what vmbtool/fastgen copies: make the fast path do "
        "the same (its tests say where it does not), then update COPIED_SHA256")


@pytest.mark.parametrize("grammar", [
    Struct("a" / VarInt),
    Struct("n" / Int8ul, "data" / Bytes(lambda ctx: ctx.n)),
    Struct("x" / Int8ul, "y" / Switch(this._.kind, {1: Int8ul})),
    Struct("data" / Bytes(this.later), "later" / Int8ul),
    StringEncoded(GreedyBytes, "utf8"),
    PaddedString(4, "utf16"),
], ids=["VarInt", "lambda", "parent", "later field", "greedy string", "utf16 padding"])
def test_what_it_does_not_compile_is_refused_and_the_codec_still_works(grammar):
    with pytest.raises(fastgen.Unsupported):
        fastgen.compile_grammar(grammar)
    assert codec.compiled(grammar) is None


def test_an_unsupported_grammar_goes_the_plain_way_through_the_codec():
    grammar = Struct("a" / VarInt, "b" / Int8ul)
    assert codec.parse(grammar, b"\x81\x01\x02", "g") == Container(a=129, b=2)
    assert codec.build(grammar, {"a": 129, "b": 2}, "g") == b"\x81\x01\x02"


# -- the golden blobs ------------------------------------------------------------------
@pytest.mark.parametrize("path", BLOBS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_chunk_of_every_golden_blob(path):
    blob = load_blob(str(path), key=key_for(path))
    header = blob.header_bytes[:FileHeader.sizeof()]
    for name, data in (("FileHeader", header), ("HeaderPrefix", header[:16])):
        assert agree(name, data)
        plain = GRAMMARS[name].parse(data)
        assert COMPILED[name].build(plain) == GRAMMARS[name].build(plain) == data
    assert COMPILED["HeaderPrefix"].parse_from(blob.header_bytes)[1] == 16
    seen = set()
    for chunk in blob.chunks:
        assert len(chunk.head) == 12
        assert agree("ChunkHeader", chunk.head)
        head = ChunkHeader.parse(chunk.head)
        assert COMPILED["ChunkHeader"].build(head) == ChunkHeader.build(head) == chunk.head
        kind = CHUNK_TYPES[chunk.type]
        grammar, fast = kind.grammar, COMPILED[kind.name]
        assert agree(kind.name, chunk.data)
        plain = grammar.parse(chunk.data)
        assert fast.build(plain) == grammar.build(plain) == chunk.data
        assert fast.build(fast.parse(chunk.data)) == chunk.data
        if fast.pack is not None:  # the build from a scan's tuples
            assert fast.pack(copied(fast.scan_from(chunk.data)[0])) == chunk.data
            assert codec.pack(grammar, codec._scanned(grammar, plain), kind.name) == chunk.data
        seen.add(kind.name)
    assert {"channel", "ring", "gpadls", "packet", "pending_incoming", "channel_end",
            "scenario", "end"} <= seen


def test_the_fixtures_hold_every_chunk_type_and_external_data_kind():
    types, kinds = set(), set()
    for path in BLOBS:
        for chunk in load_blob(str(path), key=key_for(path)).chunks:
            types.add(chunk.type)
            if chunk.type == 4:
                kinds.add(str(PacketRecord.parse(chunk.data).lib_buf.external.kind))
    assert types == set(CHUNK_TYPES)
    assert kinds >= {"none"}


# -- objects drawn from the grammars -------------------------------------------------------
SMALL = {"data_pages": st.integers(0, 2)}  # ring pages: keep the drawn rings small


def _int_range(field: FormatField) -> tuple[int, int]:
    bits = field.length * 8
    if field.fmtstr[1:].islower():
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _length_field(node) -> FormatField:
    while type(node) is Renamed:
        node = node.subcon
    return node


def _text(encoding: str, max_bytes: int):
    if encoding == "ascii":
        return st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=max_bytes)
    return st.text(st.characters(min_codepoint=1, exclude_categories=("Cs",)),
                   max_size=max_bytes // 4)


def draw_object(draw, node, scope: dict, name: str | None = None):
    """A random object the grammar builds (valid, so the plain grammar builds it too)."""
    kind = type(node)
    if kind is Renamed:
        return draw_object(draw, node.subcon, scope, node.name)
    if kind is Since:
        return draw(st.none()) if draw(st.booleans()) else draw_object(
            draw, node.subcon, scope, name)
    if kind is FormatField:
        if name in SMALL:
            return draw(SMALL[name])
        low, high = _int_range(node)
        return draw(st.integers(low, high))
    if kind is Const:
        return draw(st.sampled_from([None, node.value]))
    if kind is Bytes:
        length = node.length(scope) if callable(node.length) else node.length
        return random.Random(draw(st.integers(0, 2**32))).randbytes(length)
    if kind is type(GreedyBytes):
        return draw(st.binary(max_size=300))
    if kind in (Enum, StrictEnum):
        names = list(node.encmapping)
        return draw(st.sampled_from([*names, *map(str, names), *node.decmapping]))
    if kind is StrictFlagAdapter:
        return draw(st.booleans())
    if kind is GuidAdapter:
        return str(draw(st.uuids()))
    if kind is StringEncoded:
        sub = node.subcon
        if type(sub) is Prefixed:
            return draw(_text(node.encoding, min(_int_range(_length_field(
                sub.lengthfield))[1], 200)))
        return draw(_text(node.encoding, sub.length))
    if kind in (Prefixed, StrictPrefixed):
        return draw_object(draw, node.subcon, scope)
    if kind is Struct:
        obj, inner = {}, {}
        for sc in node.subcons:
            value = draw_object(draw, sc, inner)
            if sc.name:
                obj[sc.name] = inner[sc.name] = value
        return obj
    if kind is Switch:
        return draw_object(draw, node.cases.get(node.keyfunc(scope), node.default), scope)
    if kind is type(Pass):
        return None
    if kind is FocusedSeq:  # PrefixedArray
        countfield = _length_field(node.subcons[0].subcon.subcon)
        element = node.subcons[1].subcon.subcon
        count = draw(st.integers(0, min(_int_range(countfield)[1], 4)))
        return [draw_object(draw, element, {}) for _ in range(count)]
    raise AssertionError(f"no strategy for {node!r}")


@st.composite
def objects(draw, name: str):
    return draw_object(draw, GRAMMARS[name], {})


BREAKERS = [None, -1, 1 << 64, "x", "", b"x", b"", 1.5, True, bytearray(b"\x01\x02"),
            memoryview(b"ab"), [], {}, 7, "00000000-0000-0000-0000-000000000000", "inband",
            "x" * 17, "\u00e9" * 9, "x" * 300, b"x" * 17, (1, 2), 0.0]


def each_grammar(max_examples: int):
    """A test run for every grammar, drawing `data` for `max_examples` examples."""
    def wrap(test):
        test = given(data=st.data())(test)
        test = settings(max_examples=max_examples, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow])(test)
        return pytest.mark.parametrize("name", sorted(GRAMMARS))(test)
    return wrap


def leaves(obj, path=()):
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaves(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from leaves(v, (*path, i))


def replaced(obj, path, value):
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        return {**obj, head: replaced(obj[head], rest, value)}
    return [replaced(v, rest, value) if i == head else v for i, v in enumerate(obj)]


def plain_build(grammar, obj):
    try:
        return grammar.build(obj)
    except Exception:
        return None


@each_grammar(max_examples=40)
def test_drawn_objects_build_the_same_bytes_and_parse_back_the_same(name, data):
    grammar, fast = GRAMMARS[name], COMPILED[name]
    obj = data.draw(objects(name))
    built = grammar.build(obj)
    assert fast.build(obj) == built
    assert agree(name, built)
    parsed = grammar.parse(built)
    assert fast.build(parsed) == grammar.build(parsed)  # (a Since default may differ)


@each_grammar(max_examples=60)
def test_broken_objects_are_built_the_same_or_left_to_the_plain_grammar(name, data):
    grammar, fast = GRAMMARS[name], COMPILED[name]
    obj = data.draw(objects(name))
    path = data.draw(st.sampled_from(list(leaves(obj))))
    broken = replaced(obj, path, data.draw(st.sampled_from(BREAKERS)))
    plain = plain_build(grammar, broken)
    try:
        built = fast.build(broken)
    except fastpath.Refuse:  # the one way it says no: anything else fails the test
        built = None
    if built is not None:  # whatever the fast path builds, the plain grammar builds
        assert built == plain
    on, off = codec_both(lambda: codec.build(grammar, broken, name))
    assert on == off


# -- mutated bytes ----------------------------------------------------------------------
def _samples() -> list[tuple[str, bytes]]:
    samples: dict[tuple[str, int], bytes] = {}
    for path in BLOBS:
        blob = load_blob(str(path), key=key_for(path))
        samples.setdefault(("FileHeader", 0), blob.header_bytes[:52])
        samples.setdefault(("HeaderPrefix", 0), blob.header_bytes[:16])
        for chunk in blob.chunks:
            name = CHUNK_TYPES[chunk.type].name
            samples.setdefault(("ChunkHeader", chunk.type), chunk.head)
            for variant in range(3):  # a few of each kind, of different sizes
                if samples.setdefault((name, len(chunk.data) * 3 + variant),
                                      chunk.data) is chunk.data:
                    break
    by_name: dict[str, list[bytes]] = {}
    for (name, _), data in sorted(samples.items()):
        by_name.setdefault(name, []).append(data)
    return [(name, data) for name, datas in by_name.items() for data in datas[:4]]


SAMPLES = _samples()

MUTATION = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 4095), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 4095)),
    st.tuples(st.just("add"), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("insert"), st.integers(0, 4095), st.binary(min_size=1, max_size=4)),
    st.tuples(st.just("delete"), st.integers(0, 4095), st.integers(1, 4)),
)


def mutate(data: bytes, mutations) -> bytes:
    data = bytearray(data)
    for op, *args in mutations:
        if not data and op != "add":
            continue
        if op == "set":
            data[args[0] % len(data)] = args[1]
        elif op == "cut":
            del data[args[0] % len(data):]
        elif op == "add":
            data += args[0]
        elif op == "insert":
            at = args[0] % len(data)
            data[at:at] = args[1]
        else:
            at = args[0] % len(data)
            del data[at:at + args[1]]
    return bytes(data)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sample=st.sampled_from(SAMPLES), mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_mutated_chunks_are_refused_or_accepted_alike(sample, mutations):
    name, data = sample
    broken = mutate(data, mutations)
    agree(name, broken)
    on, off = codec_both(lambda: codec.parse(GRAMMARS[name], broken, name, 100))
    if on[0] == "error" and on[2] == NtStatus.INSUFFICIENT_RESOURCES:
        # a PFN count past the element budget: refused before the list is built; the
        # plain grammar, switched on alone, runs out of these small inputs' data instead
        assert off[0] == "error"
        return
    assert on[0] == off[0]
    if on[0] == "ok":
        same(on[1], off[1])
    else:
        assert on == off


@pytest.mark.parametrize("name", ["ChunkHeader", "FileHeader", "HeaderPrefix", "ExternalData",
                                  "PacketContext", "PacketRecord", "zoo", "channel", "note",
                                  "greedy_tail", "leftover", "signed"])
@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=120))
def test_random_bytes_are_refused_or_accepted_alike(name, data):
    name = {"PacketRecord": "packet"}.get(name, name)
    agree(name, data)


@each_grammar(max_examples=40)
def test_drawn_objects_mutated_as_bytes_parse_alike(name, data):
    built = GRAMMARS[name].build(data.draw(objects(name)))
    agree(name, mutate(built, data.draw(st.lists(MUTATION, min_size=1, max_size=3))))


# -- hand-picked refusals -----------------------------------------------------------------
def ChannelContext_example() -> dict:  # noqa: N802
    return {"role": "server", "state": 3, "interface_type": str(UUID(int=1)),
            "interface_instance": str(UUID(int=2)), "subchannel_index": 0, "flags": 0,
            "max_packet_size": 4096, "max_external_data_size": 0, "max_chain_length": 0,
            "client_context_size": 0, "mmio_megabytes": 0, "mmio_megabytes_optional": 0,
            "incoming_ring_pages": 1, "outgoing_ring_pages": 1, "friendly_name": "n\u00e9",
            "next_transaction_id": 1, "next_incoming_number": 1, "next_gpadl_handle": 1}


def _packet_record(**context) -> bytes:
    base = {"transaction_id": 5, "state": "in_ring", "type": "inband", "send_flags": 1,
            "ring_offset": 64, "pointer": 0xFFFF0000, "completion_routine": "done",
            "payload": b"p" * 10, "external": {"kind": "none", "body": None}}
    return PacketRecord.build({"lib_buf": {**base, **context}, "save_buf": b"s"})


GOOD_PACKET = _packet_record()


def _patched(data: bytes, at: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + len(new):]


REFUSED = {
    "short": ("ChunkHeader", b"\x01\x00\x01\x00\x00\x00\x00"),
    "const": ("ChunkHeader", b"\x01\x00\x01\x01" + bytes(8)),
    "magic": ("HeaderPrefix", b"VMBSAVE\x01" + bytes(8)),
    "enum": ("packet", _patched(GOOD_PACKET, 12, b"\x09")),  # state 9
    "enum u16": ("packet", _patched(GOOD_PACKET, 13, b"\x05\x00")),  # type 5
    "flag": ("gpadls", struct.pack("<IIBBIII", 1, 7, 2, 0, 0, 0, 0)),
    "ascii": ("packet", _patched(GOOD_PACKET, 33, b"\xff")),  # completion routine
    "utf8": ("note", struct.pack("<I", 2) + b"\xc3\x28"),
    "leftover in lib_buf": ("packet", struct.pack("<I", struct.unpack_from(
        "<I", GOOD_PACKET)[0] + 1) + GOOD_PACKET[4:-5] + b"\x00" + GOOD_PACKET[-5:]),
    "lib_buf too long": ("packet", _patched(GOOD_PACKET, 0, b"\xff\x00")),
    "switch kind": ("ExternalData", b"\x03\x00"),
    "ring short": ("ring", bytes(21) + struct.pack("<I", 1) + bytes(4095)),
    "array count": ("gpadls", struct.pack("<I", 0xFFFFFFFF)),
    "greedy over": ("VspState", struct.pack("<I", 5) + b"abc"),
    "read past a part": ("greedy_tail", b"\x01\xaa\xbb"),
    "left over, then more": ("leftover", b"\x02\x07\x08"),
    "negative length": ("signed", b"\xff\x00"),
    "negative count": ("signed", b"\x00\xff"),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_refused_alike_with_the_plain_grammars_message(case):
    name, data = REFUSED[case]
    with pytest.raises(fastpath.Refuse):
        COMPILED[name].parse_from(data)
    assert plain_outcome(GRAMMARS[name], data) is None
    on, off = codec_both(lambda: codec.parse(GRAMMARS[name], data, name, 7))
    assert on == off and on[0] == "error"


def test_the_good_ones_are_accepted():
    assert agree("packet", GOOD_PACKET)
    for name, data in (("greedy_tail", b"\x02\xaa\xbb"), ("leftover", b"\x01\x07\x08"),
                       ("signed", b"\x01a\x01\x05\x00")):
        assert agree(name, data)


CHUNK_HEADER = {"type": 4, "flags": 1, "reserved": 0, "length": 9, "crc32c": 3}
PACKET = PacketRecord.parse(GOOD_PACKET)


def _with(obj: dict, path: str, value) -> dict:
    head, _, rest = path.partition(".")
    return {**obj, head: _with(obj[head], rest, value) if rest else value}


BUILD_REFUSED = {
    "not ascii": ("packet", _with(PACKET, "lib_buf.completion_routine", "\u00e9")),
    "string too long for its length": ("packet", _with(PACKET, "lib_buf.completion_routine",
                                                       "x" * 256)),
    "padded too long": ("FileHeader", _with(FileHeader.parse(FileHeader.build({
        "format_major": 1, "format_minor": 1, "header_size": 56, "flags": 0,
        "compression": "zstd", "level": 3, "writer_version": "0.1.0", "created_ns": 1,
        "channel_count": 1})), "writer_version", "x" * 17)),
    "a mapping that is not a dict": ("ChunkHeader", MappingProxyType(CHUNK_HEADER)),
    "None for a Struct": ("ChunkHeader", None),
    "const": ("ChunkHeader", {**CHUNK_HEADER, "reserved": 1}),
    "negative u16": ("ChunkHeader", {**CHUNK_HEADER, "type": -1}),
    "float": ("ChunkHeader", {**CHUNK_HEADER, "type": 1.0}),
    "missing field": ("ChunkHeader", {k: v for k, v in CHUNK_HEADER.items() if k != "length"}),
    "unknown enum name": ("packet", _with(PACKET, "lib_buf.state", "gone")),
    "switch default": ("ExternalData", {"kind": 3, "body": None}),
    "bytes of the wrong length": ("end", {"channel_count": 1, "chunk_count": 2,
                                          "packet_count": 3, "digest": b"x" * 31}),
    "ring data short": ("ring", {"direction": 0, "write_index": 0, "read_index": 0,
                                 "interrupt_mask": 0, "pending_send_size": 0,
                                 "feature_bits": 0, "data_pages": 1, "data": b""}),
    "memoryview": ("VspState", memoryview(b"ab")),
    "text for bytes": ("VspState", "ab"),
    "bad GUID": ("channel", {**ChannelContext_example(), "interface_type": "nope"}),
    "array of a generator": ("gpadls", {"gpadls": (g for g in ())}),
}


@pytest.mark.parametrize("case", BUILD_REFUSED, ids=list(BUILD_REFUSED))
def test_build_refused_alike(case):
    name, obj = BUILD_REFUSED[case]
    with pytest.raises(fastpath.Refuse):
        COMPILED[name].build(obj)
    assert plain_build(GRAMMARS[name], obj) is None
    on, off = codec_both(lambda: codec.build(GRAMMARS[name], obj, name))
    assert on == off and on[0] != "ok"


BUILD_ALIKE = {
    "bytearray": ("VspState", bytearray(b"ab")),
    "enum as a number, even unknown": ("packet", _with(_with(PACKET, "lib_buf.state", 9),
                                                      "lib_buf.type", 6)),
    "flag from an int": ("gpadls", {"gpadls": [{"handle": 1, "read_only": 5, "mapped": 0,
                                                "byte_offset": 0, "byte_length": 0,
                                                "pfns": (1, 2)}]}),
    "const given": ("ChunkHeader", {**CHUNK_HEADER, "reserved": False}),
    "bool for an int": ("ChunkHeader", {**CHUNK_HEADER, "flags": True}),
    "extra keys": ("ChunkHeader", {**CHUNK_HEADER, "extra": object()}),
    "GUID in braces": ("channel", {**ChannelContext_example(),
                                   "interface_type": "{12345678-9abc-def0-1122-334455667788}"}),
    "kind by number": ("ExternalData", {"kind": 7, "body": {"handle": 1, "sender_owns_set": 1,
                                                            "ranges": []}}),
}


@pytest.mark.parametrize("case", BUILD_ALIKE, ids=list(BUILD_ALIKE))
def test_built_alike(case):
    name, obj = BUILD_ALIKE[case]
    assert COMPILED[name].build(obj) == GRAMMARS[name].build(obj)


def test_since_fields():
    grammar = Struct("a" / Int16ul, Since("1.1", "b" / Int32ul, default=-1))
    fast = fastgen.compile_grammar(grammar)
    for data in (b"\x01\x00", b"\x01\x00\x02\x00\x00\x00"):
        same(fast.parse(data), grammar.parse(data))
    assert fast.parse(b"\x01\x00").b == -1
    with pytest.raises(fastpath.Refuse):
        fast.parse(b"\x01\x00\x02")
    assert fast.build({"a": 1, "b": None}) == grammar.build({"a": 1, "b": None}) == b"\x01\x00"
    assert fast.build({"a": 1, "b": 2}) == b"\x01\x00\x02\x00\x00\x00"


def test_enum_fields_stand_for_the_grammars_own_strings():
    obj = COMPILED["packet"].parse(GOOD_PACKET)
    state = obj.lib_buf.state
    plain = GRAMMARS["PacketContext"].state.decmapping[2]
    assert isinstance(state, fastpath.EnumIntegerString) and state == "in_ring"
    assert int(state) == state.intvalue == int(plain) == 2
    assert str(state) == "in_ring" and repr(state) == repr(plain)
    assert state is COMPILED["packet"].parse(GOOD_PACKET).lib_buf.state  # prebuilt, shared
    assert isinstance(obj.lib_buf.external.body, type(None))
    assert COMPILED["gpadls"].parse(struct.pack("<I", 0)).gpadls == ListContainer()


def test_the_fast_parse_builds_what_stands_for_constructs_containers():
    fast = COMPILED["packet"].parse(GOOD_PACKET)
    plain = GRAMMARS["packet"].parse(GOOD_PACKET)
    assert fast == plain and plain == fast and not (fast != plain)
    assert "_io" in plain and "_io" not in fast  # construct's private entry, ignored
    assert fast != {**plain, "save_buf": b"other"} and fast != [1]
    # printed as construct prints its own
    assert str(fast) == str(plain) and repr(fast) == repr(plain)
    gpadls = COMPILED["gpadls"].parse(struct.pack("<I", 0)).gpadls
    assert isinstance(gpadls, fastpath.FieldList) and repr(gpadls) == repr(ListContainer())
    # fields set and deleted as attributes are entries, as on a Container
    fast.extra = 1
    assert fast["extra"] == 1
    del fast.extra
    assert "extra" not in fast
    with pytest.raises(AttributeError):
        del fast.extra
    assert fast.copy() == fast and type(fast.copy()) is fastpath.FieldContainer


def test_leftover_bytes_message_is_the_plain_one():
    data = ChunkHeader.build({"type": 1, "flags": 0, "reserved": 0, "length": 0,
                              "crc32c": 0}) + b"xy"
    on, off = codec_both(lambda: codec.parse(ChunkHeader, data, "chunk_header", 40))
    assert on == off
    assert on[0] == "error" and "(offset 52)" in on[1] and "2 bytes left over" in on[1]
    assert codec.parse(ChunkHeader, data, "h", 0, exact=False).type == 1


def test_big_bytes_fields_are_copied_once():
    ring = {"direction": "outgoing", "write_index": 0, "read_index": 0, "interrupt_mask": 0,
            "pending_send_size": 0, "feature_bits": 1, "data_pages": 2,
            "data": bytes(range(256)) * 32}
    data = GRAMMARS["ring"].build(ring)
    for given_data in (data, memoryview(data)):
        parsed = COMPILED["ring"].parse(given_data)
        assert type(parsed.data) is bytes and parsed.data == ring["data"]


# -- the codec takes the fast path ----------------------------------------------------------
class Counting:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __call__(self, *args):
        self.calls += 1
        return self.inner(*args)


def test_the_codec_takes_the_fast_path_and_the_switch_turns_it_off(monkeypatch):
    monkeypatch.setattr(codec, "_enabled", True)  # (even under VMBTOOL_PLAIN_GRAMMARS=1)
    fast = codec.compiled(ChunkHeader)
    parse, build = Counting(fast.parse_from), Counting(fast.build)
    monkeypatch.setattr(fast, "parse_from", parse)
    monkeypatch.setattr(fast, "build", build)
    plain_parse, plain_build = Counting(ChunkHeader.parse_stream), Counting(ChunkHeader.build)
    monkeypatch.setattr(ChunkHeader, "parse_stream", plain_parse)
    monkeypatch.setattr(ChunkHeader, "build", plain_build)
    obj = {"type": 4, "flags": 1, "reserved": 0, "length": 9, "crc32c": 3}
    assert codec.fast_path_enabled()
    data = codec.build(ChunkHeader, obj, "h")
    assert codec.parse(ChunkHeader, data, "h").length == 9
    assert (parse.calls, build.calls, plain_parse.calls, plain_build.calls) == (1, 1, 0, 0)

    # a refusal goes to the plain grammar, which says why
    with pytest.raises(BlobError, match="reserved"):
        codec.parse(ChunkHeader, data[:3] + b"\x01" + data[4:], "h")
    assert (parse.calls, plain_parse.calls) == (2, 1)

    previous = codec.use_fast_path(False)
    try:
        assert previous is True and not codec.fast_path_enabled()
        assert codec.build(ChunkHeader, obj, "h") == data
        assert codec.parse(ChunkHeader, data, "h").length == 9
        assert (parse.calls, build.calls, plain_parse.calls, plain_build.calls) == (2, 1, 2, 1)
    finally:
        codec.use_fast_path(previous)


def test_the_environment_switch():
    code = "from vmbtool import codec; print(codec.fast_path_enabled())"
    for value, expected in (("1", "False"), ("0", "True"), (None, "True")):
        env = {k: v for k, v in os.environ.items() if k != "VMBTOOL_PLAIN_GRAMMARS"}
        if value is not None:
            env["VMBTOOL_PLAIN_GRAMMARS"] = value
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == expected


def test_the_codec_finds_the_generated_pair_of_each_grammar():
    assert codec.compiled(PacketRecord) is codec.compiled(PacketRecord)
    assert codec.compiled(PacketRecord).grammar is PacketRecord
    assert codec.compiled(Struct("a" / Int8ul)) is None  # not of the formats: construct
    # the grammars the runtime makes of the formats' parts have theirs too: a Struct of
    # the very same fields, and a field of a Struct
    ring_control = Struct(*RingState.subcons[:-1])
    from vmbtool.formats.ring import RingControl

    assert codec.compiled(ring_control) is codec.compiled(RingControl) is not None
    assert codec.compiled(lean.ScenarioHead) is not None
    assert codec.compiled(GuestChannel.subcons[0]) is not None
    assert codec.compiled(Struct(*RingState.subcons[:-2])) is None
    data = RingState.build({"direction": "outgoing", "write_index": 1, "read_index": 2,
                            "interrupt_mask": 3, "pending_send_size": 4, "feature_bits": 5,
                            "data_pages": 0, "data": b""})
    same(codec.compiled(ring_control).parse(data), ring_control.parse(data))


def test_an_exception_other_than_a_refusal_is_not_hidden(monkeypatch):
    """Only Refuse sends a parse or build to the plain grammar: anything else the
    generated code raises is a bug of it, and reaches the caller."""
    monkeypatch.setattr(codec, "_enabled", True)
    fast = codec.compiled(ChunkHeader)

    def broken(*args):
        raise ZeroDivisionError("a bug of the generated code")

    data = ChunkHeader.build(CHUNK_HEADER)
    monkeypatch.setattr(fast, "parse_from", broken)
    with pytest.raises(ZeroDivisionError):
        codec.parse(ChunkHeader, data, "h")
    monkeypatch.setattr(fast, "build", broken)
    with pytest.raises(ZeroDivisionError):
        codec.build(ChunkHeader, CHUNK_HEADER, "h")

    def refuse(*args):
        raise fastpath.Refuse

    monkeypatch.setattr(fast, "parse_from", refuse)
    monkeypatch.setattr(fast, "build", refuse)
    assert codec.parse(ChunkHeader, data, "h").length == 9
    assert codec.build(ChunkHeader, CHUNK_HEADER, "h") == data


def test_an_array_past_the_element_budget_is_refused_without_the_plain_grammar(monkeypatch):
    """4 million PFNs would be a 160 MB list (and as many again parsed by construct for
    the message): the fast path refuses before building one, and the codec does not hand
    it to the plain grammar."""
    from vmbtool.errors import BlobError
    from vmbtool.formats.common import GpaRange
    from vmbtool.status import NtStatus

    n = 4 << 20
    data = struct.pack("<III", 4096, 0, n) + bytes(8 * n)
    monkeypatch.setattr(type(GpaRange), "parse_stream",
                        lambda *a, **k: pytest.fail("the plain grammar was asked"))
    with pytest.raises(BlobError) as refused:
        codec.parse(GpaRange, data, "range", 100)
    assert refused.value.status == NtStatus.INSUFFICIENT_RESOURCES
    assert refused.value.where == "range (offset 100)"
    small = struct.pack("<III", 4096, 0, 2) + struct.pack("<QQ", 7, 8)
    assert list(codec.parse(GpaRange, small, "range").pfns) == [7, 8]


def test_field_container_reads_fields_and_methods_as_construct_does():
    fast = COMPILED["ChunkHeader"].parse(bytes.fromhex("0500010000020000aabbccdd"))
    plain = ChunkHeader.parse(bytes.fromhex("0500010000020000aabbccdd"))
    assert type(fast) is fastpath.FieldContainer and fast == plain
    assert (fast.type, fast.length, fast["crc32c"]) == (5, 0x200, 0xDDCCBBAA)
    assert repr(fast) == repr(plain) and str(fast) == str(plain)
    assert list(fast.keys()) == [k for k in plain.keys() if k != "_io"]  # still methods
    fast.length = 7  # writes go to the dict, and reads see them
    assert fast["length"] == 7 and fast.length == 7
    del fast.length
    assert "length" not in fast and not hasattr(fast, "length")
    with pytest.raises(AttributeError):
        fast.nothing  # noqa: B018


FOCUSED_PARTS: set = set()


def field_names(node, seen=None):
    """The names of the fields a grammar's containers have (subcons, subcon, a Switch's
    cases; a FocusedSeq's own parts, such as PrefixedArray's "count" and "items", make
    no container)."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    if getattr(node, "name", None) and node not in FOCUSED_PARTS:
        yield node.name
    inner = node
    while isinstance(inner, Renamed):
        inner = inner.subcon
    if isinstance(inner, FocusedSeq):
        FOCUSED_PARTS.update(inner.subcons)
    children = list(getattr(node, "subcons", None) or [])
    children += [getattr(node, "subcon", None), getattr(node, "default", None)]
    children += list((getattr(node, "cases", None) or {}).values())
    for child in children:
        if hasattr(child, "_parse"):
            yield from field_names(child, seen)


def test_no_grammar_names_a_field_after_a_container_method():
    """A field so named would hide the method on a FieldContainer (and is reachable only
    by key on construct's own Container)."""
    methods = {name for name in dir(Container) if not name.startswith("__")}
    for name, grammar in GRAMMARS.items():
        for field in field_names(grammar):
            assert field not in methods, f"{name}: field {field!r}"


def test_record_struct_is_the_chunk_headers_layout_from_its_grammar():
    layout = fastgen.record_struct(ChunkHeader)
    assert layout.format == "<HBBLL" and layout.size == ChunkHeader.sizeof() == 12
    assert chunks_module.CHUNK_HEADER.format == CHUNK_HEADER_LAYOUT.format == layout.format
    rng = random.Random(7)
    for _ in range(200):
        raw = bytes(rng.getrandbits(8) for _ in range(layout.size))
        raw = raw[:3] + b"\0" + raw[4:]  # the reserved byte is a Const(0)
        parsed = ChunkHeader.parse(raw)
        assert layout.unpack(raw) == tuple(parsed[k] for k in
                                           ("type", "flags", "reserved", "length", "crc32c"))
    for grammar in (ZOO, CHUNK_TYPES[ChunkType.PACKET].grammar, Int32ul):
        with pytest.raises(fastgen.Unsupported):
            fastgen.record_struct(grammar)


def test_the_packet_record_has_a_scan_and_only_a_check_uses_it(monkeypatch):
    """PACKET records a check keeps nothing of are scanned (tuples of their fields,
    payload and VSP state views of the chunk's data); inspect's tally, which hands each
    record on, parses them."""
    from vmbtool.blob import BlobReader
    from vmbtool.blob.consumers import Check, Tally

    assert COMPILED["packet"].scan_from is not None
    asked = []
    real_parse, real_scan, real_usual = codec.parse, codec.scan, codec.usual_scan

    def parse(grammar, *args, **kwargs):
        asked.append(("parse", codec.compiled(grammar) is COMPILED["packet"]))
        return real_parse(grammar, *args, **kwargs)

    def scan(grammar, *args, **kwargs):
        asked.append(("scan", codec.compiled(grammar) is COMPILED["packet"]))
        return real_scan(grammar, *args, **kwargs)

    def usual_scan(grammar, data):  # the usual record's scan, before `scan`'s wrappers
        obj = real_usual(grammar, data)
        if obj is not None:
            asked.append(("scan", codec.compiled(grammar) is COMPILED["packet"]))
        return obj

    monkeypatch.setattr(codec, "parse", parse)
    monkeypatch.setattr(codec, "scan", scan)
    monkeypatch.setattr(codec, "usual_scan", usual_scan)
    path = BLOBS[0]
    for consumer, expected in ((Check(), "scan"), (Tally(lambda i, r: None), "parse")):
        asked.clear()
        with BlobReader(str(path), key_for(path), consumer) as reader:
            for _ in reader.channels():
                pass
        packets = {how for how, packet in asked if packet}
        assert packets == {expected}
        assert ("scan", False) not in asked  # nothing else is scanned


@pytest.mark.parametrize("fast", [True, False])
def test_a_scan_refused_by_the_fast_path_is_the_plain_parse_in_tuples(fast, monkeypatch):
    """Where the generated scan refuses (or the fast path is off), codec.scan gives the
    plain grammar's answer in the scan's shape, or its refusal in its words."""
    blob = load_blob(str(BLOBS[0]), key=key_for(BLOBS[0]))
    data = next(c.data for c in blob.chunks if c.type == 4)  # a PACKET
    grammar = GRAMMARS["packet"]
    expected = codec._scanned(grammar, grammar.parse(data))
    previous = codec.use_fast_path(fast)
    try:
        if fast:
            monkeypatch.setattr(COMPILED["packet"], "scan_from", refusing)
        assert copied(codec.scan(grammar, data, "packet")) == copied(expected)
        with pytest.raises(BlobError) as refused:
            codec.scan(grammar, data[:-1], "packet", 40)
        with pytest.raises(BlobError) as plain:
            codec.parse(grammar, data[:-1], "packet", 40)
        assert str(refused.value) == str(plain.value)
    finally:
        codec.use_fast_path(previous)


def refusing(data):
    raise fastpath.Refuse


def test_the_usual_scan_takes_only_a_whole_record_and_the_chunk_scan_says_the_rest():
    """`codec.usual_scan` (a chunk's scan before any wrapper) answers only for a whole,
    usual record; a record cut short or followed by a byte is left to `codec.scan`,
    which `chunks.scan_chunk` then names the problem with, in the plain grammar's words."""
    from vmbtool.chunks import RawChunk, scan_chunk

    blob = load_blob(str(BLOBS[0]), key=key_for(BLOBS[0]))
    data = next(c.data for c in blob.chunks if c.type == 4)  # a PACKET
    grammar = GRAMMARS["packet"]
    assert copied(codec.usual_scan(grammar, data)) == copied(codec.scan(grammar, data, "p"))
    for bad in (data[:-1], data + b"\0"):
        assert codec.usual_scan(grammar, bad) is None
        with pytest.raises(BlobError) as scanned:
            scan_chunk(RawChunk(ChunkType.PACKET, 1, bad, 100), "channels[0]")
        with pytest.raises(BlobError) as plain:
            codec.parse(grammar, bad, "channels[0].packet", 112)
        assert str(scanned.value) == str(plain.value)


@pytest.mark.parametrize("name", ["storage", "network", "pipe"])
def test_a_saved_packet_is_packed_from_its_fields_as_built_from_its_context(name):
    """Save builds each PACKET from the packet's fields (`state.packet_fields`, in one
    step, `codec.pack`): the very bytes the container of `packet_context` builds."""
    from vmbtool.scenarios import SCENARIOS
    from vmbtool.state import packet_context, packet_fields

    scenario = SCENARIOS[name].create(3)
    scenario.run(120)
    packets = [p for server in scenario.servers for p in server.packets_in_use()]
    assert packets
    grammar = GRAMMARS["packet"]
    for packet in packets:
        fields = packet_fields(packet)
        context = packet_context(packet)  # the same values, the enums by name
        assert codec._scanned(grammar, {"lib_buf": context, "save_buf": b""})[0] == tuple(
            context[name] if name in ("state", "type") else value
            for name, value in zip(context, fields, strict=True))
        assert codec.pack(grammar, (fields, b"vsp"), "packet") == codec.build(
            grammar, {"lib_buf": context, "save_buf": b"vsp"}, "packet")


def test_a_pack_the_fast_path_refuses_is_refused_as_a_build(monkeypatch):
    """What the generated pack refuses goes to the plain grammar, whose words name it."""
    grammar = GRAMMARS["packet"]
    blob = load_blob(str(BLOBS[0]), key=key_for(BLOBS[0]))
    data = next(c.data for c in blob.chunks if c.type == 4)  # a PACKET
    lib, save = copied(codec.scan(grammar, data, "packet"))
    broken = ((*lib[:6], "caf\u00e9", *lib[7:]), save)  # a routine name not ASCII
    with pytest.raises(BlobError) as packed:
        codec.pack(grammar, broken, "packet")
    with pytest.raises(BlobError) as built:
        codec.build(grammar, codec._unscanned(grammar, broken), "packet")
    assert str(packed.value) == str(built.value)
    assert codec.pack(grammar, (lib, save), "packet") == data
    monkeypatch.setattr(COMPILED["packet"], "pack", refusing)  # the plain grammar alone
    assert codec.pack(grammar, (lib, save), "packet") == data


def test_a_grammar_given_as_its_generated_code_parses_scans_and_builds_as_itself():
    """The readers name a grammar by the generated code that stands for it
    (`codec.named`); the codec gives exactly what it gives for the grammar object: the
    parse, the scan's tuples (also of a grammar whose code has no scan of its own), the
    build, the prefix layouts."""
    from vmbtool.formats.kinds import CHUNK_KINDS

    path = BLOBS[0]
    blob = load_blob(str(path), key_for(path))
    for raw in blob.chunks:
        kind = CHUNK_KINDS[raw.type]
        named, plain = codec.named(kind.grammar), CHUNK_TYPES[raw.type].grammar
        assert isinstance(named, fastpath.CompiledGrammar) and named.grammar is plain
        parsed = codec.parse(named, raw.data, kind.name)
        same(parsed, codec.parse(plain, raw.data, kind.name))
        scanned = codec.scan(named, raw.data, kind.name)
        assert isinstance(scanned, tuple), kind.name
        assert copied(scanned) == copied(codec.scan(plain, raw.data, kind.name))
        assert codec.build(named, parsed, kind.name) == raw.data
        assert codec.pack(named, copied(scanned), kind.name) == raw.data
        for field in named.prefixes:
            assert codec.prefix_layout(named, field).format == \
                codec.prefix_layout(plain, field).format
