"""Blobs that parse and checksum correctly but describe an impossible channel.

Each lie is made the way a person would make it: `vmbtool decode` of a golden blob, an
edit of the JSON, `vmbtool encode` (which recomputes every checksum). `vmbtool validate`
and `vmbtool restore` must both refuse every one, each lie with its own message that
names the field path (`<where>: <why>`), and the two commands must agree on it.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import FIXTURE_DIR, cli

from vmbtool.blob import load_blob, seal_body
from vmbtool.chunks import frame_bytes
from vmbtool.formats.chunk import ChunkType
from vmbtool.sim.wire import DESCRIPTOR, TRAILER

FIXTURES = FIXTURE_DIR / "v1"
ERROR = re.compile(r"^Error: bad blob at (?P<where>\S.*?): (?P<why>.+)$")
INVALID = re.compile(r"^.*: INVALID at (?P<where>\S.*?): (?P<why>.+?)( \(\+\d+ more\))?$")


def decoded(name: str, tmp_path: Path) -> dict:
    """`vmbtool decode fixtures/v1/<name>`, read back as JSON."""
    out = tmp_path / f"{name}.json"
    result = cli("decode", FIXTURES / name, "-o", out)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def encoded(doc: dict, tmp_path: Path) -> Path:
    """`vmbtool encode` of the edited document."""
    src, out = tmp_path / "lie.json", tmp_path / "lie.vmb"
    src.write_text(json.dumps(doc))
    result = cli("encode", src, "-o", out)
    assert result.exit_code == 0, result.output
    return out


# -- editing helpers -------------------------------------------------------------------


def ring(doc: dict, direction: str, channel: int = 0) -> dict:
    return doc["channels"][channel]["rings"][direction]


def edit_descriptor(doc: dict, direction: str, channel: int = 0, at: int | None = None,
                    **fields: int) -> None:
    """Change fields of the packet descriptor at `at` (default: the read index)."""
    r = ring(doc, direction, channel)
    data = bytearray.fromhex(r["data"])
    at = r["read_index"] if at is None else at
    names = ("type", "offset8", "len8", "flags", "transaction_id")
    values = dict(zip(names, DESCRIPTOR.unpack_from(data, at), strict=True))
    values.update(fields)
    DESCRIPTOR.pack_into(data, at, *(values[n] for n in names))
    r["data"] = data.hex()


def edit_trailer(doc: dict, direction: str, value: int) -> None:
    r = ring(doc, direction)
    data = bytearray.fromhex(r["data"])
    at = r["read_index"]
    len8 = DESCRIPTOR.unpack_from(data, at)[2]
    TRAILER.pack_into(data, at + len8 * 8, value)
    r["data"] = data.hex()


def recount(doc: dict) -> None:
    """Keep the counts true so that only the lie under test is a lie."""
    for ch in doc["channels"]:
        ch["channel_end"] = {"gpadl_count": len(ch["gpadls"]),
                             "packet_count": len(ch["packets"]),
                             "incoming_count": len(ch["pending_incoming"])}
    doc.pop("end", None)


def first(packets: list[dict], **match) -> dict:
    return next(p for p in packets if all(p[k] == v for k, v in match.items()))


# -- the lies ------------------------------------------------------------------------------


def index_out_of_range(doc):
    r = ring(doc, "outgoing")
    r["write_index"] = r["data_pages"] * 4096  # one past the last byte


def index_misaligned(doc):
    ring(doc, "outgoing")["read_index"] += 4


def data_offset_below_16(doc):
    edit_descriptor(doc, "outgoing", offset8=1)  # header of 8 bytes: inside the descriptor


def data_offset_past_length(doc):
    r = ring(doc, "outgoing")
    len8 = DESCRIPTOR.unpack_from(bytes.fromhex(r["data"]), r["read_index"])[2]
    edit_descriptor(doc, "outgoing", offset8=len8 + 1)


def length_past_write_index(doc):
    edit_descriptor(doc, "outgoing", len8=0xFFFF)  # 512 KiB in a 8 KiB ring


def unknown_packet_type(doc):
    edit_descriptor(doc, "outgoing", type=0x5)


def unknown_descriptor_flags(doc):
    edit_descriptor(doc, "outgoing", flags=0x8)


def wrong_trailer(doc):
    edit_trailer(doc, "outgoing", 0x1234 << 32)


def write_index_inside_a_packet(doc):
    r = ring(doc, "outgoing")
    r["write_index"] = r["read_index"] + 16  # the unread bytes end inside the first packet


def duplicate_transaction_id(doc):
    packets = doc["channels"][0]["packets"]  # pipe: every packet is in the backlog
    packets[1]["transaction_id"] = packets[0]["transaction_id"]


def unknown_gpadl(doc):
    packet = first(doc["channels"][0]["packets"], state="backlog", type="transfer_pages")
    packet["external"]["body"]["handle"] = 0x999


def pfns_past_max_external_data(doc):
    ch = doc["channels"][0]
    limit = ch["config"]["max_external_data_size"]  # 64 KiB; max chain length is 17
    txid = ch["next_transaction_id"]
    ch["next_transaction_id"] += 1
    ch["packets"].append({
        "transaction_id": txid, "state": "backlog", "type": "gpa_direct", "flags": 1,
        "ring_offset": 0, "pointer": 0, "completion_routine": "", "payload": "00" * 16,
        "external": {"kind": "gpa_direct", "body": {"ranges": [
            {"byte_count": limit + 8, "byte_offset": 0,
             "pfns": list(range(0x1000, 0x1000 + 17))}]}},
        "vsp_state": ""})
    recount(doc)


def ring_of_no_pages(doc):
    r = ring(doc, "incoming")
    r.update(data_pages=0, data="", read_index=0, write_index=0)


def completion_for_unknown_transaction(doc):
    # network channel 0: the client's one unread packet is a completion of a RECEIVE
    r = ring(doc, "incoming")
    assert DESCRIPTOR.unpack_from(bytes.fromhex(r["data"]), r["read_index"])[0] == 0xB
    edit_descriptor(doc, "incoming", transaction_id=99999)


def ring_data_not_whole_pages(path: Path) -> None:
    """Not expressible in the JSON (the grammar sizes `data` as data_pages * 4096), so
    the encoded blob's first RING chunk gets 100 more data bytes, then is re-sealed."""
    blob = load_blob(str(path))
    chunks, done = [], False
    for raw in blob.chunks[:-1]:  # END excluded: seal_body writes it
        data = raw.data
        if raw.type == ChunkType.RING and not done:
            data, done = data + bytes(100), True
        chunks.append(frame_bytes(raw.type, data, raw.flags))
    level = None if str(blob.header.compression) == "none" else blob.header.level
    path.write_bytes(seal_body(blob.header_bytes, chunks, level, None))


