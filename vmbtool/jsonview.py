"""A blob as JSON and back (decode / encode); byte fields are lowercase hex.

encode(decode(blob)) is byte-identical to the blob: every stored field is in the JSON
and chunks are written back in the canonical order. CRCs, the header CRC and the END
digest are checksums and are recomputed; counts are taken as written, so an edited
JSON can describe a lie that `validate` then catches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vmbtool import codec, docshape, jsonread, shapes
from vmbtool.blob import Blob, seal_body
from vmbtool.chunks import crc32c, frame, frame_bytes
from vmbtool.docshape import CONFIG_FIELDS, COUNTERS, PACKET_STATE_JSON
from vmbtool.errors import BlobError, JsonError
from vmbtool.formats import limits
from vmbtool.formats.kinds import ChunkType
from vmbtool.generated.header import FileHeader, HeaderTrailer
from vmbtool.sim.config import ClientState, ServerState
from vmbtool.state import SavedChannel
from vmbtool.status import NtStatus

PACKET_STATE_GRAMMAR = {v: k for k, v in PACKET_STATE_JSON.items()}


def plain(obj: Any) -> Any:
    """Parsed containers (construct's, or the fast path's that stand for them) ->
    JSON-ready values (bytes as hex, enums as names)."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).hex()
    if isinstance(obj, str):
        return str(obj)
    return obj


