"""Every grammar in vmbtool.formats, the four-way check (construct's own `common()`):
parse(bytes) == object, build(object) == bytes, sizeof where fixed, and all of it again
with the compiled grammar.

Two kinds of samples: objects taken from real saved scenarios (every chunk of a storage
blob and a network blob, cross-checked against the live channels they came from), and
hand-made ones whose bytes are written here with nothing but `struct`, from the layout
in each grammar's docstring, so the grammar and the expected bytes can disagree.
"""

from __future__ import annotations

import struct

import pytest
from construct import ConstructError, SizeofError

from vmbtool import codec
from vmbtool.blob import load_blob
from vmbtool.errors import BlobError
from vmbtool.formats.channel import ChannelContext
from vmbtool.formats.chunk import ChunkHeader, ChunkType
from vmbtool.formats.common import ExternalData
from vmbtool.formats.end import BlobEnd, ChannelEnd
from vmbtool.formats.gpadl import GpadlTable
from vmbtool.formats.header import FileHeader, HeaderPrefix
from vmbtool.formats.incoming import PendingIncoming
from vmbtool.formats.packet import PacketContext, PacketRecord
from vmbtool.formats.ring import RingState
from vmbtool.formats.scenario import ScenarioState
from vmbtool.formats.stats import Annotation, ChannelStats
from vmbtool.formats.vsp import VspState
from vmbtool.scenarios import NetworkScenario, StorageScenario
from vmbtool.snapshot import save_blob
from vmbtool.status import NtStatus

GRAMMARS = {
    "FileHeader": FileHeader, "HeaderPrefix": HeaderPrefix, "ChunkHeader": ChunkHeader,
    "ChannelContext": ChannelContext, "RingState": RingState, "GpadlTable": GpadlTable,
    "PacketRecord": PacketRecord, "PacketContext": PacketContext,
    "PendingIncoming": PendingIncoming, "ScenarioState": ScenarioState,
    "ChannelEnd": ChannelEnd, "BlobEnd": BlobEnd, "ExternalData": ExternalData,
    "VspState": VspState, "ChannelStats": ChannelStats, "Annotation": Annotation,
}
COMPILED = {name: grammar.compile() for name, grammar in GRAMMARS.items()}
FIXED_SIZES = {"FileHeader": 52, "HeaderPrefix": 16, "ChunkHeader": 12, "ChannelEnd": 12,
               "BlobEnd": 44, "ChannelStats": 44}

# A GUID and its Windows byte order, written out by hand (u32 LE, u16 LE, u16 LE, 8 bytes).
GUID = "12345678-9abc-def0-1122-334455667788"
GUID_LE = bytes.fromhex("78563412" "bc9a" "f0de" "1122334455667788")
GUID2 = "00112233-4455-6677-8899-aabbccddeeff"
GUID2_LE = bytes.fromhex("33221100" "5544" "7766" "8899aabbccddeeff")


def four_way(name: str, data: bytes, obj: object | None = None):
    """The four-way check, plain and compiled, except compiled build (see
    `compiled_build`, kept apart so a failure there hides nothing else); returns the
    parsed object."""
    grammar, compiled = GRAMMARS[name], COMPILED[name]
    parsed = grammar.parse(data)
    if obj is not None:
        assert parsed == obj
        assert grammar.build(obj) == data
    assert grammar.build(parsed) == data
    assert compiled.parse(data) == parsed
    if name in FIXED_SIZES:
        assert grammar.sizeof() == compiled.sizeof() == FIXED_SIZES[name] == len(data)
    else:
        with pytest.raises(SizeofError):
            grammar.sizeof()
        with pytest.raises(SizeofError):
            compiled.sizeof()
    return parsed


def compiled_build(name: str, data: bytes, obj: object | None = None) -> None:
    """The compiled grammar builds the same bytes from the hand-written object, the
    plainly parsed one and its own parse."""
    compiled = COMPILED[name]
    if obj is not None:
        assert compiled.build(obj) == data
    assert compiled.build(GRAMMARS[name].parse(data)) == data
    assert compiled.build(compiled.parse(data)) == data