Lie = tuple[str, Callable | None, Callable | None, str]  # fixture, JSON edit, byte edit, path
LIES: dict[str, Lie] = {
    "ring index out of range": (
        "storage.vmb", index_out_of_range, None, "channels[0].rings.outgoing.write_index"),
    "ring index not a multiple of 8": (
        "storage.vmb", index_misaligned, None, "channels[0].rings.outgoing.read_index"),
    "descriptor: data offset below 16": (
        "storage.vmb", data_offset_below_16, None,
        "channels[0].rings.outgoing.data@7000.descriptor.offset8"),
    "descriptor: data offset past the packet length": (
        "storage.vmb", data_offset_past_length, None,
        "channels[0].rings.outgoing.data@7000.descriptor.len8"),
    "descriptor: length past the write index": (
        "storage.vmb", length_past_write_index, None,
        "channels[0].rings.outgoing.data@7000.descriptor.len8"),
    "descriptor: unknown packet type": (
        "storage.vmb", unknown_packet_type, None,
        "channels[0].rings.outgoing.data@7000.descriptor.type"),
    "descriptor: unknown flag bits": (
        "storage.vmb", unknown_descriptor_flags, None,
        "channels[0].rings.outgoing.data@7000.descriptor.flags"),
    "packet trailer is not its start index": (
        "storage.vmb", wrong_trailer, None, "channels[0].rings.outgoing.data@7000.trailer"),
    "write index inside a packet": (
        "storage.vmb", write_index_inside_a_packet, None,
        "channels[0].rings.outgoing.data@7000.descriptor"),
    "duplicate transaction id": (
        "pipe.vmb", duplicate_transaction_id, None, "channels[0].packets[txid=219]"),
    "packet names a GPADL that does not exist": (
        "network.vmb", unknown_gpadl, None, ".external.handle"),
    "PFN ranges past the channel's max external data": (
        "storage.vmb", pfns_past_max_external_data, None,
        "channels[0].packets[txid=158].external"),
    "ring data area of no pages": (
        "storage.vmb", ring_of_no_pages, None, "channels[0].rings.incoming.data_pages"),
    "ring data area not a multiple of 4096": (
        "storage.vmb", None, ring_data_not_whole_pages, "channels[0].ring"),
    "completion for an unknown transaction": (
        "network.vmb", completion_for_unknown_transaction, None,
        "channels[0].rings.incoming.data@3344"),
}