def unhex(value: Any, where: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except (TypeError, ValueError):
        raise BlobError(where, "not a lowercase hex string", NtStatus.INVALID_PARAMETER) from None


def state_name(role: str, value: int) -> str | int:
    enum = ServerState if role == "server" else ClientState
    return enum(value).name.lower() if value in enum._value2member_map_ else value


def state_value(role: str, name: Any, where: str) -> int:
    if isinstance(name, int):
        return name
    enum = ServerState if role == "server" else ClientState
    try:
        return enum[str(name).upper()].value
    except KeyError:
        names = ", ".join(s.name.lower() for s in enum)
        raise JsonError(where, f"expected a {role} state ({names}) or a number, got "
                        f"{shapes.show(name)}") from None


def context_json(ctx: Mapping) -> dict:
    return {
        "role": str(ctx.role),
        "offer": {"interface_type": ctx.interface_type,
                  "interface_instance": ctx.interface_instance,
                  "subchannel_index": ctx.subchannel_index},
        "state": state_name(str(ctx.role), ctx.state),
        "config": {name: ctx[name] for name in CONFIG_FIELDS},
        **{name: ctx[name] for name in COUNTERS},
    }


def context_build(ch: dict, where: str) -> dict:
    try:
        return {"role": ch["role"],
                "state": state_value(ch["role"], ch["state"], f"{where}.state"),
                **ch["offer"], **ch["config"], **{name: ch[name] for name in COUNTERS}}
    except (KeyError, TypeError) as exc:
        raise BlobError(where, f"missing field {exc}", NtStatus.INVALID_PARAMETER) from None


def packet_json(record: Mapping) -> dict:
    lib = plain(record.lib_buf)
    return {"transaction_id": lib["transaction_id"],
            "state": PACKET_STATE_JSON[lib["state"]], "type": lib["type"],
            "flags": lib["send_flags"], "ring_offset": lib["ring_offset"],
            "pointer": lib["pointer"], "completion_routine": lib["completion_routine"],
            "payload": lib["payload"], "external": lib["external"],
            "vsp_state": bytes(record.save_buf).hex()}


def packet_build(p: dict, where: str) -> dict:
    try:
        return {"lib_buf": {
            "transaction_id": p["transaction_id"],
            "state": PACKET_STATE_GRAMMAR.get(p["state"], p["state"]), "type": p["type"],
            "send_flags": p["flags"], "ring_offset": p["ring_offset"], "pointer": p["pointer"],
            "completion_routine": p["completion_routine"],
            "payload": unhex(p["payload"], f"{where}.payload"),
            "external": p["external"]},
            "save_buf": unhex(p["vsp_state"], f"{where}.vsp_state")}
    except (KeyError, TypeError) as exc:
        raise BlobError(where, f"missing field {exc}", NtStatus.INVALID_PARAMETER) from None


def incoming_json(entry: Mapping) -> dict:
    return plain(entry)


def incoming_build(entry: dict, where: str) -> dict:
    return {**entry, "payload": unhex(entry.get("payload"), f"{where}.payload")}


def ring_json(ring: Mapping, with_data: bool) -> dict:
    out = {k: v for k, v in plain(ring).items() if k != "direction"}
    if not with_data:
        out.pop("data")
    return out


def decode(blob: Blob, with_data: bool = True) -> dict:
    """The whole blob as a JSON-ready dict (see README: JSON schema)."""
    channels = [channel_json(saved, blob.stats.get(index), with_data)
                for index, saved in enumerate(blob.channels)]
    return {
        **header_json(blob.header, blob.signed, blob.note),
        "channels": channels,
        "scenario": scenario_json(blob.scenario),
        "extra_chunks": [{"after_chunk": index, "type": raw.type, "flags": raw.flags,
                          "data": raw.data.hex()}
                         for index, raw in enumerate(blob.chunks)
                         if raw.type not in set(ChunkType)],
        "end": {k: v for k, v in plain(blob.end).items() if k != "digest"},
    }


def channel_json(saved: SavedChannel, stats: Any, with_data: bool = True) -> dict:
    """One channel's saved state (and its 1.1 statistics) as JSON."""
    ch = context_json(saved.context)
    ch["rings"] = {d: ring_json(saved.rings[d], with_data)
                   for d in ("incoming", "outgoing") if d in saved.rings}
    ch["gpadls"] = plain(saved.gpadls)
    ch["packets"] = [packet_json(r) for r in saved.packets]
    ch["pending_incoming"] = [incoming_json(e) for e in saved.incoming]
    ch["channel_end"] = plain(saved.end)
    if stats is not None:
        ch["stats"] = {k: v for k, v in plain(stats).items() if k != "channel"}
    return ch


def header_json(h: Any, signed: bool, note: str | None) -> dict:
    return {
        "format": {"major": h.format_major, "minor": h.format_minor},
        "header": {"header_size": h.header_size, "flags": h.flags,
                   "compression": str(h.compression), "level": h.level,
                   "writer_version": h.writer_version, "created_ns": h.created_ns,
                   "channel_count": h.channel_count, "signed": signed},
        **({"note": note} if note is not None else {}),
    }


def scenario_json(s: Any) -> dict | None:
    scenario = None
    if s is not None:
        scenario = {"scenario": s.scenario, "seed": s.seed, "steps_taken": s.steps_taken,
                    "vsp_state": bytes(s.vsp_state).hex(),
                    "vsc_state": bytes(s.vsc_state).hex(),
                    "guests": [{**context_json(g.context),
                                "packets": [packet_json(r) for r in g.packets],
                                "pending_incoming": [incoming_json(e) for e in
                                                     g.pending_incoming.packets]}
                               for g in s.guests]}
    return scenario


def encode(doc: dict, key: bytes | None = None) -> bytes:
    """Bytes of the blob a decoded JSON document describes. Its shape is checked first
    (`docshape`): every error names the JSON path of the value at fault."""
    docshape.check_document(doc)
    if doc["header"].get("signed") and key is None:
        raise BlobError("header.signed", "the blob was signed: give the key to re-sign it",
                        NtStatus.INVALID_PARAMETER)
    try:
        return _encode(doc, key)
    except BlobError as exc:  # a value of the right shape that its structure refuses
        raise JsonError(exc.where, exc.why.removeprefix("cannot encode: ")) from None


def read_document(source: str) -> Any:
    """The JSON document in file `source` (`-`: stdin) for `encode`."""
    from vmbtool.inputs import MAX_JSON_DOCUMENT
    from vmbtool.inputs import read_document as read_bytes

    text, where = read_bytes(source, "JSON", MAX_JSON_DOCUMENT)
    return jsonread.parse_json(text, where)


class Fields:
    """A JSON object whose missing fields are errors naming their path."""

    def __init__(self, obj: Any, where: str) -> None:
        if not isinstance(obj, dict):
            raise BlobError(where, "must be a JSON object", NtStatus.INVALID_PARAMETER)
        self.obj, self.where = obj, where

    def __getitem__(self, name: str) -> Any:
        if name not in self.obj:
            raise BlobError(f"{self.where}.{name}", "missing field",
                            NtStatus.INVALID_PARAMETER)
        return self.obj[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.obj.get(name, default)


def _encode(doc: dict, key: bytes | None) -> bytes:
    channels = doc["channels"]
    fmt, header = Fields(doc["format"], "format"), Fields(doc["header"], "header")
    flags = header.get("flags", 0)
    head = codec.build(FileHeader, {
        "format_major": fmt["major"], "format_minor": fmt["minor"],
        "header_size": header["header_size"], "flags": flags,
        "compression": header["compression"], "level": header["level"], "reserved": 0,
        "writer_version": header["writer_version"], "created_ns": header["created_ns"],
        "channel_count": header["channel_count"]}, "header")
    trailer = HeaderTrailer.size
    if not len(head) + trailer <= header["header_size"] <= limits.MAX_HEADER_SIZE:
        raise BlobError("header.header_size", f"{header['header_size']} is not "
                        f"{len(head) + trailer}..{limits.MAX_HEADER_SIZE}",
                        NtStatus.INVALID_PARAMETER)
    head += b"\0" * (header["header_size"] - trailer - len(head))
    head += codec.build(HeaderTrailer, {"header_crc32c": crc32c(head)}, "header")
    chunks: list[bytes] = []
    if doc.get("note") is not None:
        chunks.append(frame(ChunkType.NOTE, {"text": doc["note"]}, "note"))
    for index, ch in enumerate(channels):
        where = f"channels[{index}]"
        chunks.append(frame(ChunkType.CHANNEL, context_build(ch, where), f"{where}.context"))
        for direction, ring in ch.get("rings", {}).items():
            if "data" not in ring:
                raise BlobError(f"{where}.rings.{direction}.data",
                                "missing: decode without data cannot be encoded",
                                NtStatus.INVALID_PARAMETER)
            chunks.append(frame(ChunkType.RING, {**ring, "direction": direction,
                                                 "data": unhex(ring["data"], where)},
                                f"{where}.rings.{direction}"))
        chunks.append(frame(ChunkType.GPADLS, {"gpadls": ch.get("gpadls", [])},
                            f"{where}.gpadls"))
        for number, p in enumerate(ch.get("packets", [])):
            chunks.append(frame(ChunkType.PACKET, packet_build(p, f"{where}.packets[{number}]"),
                                f"{where}.packets[{number}]"))
        chunks.append(frame(ChunkType.INCOMING, {"packets": [
            incoming_build(e, f"{where}.pending_incoming[{i}]")
            for i, e in enumerate(ch.get("pending_incoming", []))]}, f"{where}.pending_incoming"))
        chunks.append(frame(ChunkType.CHANNEL_END, ch.get("channel_end", {}),
                            f"{where}.channel_end"))
        if ch.get("stats") is not None:
            chunks.append(frame(ChunkType.STATS, {**Fields(ch["stats"], f"{where}.stats").obj,
                                                  "channel": index}, f"{where}.stats"))
    s = doc.get("scenario")
    if s is not None:
        s = Fields(s, "scenario")
        chunks.append(frame(ChunkType.SCENARIO, {
            "scenario": s["scenario"], "seed": s["seed"], "steps_taken": s["steps_taken"],
            "vsp_state": unhex(s["vsp_state"], "scenario.vsp_state"),
            "vsc_state": unhex(s["vsc_state"], "scenario.vsc_state"),
            "guests": [{"context": context_build(g, f"scenario.guests[{i}]"),
                        "packets": [packet_build(p, f"scenario.guests[{i}].packets[{j}]")
                                    for j, p in enumerate(g.get("packets", []))],
                        "pending_incoming": {"packets": [
                            incoming_build(e, f"scenario.guests[{i}].pending_incoming")
                            for e in g.get("pending_incoming", [])]}}
                       for i, g in enumerate(s.get("guests", []))]}, "scenario"))
    chunks = with_extra_chunks(chunks, doc.get("extra_chunks", []))
    level = None if header["compression"] == "none" else header["level"]
    return seal_body(head, chunks, level, key if header.get("signed") else None,
                     end_counts=doc.get("end"))


def with_extra_chunks(chunks: list[bytes], extras: list[dict]) -> list[bytes]:
    """The chunks with each extra chunk at its `after_chunk` index of the result, as
    decode numbers them (several at one index follow in the document's order). One
    merge: linear in both lists."""
    order = sorted(range(len(extras)), key=lambda i: extras[i]["after_chunk"])
    out: list[bytes] = []
    taken = 0
    for i in order:
        extra = extras[i]
        need = extra["after_chunk"] - len(out)
        if need > len(chunks) - taken:
            raise JsonError(f"extra_chunks[{i}].after_chunk",
                            f"{extra['after_chunk']} is past the end: the chunks before the "
                            f"end chunk are numbered 0..{len(chunks) + len(extras) - 1}")
        if need > 0:
            out.extend(chunks[taken:taken + need])
            taken += need
        out.append(frame_bytes(extra["type"], unhex(extra["data"],
                                                    f"extra_chunks[{i}].data"), extra["flags"]))
    out.extend(chunks[taken:])
    return out