def refuse(name: str, data: bytes) -> None:
    """Both the plain and the compiled grammar refuse `data`."""
    with pytest.raises(ConstructError):
        GRAMMARS[name].parse(data)
    with pytest.raises(ConstructError):
        COMPILED[name].parse(data)


# -- hand-made bytes ------------------------------------------------------------------
def u8(v): return struct.pack("<B", v)  # noqa: E704
def u16(v): return struct.pack("<H", v)  # noqa: E704
def u32(v): return struct.pack("<I", v)  # noqa: E704
def u64(v): return struct.pack("<Q", v)  # noqa: E704


def ext_none() -> tuple[bytes, dict]:
    return u16(0), {"kind": "none", "body": None}


def ext_gpa_direct() -> tuple[bytes, dict]:
    data = (u16(9) + u32(2)
            + u32(5000) + u32(100) + u32(2) + u64(0x80000) + u64(0x80001)
            + u32(16) + u32(4080) + u32(2) + u64(0xFFFF_FFFF_FFFF) + u64(7))
    obj = {"kind": "gpa_direct", "body": {"ranges": [
        {"byte_count": 5000, "byte_offset": 100, "pfns": [0x80000, 0x80001]},
        {"byte_count": 16, "byte_offset": 4080, "pfns": [0xFFFF_FFFF_FFFF, 7]}]}}
    return data, obj


def ext_byte_ranges(kind: int, name: str, owns: bool) -> tuple[bytes, dict]:
    data = u16(kind) + u32(0xE1E10001) + u8(int(owns)) + u32(2) + u32(240) + u32(1024) \
        + u32(1) + u32(0)
    obj = {"kind": name, "body": {"handle": 0xE1E10001, "sender_owns_set": owns, "ranges": [
        {"byte_count": 240, "byte_offset": 1024}, {"byte_count": 1, "byte_offset": 0}]}}
    return data, obj


EXTERNALS = {
    "none": ext_none(),
    "gpa_direct": ext_gpa_direct(),
    "transfer_pages": ext_byte_ranges(7, "transfer_pages", True),
    "data_using_gpadl": ext_byte_ranges(8, "data_using_gpadl", False),
    "gpa_direct_empty": (u16(9) + u32(0), {"kind": "gpa_direct", "body": {"ranges": []}}),
}


def channel_context(role: int = 0, name: str = "storage-0\u00e9") -> tuple[bytes, dict]:
    encoded = name.encode("utf8")
    data = (u8(role) + u8(4) + GUID_LE + GUID2_LE + u16(2) + u32(0x4) + u32(1600)
            + u32(0x10000) + u32(17) + u32(8) + u32(0) + u32(3) + u32(2) + u32(1)
            + u16(len(encoded)) + encoded + u64(42) + u64(7) + u32(0xE1E10003))
    obj = {"role": ["server", "client"][role], "state": 4, "interface_type": GUID,
           "interface_instance": GUID2, "subchannel_index": 2, "flags": 0x4,
           "max_packet_size": 1600, "max_external_data_size": 0x10000,
           "max_chain_length": 17, "client_context_size": 8, "mmio_megabytes": 0,
           "mmio_megabytes_optional": 3, "incoming_ring_pages": 2, "outgoing_ring_pages": 1,
           "friendly_name": name, "next_transaction_id": 42, "next_incoming_number": 7,
           "next_gpadl_handle": 0xE1E10003}
    return data, obj