def build_lies(tmp_path_factory, prefix: str = "lie") -> dict[str, Path]:
    """Every lie as a blob file: decode the golden blob, edit the JSON, encode."""
    out: dict[str, Path] = {}
    docs: dict[str, dict] = {}
    for number, (name, (fixture, edit, byte_edit, _path)) in enumerate(LIES.items()):
        tmp = tmp_path_factory.mktemp(f"{prefix}{number}")
        if fixture not in docs:
            docs[fixture] = decoded(fixture, tmp)
        doc = json.loads(json.dumps(docs[fixture]))
        if edit:
            edit(doc)
        out[name] = encoded(doc, tmp)
        if byte_edit:
            byte_edit(out[name])
    return out


@pytest.fixture(scope="module")
def refusals(tmp_path_factory) -> dict[str, dict[str, tuple[str, str]]]:
    """Every lie built once; what validate and restore each said about it."""
    out = {}
    for name, path in build_lies(tmp_path_factory).items():
        validate = cli("validate", path)
        restore = cli("restore", path, "--run-steps", "1")
        out[name] = {"validate": (validate.exit_code, validate.output, validate.exception),
                     "restore": (restore.exit_code, restore.stderr, restore.exception)}
    return out


def said(refusal: tuple, pattern: re.Pattern) -> tuple[str, str]:
    exit_code, text, exception = refusal
    assert exception is None or isinstance(exception, SystemExit), repr(exception)
    assert exit_code == 1, text
    lines = [m for line in text.splitlines() if (m := pattern.match(line))]
    assert len(lines) == 1, text
    return lines[0]["where"], lines[0]["why"]


@pytest.mark.parametrize("lie", list(LIES))
def test_validate_and_restore_refuse_the_lie(lie, refusals):
    path = LIES[lie][3]
    validate = said(refusals[lie]["validate"], INVALID)
    restore = said(refusals[lie]["restore"], ERROR)
    assert path in validate[0], f"{lie}: validate says {validate}"
    assert validate == restore, f"{lie}: validate and restore disagree"


def test_every_lie_has_its_own_message(refusals):
    messages = {lie: said(refusals[lie]["validate"], INVALID) for lie in LIES}
    seen: dict[tuple[str, str], str] = {}
    for lie, message in messages.items():
        assert message not in seen, f"{lie!r} and {seen.get(message)!r} both say {message}"
        seen[message] = lie
    whys = [why for _, why in messages.values()]
    assert len(set(whys)) == len(whys), "two lies are explained with the same words"


def test_the_fixtures_themselves_tell_no_lie(tmp_path):
    """The edits start from blobs that validate and restore (and survive the JSON trip)."""
    for fixture in ("storage.vmb", "network.vmb", "pipe.vmb"):
        path = encoded(decoded(fixture, tmp_path), tmp_path)
        assert path.read_bytes() == (FIXTURES / fixture).read_bytes()
        assert cli("validate", path).exit_code == 0
        assert cli("restore", path, "--run-steps", "1").exit_code == 0


def test_descriptor_edits_hit_the_first_unread_packet():
    """The storage fixture's outgoing ring: the read index is 7000, as the paths say."""
    blob = load_blob(str(FIXTURES / "storage.vmb"))
    assert blob.channels[0].rings["outgoing"].read_index == 7000
    network = load_blob(str(FIXTURES / "network.vmb"))
    assert network.channels[0].rings["incoming"].read_index == 3344
    assert struct.calcsize("<HHHHQ") == DESCRIPTOR.size