def packet_context(state: int, state_name: str, ext: str = "none") -> tuple[bytes, dict]:
    ext_data, ext_obj = EXTERNALS[ext]
    ptype = {"none": 6, "gpa_direct": 9, "transfer_pages": 7, "data_using_gpadl": 8}[ext]
    tname = {6: "inband", 7: "transfer_pages", 8: "data_using_gpadl", 9: "gpa_direct"}[ptype]
    payload = b"\x01\x02\x03\x04\x05"
    data = (u64(0x1_0000_0001) + u8(state) + u16(ptype) + u32(0x5) + u32(0xFF8)
            + u64(0xDEADBEEF_CAFEF00D) + u8(9) + b"done_rtn1" + u32(len(payload)) + payload
            + ext_data)
    obj = {"transaction_id": 0x1_0000_0001, "state": state_name, "type": tname,
           "send_flags": 0x5, "ring_offset": 0xFF8, "pointer": 0xDEADBEEF_CAFEF00D,
           "completion_routine": "done_rtn1", "payload": payload, "external": ext_obj}
    return data, obj


def packet_record(save_buf: bytes = b"\xaa" * 10, **kw) -> tuple[bytes, dict]:
    lib, lib_obj = packet_context(**kw) if kw else packet_context(3, "awaiting_completion")
    return (u32(len(lib)) + lib + u32(len(save_buf)) + save_buf,
            {"lib_buf": lib_obj, "save_buf": save_buf})


def pending_incoming() -> tuple[bytes, dict]:
    ext_data, ext_obj = EXTERNALS["gpa_direct"]
    data = (u32(2)
            + u64(1) + u64(77) + u16(6) + u16(1) + u32(3) + b"abc" + u16(0)
            + u64(2) + u64(78) + u16(9) + u16(0) + u32(0) + ext_data)
    obj = {"packets": [
        {"number": 1, "transaction_id": 77, "type": "inband", "flags": 1, "payload": b"abc",
         "external": {"kind": "none", "body": None}},
        {"number": 2, "transaction_id": 78, "type": "gpa_direct", "flags": 0, "payload": b"",
         "external": ext_obj}]}
    return data, obj


def ring_state(direction: int = 1, pages: int = 1) -> tuple[bytes, dict]:
    area = bytes(range(256)) * (pages * 16)
    data = u8(direction) + u32(0x10) + u32(0x8) + u32(1) + u32(0x30) + u32(1) + u32(pages) \
        + area
    obj = {"direction": ["incoming", "outgoing"][direction], "write_index": 0x10,
           "read_index": 0x8, "interrupt_mask": 1, "pending_send_size": 0x30,
           "feature_bits": 1, "data_pages": pages, "data": area}
    return data, obj


def gpadl_table() -> tuple[bytes, dict]:
    data = (u32(2)
            + u32(0xE1E10001) + u8(0) + u8(1) + u32(0) + u32(0x10000) + u32(2) + u64(1) + u64(2)
            + u32(0xE1E10002) + u8(1) + u8(0) + u32(512) + u32(100) + u32(0))
    obj = {"gpadls": [
        {"handle": 0xE1E10001, "read_only": False, "mapped": True, "byte_offset": 0,
         "byte_length": 0x10000, "pfns": [1, 2]},
        {"handle": 0xE1E10002, "read_only": True, "mapped": False, "byte_offset": 512,
         "byte_length": 100, "pfns": []}]}
    return data, obj


def file_header(compression: int = 1, level: int = -5) -> tuple[bytes, dict]:
    data = (b"VMBSAVE\x00" + u16(1) + u16(0) + u32(56) + u32(1) + u8(compression)
            + struct.pack("<b", level) + u16(0) + b"0.1.0".ljust(16, b"\x00")
            + u64(1_700_000_000_123_456_789) + u32(3))
    obj = {"magic": b"VMBSAVE\x00", "format_major": 1, "format_minor": 0, "header_size": 56,
           "flags": 1, "compression": ["none", "zstd"][compression], "level": level,
           "reserved": 0, "writer_version": "0.1.0", "created_ns": 1_700_000_000_123_456_789,
           "channel_count": 3}
    return data, obj


def scenario_state() -> tuple[bytes, dict]:
    ctx, ctx_obj = channel_context(role=1, name="pipe-0")
    rec, rec_obj = packet_record(save_buf=b"", state=1, state_name="backlog")
    inc, inc_obj = pending_incoming()
    guest = u32(len(ctx)) + ctx + u32(1) + rec + inc
    data = (u8(4) + b"pipe" + u64(3) + u64(150) + u32(2) + b"\x01\x02" + u32(0)
            + u32(2) + guest + guest)
    guest_obj = {"context": ctx_obj, "packets": [rec_obj], "pending_incoming": inc_obj}
    obj = {"scenario": "pipe", "seed": 3, "steps_taken": 150, "vsp_state": b"\x01\x02",
           "vsc_state": b"", "guests": [guest_obj, guest_obj]}
    return data, obj


HAND_MADE = {
    "FileHeader zstd": ("FileHeader", *file_header()),
    "FileHeader none": ("FileHeader", *file_header(0, 0)),
    "HeaderPrefix": ("HeaderPrefix", b"VMBSAVE\x00" + u16(1) + u16(7) + u32(4096),
                     {"magic": b"VMBSAVE\x00", "format_major": 1, "format_minor": 7,
                      "header_size": 4096}),
    "ChunkHeader": ("ChunkHeader", u16(4) + u8(1) + u8(0) + u32(89) + u32(0xDEADBEEF),
                    {"type": 4, "flags": 1, "reserved": 0, "length": 89,
                     "crc32c": 0xDEADBEEF}),
    "ChannelContext server": ("ChannelContext", *channel_context()),
    "ChannelContext client, empty name": ("ChannelContext", *channel_context(1, "")),
    "RingState outgoing": ("RingState", *ring_state()),
    "RingState incoming 2 pages": ("RingState", *ring_state(0, 2)),
    "GpadlTable": ("GpadlTable", *gpadl_table()),
    "GpadlTable empty": ("GpadlTable", u32(0), {"gpadls": []}),
    "PacketContext allocated": ("PacketContext", *packet_context(0, "allocated")),
    "PacketContext backlog gpa": ("PacketContext", *packet_context(1, "backlog", "gpa_direct")),
    "PacketContext in_ring tp": ("PacketContext",
                                 *packet_context(2, "in_ring", "transfer_pages")),
    "PacketContext awaiting gpadl": ("PacketContext", *packet_context(
        3, "awaiting_completion", "data_using_gpadl")),
    "PacketRecord": ("PacketRecord", *packet_record()),
    "PacketRecord no save_buf": ("PacketRecord", *packet_record(b"", state=0,
                                                                state_name="allocated")),
    "PendingIncoming": ("PendingIncoming", *pending_incoming()),
    "PendingIncoming empty": ("PendingIncoming", u32(0), {"packets": []}),
    "ScenarioState": ("ScenarioState", *scenario_state()),
    "ChannelStats": ("ChannelStats", u32(2) + u64(9) + u64(7) + u64(1 << 40) + u64(3) + u64(12),
                     {"channel": 2, "packets_sent": 9, "packets_completed": 7,
                      "bytes_sent": 1 << 40, "backlog_entries": 3, "backlog_packet_steps": 12}),
    "Annotation": ("Annotation", u32(9) + "café ☕".encode(), {"text": "café ☕"}),
    "ChannelEnd": ("ChannelEnd", u32(1) + u32(70) + u32(0xFFFF_FFFF),
                   {"gpadl_count": 1, "packet_count": 70, "incoming_count": 0xFFFF_FFFF}),
    "BlobEnd": ("BlobEnd", u32(3) + u32(221) + u32(189) + bytes(range(32)),
                {"channel_count": 3, "chunk_count": 221, "packet_count": 189,
                 "digest": bytes(range(32))}),
    "VspState": ("VspState", u32(3) + b"xyz", b"xyz"),
    "VspState empty": ("VspState", u32(0), b""),
    **{f"ExternalData {kind}": ("ExternalData", data, obj)
       for kind, (data, obj) in EXTERNALS.items()},
}


@pytest.mark.parametrize("case", sorted(HAND_MADE))
def test_hand_made(case):
    name, data, obj = HAND_MADE[case]
    four_way(name, data, obj)


@pytest.mark.parametrize("case", sorted(HAND_MADE))
def test_hand_made_compiled_build(case):
    name, data, obj = HAND_MADE[case]
    compiled_build(name, data, obj)


def test_every_grammar_has_hand_made_samples():
    assert {name for name, _, _ in HAND_MADE.values()} == set(GRAMMARS)


def test_compiled_enum_keeps_its_integer():
    data, _ = packet_context(2, "in_ring", "transfer_pages")
    for grammar in (PacketContext, COMPILED["PacketContext"]):
        parsed = grammar.parse(data)
        assert (int(parsed.state), int(parsed.type), int(parsed.external.kind)) == (2, 7, 7)


# -- objects from real saved scenarios ------------------------------------------------
@pytest.fixture(scope="module", params=["storage", "network"])
def saved(request):
    """A paused scenario and its blob: storage after 100 steps (GPA-direct guest
    requests, the brief's sample) or network after 40 (transfer pages, GPADLs, queued
    completions, three channels)."""
    if request.param == "storage":
        scenario = StorageScenario.create(3)
        scenario.run(100)
    else:
        scenario = NetworkScenario.create(3)
        scenario.run(40)
    data = save_blob(scenario, level=None, created_ns=0, note=f"{request.param} — a note")
    return scenario, data, load_blob(data)


CHUNK_GRAMMARS = {ChunkType.CHANNEL: "ChannelContext", ChunkType.RING: "RingState",
                  ChunkType.GPADLS: "GpadlTable", ChunkType.PACKET: "PacketRecord",
                  ChunkType.INCOMING: "PendingIncoming", ChunkType.CHANNEL_END: "ChannelEnd",
                  ChunkType.SCENARIO: "ScenarioState", ChunkType.END: "BlobEnd",
                  ChunkType.STATS: "ChannelStats", ChunkType.NOTE: "Annotation"}


def test_real_chunks(saved):
    scenario, data, blob = saved
    assert {c.type for c in blob.chunks} == set(CHUNK_GRAMMARS)
    pos = blob.header.header_size
    for raw in blob.chunks:
        head = data[pos:pos + 12]
        ctype, flags, reserved, length, crc = struct.unpack("<HBBII", head)
        assert four_way("ChunkHeader", head, {"type": ctype, "flags": flags, "reserved": 0,
                                              "length": length, "crc32c": crc})
        required = raw.type not in (ChunkType.STATS, ChunkType.NOTE)
        assert (ctype, flags, reserved, length) == (raw.type, required, 0, len(raw.data))
        assert data[pos + 12:pos + 12 + length] == raw.data
        four_way(CHUNK_GRAMMARS[raw.type], raw.data)
        pos += 12 + length
    assert pos == len(data)


def test_real_chunks_compiled_build(saved):
    _, data, blob = saved
    compiled_build("FileHeader", data[:52])
    for raw in blob.chunks:
        compiled_build(CHUNK_GRAMMARS[raw.type], raw.data)


def test_real_header(saved):
    scenario, data, blob = saved
    head = data[:52]
    header = four_way("FileHeader", head)
    assert header == blob.header
    assert (header.format_major, str(header.compression), header.created_ns,
            header.channel_count) == (1, "none", 0, len(scenario.servers))
    prefix = four_way("HeaderPrefix", data[:16])
    assert prefix.header_size == 56


def test_real_objects_match_the_live_channels(saved):
    """Parsed chunk objects say what the paused channels hold."""
    scenario, _, blob = saved
    assert len(blob.channels) == len(scenario.servers)
    for server, channel in zip(scenario.servers, blob.channels, strict=True):
        ctx = channel.context
        assert (str(ctx.role), ctx.state) == ("server", int(server.state))
        assert ctx.interface_instance == str(server.config.interface_instance)
        assert ctx.friendly_name == server.config.friendly_name
        assert ctx.next_transaction_id == server.next_transaction_id
        for direction, ring in (("incoming", server.incoming_ring),
                                ("outgoing", server.outgoing_ring)):
            state = channel.rings[direction]
            assert (state.write_index, state.read_index) == (ring.write_index,
                                                             ring.read_index)
            assert state.data == bytes(ring.data)
        live = server.packets_in_use()
        assert [r.lib_buf.transaction_id for r in channel.packets] == \
            [p.transaction_id for p in live]
        assert [bytes(r.lib_buf.payload) for r in channel.packets] == [p.payload for p in live]
        assert sorted(g.handle for g in channel.gpadls) == \
            sorted(server.connection.gpadls.gpadls)
    guest_packets = [r for g in blob.scenario.guests for r in g.packets]
    kinds = {str(r.lib_buf.external.kind) for c in blob.channels for r in c.packets}
    kinds |= {str(r.lib_buf.external.kind) for r in guest_packets}
    assert kinds <= {"none", "gpa_direct", "transfer_pages"}
    expected = {"storage": {"none", "gpa_direct"}, "network": {"none", "transfer_pages"}}
    assert kinds == expected[scenario.name]


def test_real_sub_structures(saved):
    """Each packet's LibBuf, each external data and each guest's pending table on its
    own, as VmbPacketRestore and the guest restore see them."""
    _, _, blob = saved
    records = [r for c in blob.channels for r in c.packets]
    records += [r for g in blob.scenario.guests for r in g.packets]
    for record in records:
        lib = PacketContext.build(record.lib_buf)
        assert four_way("PacketContext", lib) == record.lib_buf
        ext = ExternalData.build(record.lib_buf.external)
        assert lib.endswith(ext)
        assert four_way("ExternalData", ext) == record.lib_buf.external
    for guest in blob.scenario.guests:
        four_way("PendingIncoming", PendingIncoming.build(guest.pending_incoming))
        four_way("ChannelContext", ChannelContext.build(guest.context))
    four_way("VspState", VspState.build(blob.scenario.vsp_state))


# -- values the grammars must refuse --------------------------------------------------
def _patched(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new):]


PC_DATA, _ = packet_context(3, "awaiting_completion", "transfer_pages")
PR_DATA, _ = packet_record()
EXT_TP, _ = EXTERNALS["transfer_pages"]
GT_DATA, _ = gpadl_table()
RING_DATA, _ = ring_state()
CC_DATA, _ = channel_context()
FH_DATA, _ = file_header()
INC_DATA, _ = pending_incoming()

REFUSED = {
    "packet state 9": ("PacketContext", _patched(PC_DATA, 8, u8(9))),
    "packet state 4 (free is never saved)": ("PacketContext", _patched(PC_DATA, 8, u8(4))),
    "packet state 9 inside a record": ("PacketRecord", _patched(PR_DATA, 4 + 8, u8(9))),
    "packet type 5": ("PacketContext", _patched(PC_DATA, 9, u16(5))),
    "external kind 5": ("ExternalData", _patched(EXT_TP, 0, u16(5))),
    "external kind 6 (inband carries none)": ("ExternalData", _patched(EXT_TP, 0, u16(6))),
    "external kind 5 inside a packet": ("PacketContext",
                                        _patched(PC_DATA, len(PC_DATA) - len(EXT_TP), u16(5))),
    "sender_owns_set byte 2": ("ExternalData", _patched(EXT_TP, 6, u8(2))),
    "ring direction 2": ("RingState", _patched(RING_DATA, 0, u8(2))),
    "gpadl read_only byte 2": ("GpadlTable", _patched(GT_DATA, 8, u8(2))),
    "gpadl mapped byte 0xff": ("GpadlTable", _patched(GT_DATA, 9, u8(0xFF))),
    "channel role 2": ("ChannelContext", _patched(CC_DATA, 0, u8(2))),
    "incoming type 0xc": ("PendingIncoming", _patched(INC_DATA, 4 + 16, u16(0xC))),
    "lib_buf with a byte left over inside its length": (
        "PacketRecord", u32(len(PC_DATA) + 1) + PC_DATA + b"\x00" + u32(0)),
    "header compression 2": ("FileHeader", _patched(FH_DATA, 20, u8(2))),
    "header magic": ("FileHeader", _patched(FH_DATA, 0, b"VMBSAVE\x01")),
    "header reserved": ("FileHeader", _patched(FH_DATA, 22, u16(1))),
    "prefix magic": ("HeaderPrefix", b"vmbsave\x00" + FH_DATA[8:16]),
    "chunk reserved": ("ChunkHeader", u16(4) + u8(1) + u8(1) + u32(0) + u32(0)),
}

# Short input: only the plain grammars (the ones vmbtool.codec uses) are held to these.
# construct's compiled parsers skip stream-length checks (`io.read(n)` unchecked), so
# they return short fields or raise struct.error instead of a ConstructError.
TRUNCATED = {
    "ring data short": ("RingState", RING_DATA[:-1]),
    "chunk header short": ("ChunkHeader", bytes(11)),
    "blob end short digest": ("BlobEnd", bytes(43)),
    "vsp state runs past": ("VspState", u32(4) + b"abc"),
    "packet record lib_buf runs past": ("PacketRecord", PR_DATA[:20]),
    "gpadl table count runs past": ("GpadlTable", GT_DATA[:-8]),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused(case):
    name, data = REFUSED[case]
    refuse(name, data)


@pytest.mark.parametrize("case", sorted(TRUNCATED))
def test_truncated(case):
    name, data = TRUNCATED[case]
    with pytest.raises(ConstructError):
        GRAMMARS[name].parse(data)
    with pytest.raises(BlobError) as info:
        codec.parse(GRAMMARS[name], data, "x")
    assert info.value.why.startswith("truncated")


def test_refusal_through_the_codec_names_the_field():
    bad = _patched(PR_DATA, 4 + 8, u8(9))
    with pytest.raises(BlobError) as info:
        codec.parse(PacketRecord, bad, "packet", 100)
    assert info.value.where.startswith("packet.lib_buf.state")
    assert "(offset 100)" in info.value.where
    assert info.value.status == NtStatus.DATA_ERROR


@pytest.mark.parametrize("obj", [
    {"kind": "gpa_direct_v2", "body": {"ranges": []}},
    {"kind": 5, "body": None},
])
def test_unknown_external_kind_is_not_built(obj):
    with pytest.raises(ConstructError):
        ExternalData.build(obj)
    # compiled: the name goes to struct.pack unmapped (construct 2.10 compiled Enum)
    with pytest.raises((ConstructError, struct.error)):
        COMPILED["ExternalData"].build(obj)


# -- the grammars' enums are the simulation's ----------------------------------------------


def test_the_grammars_packet_enums_name_the_simulations():
    """formats/ imports construct alone, so its PacketState, PacketType and ExternalKind
    spell the simulation's enums again (vmbtool.sim, the one table each): they must agree
    with what vmbtool.state converts by, name for name and value for value."""
    from vmbtool.formats.common import ExternalKind
    from vmbtool.formats.packet import PacketState, PacketType
    from vmbtool.sim.wire import PacketType as SimPacketType
    from vmbtool.state import PACKET_STATE_NAMES, PACKET_TYPE_NAMES

    def mapping(enum) -> dict[str, int]:
        return {str(name): value for name, value in enum.encmapping.items()}

    assert mapping(PacketState) == {n: int(s) for s, n in PACKET_STATE_NAMES.items()}
    assert mapping(PacketType) == {n: int(t) for t, n in PACKET_TYPE_NAMES.items()}
    external = {n: int(t) for t, n in PACKET_TYPE_NAMES.items()
                if t not in (SimPacketType.INBAND, SimPacketType.COMPLETION)}
    assert mapping(ExternalKind) == {"none": 0, **external}
