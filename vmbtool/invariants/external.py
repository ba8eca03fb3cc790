"""A packet's external data (GPA-direct ranges, transfer pages, data using a GPADL):
its shape, and its fit in the channel's limits and GPADLs."""

from __future__ import annotations

from typing import Any

from vmbtool.invariants.problems import Problem
from vmbtool.sim.wire import PAGE_SIZE, PacketType, pfn_count
from vmbtool.state import PACKET_TYPE_NAMES, external_from

# the packet types that carry external data, as the grammar names them
EXTERNAL_TYPES = tuple(PACKET_TYPE_NAMES[t] for t in (
    PacketType.GPA_DIRECT, PacketType.TRANSFER_PAGES, PacketType.DATA_USING_GPADL))


def check_external(external, where: str, ctx: Any, gpadls: dict[int, int], ptype: str,
                   problems: list[Problem]) -> None:
    if external["kind"] == "none":  # most packets: only their type can be wrong
        if ptype in EXTERNAL_TYPES:
            problems.append((f"{where}.external", f"a {ptype} packet without external data"))
        return
    shape: list[Problem] = []
    check_external_shape(external, where, ptype, shape)
    if shape:
        problems.extend(shape)
        return
    data = external_from(external)
    if data is None:
        if ptype in EXTERNAL_TYPES:
            problems.append((f"{where}.external", f"a {ptype} packet without external data"))
        return
    if data.total_bytes > ctx.max_external_data_size:
        problems.append((f"{where}.external", f"{data.total_bytes} bytes exceed the channel's "
                         f"max external data {ctx.max_external_data_size}"))
    if data.pfn_total > ctx.max_chain_length:
        problems.append((f"{where}.external", f"{data.pfn_total} PFNs exceed the channel's "
                         f"max chain length {ctx.max_chain_length}"))
    if data.kind == PacketType.GPA_DIRECT:
        return
    if data.kind == PacketType.TRANSFER_PAGES and data.handle > 0xFFFF:
        problems.append((f"{where}.external.handle",
                         f"transfer page set id {data.handle:#x} does not fit the wire's u16"))
    if data.kind == PacketType.DATA_USING_GPADL and data.sender_owns_set:
        problems.append((f"{where}.external.sender_owns_set",
                         "a data-using-GPADL packet has no sender_owns_set on the wire"))
    length = gpadls.get(data.handle)
    if length is None:
        problems.append((f"{where}.external.handle", f"GPADL {data.handle:#x} does not exist"))
        return
    for i, r in enumerate(data.byte_ranges):
        if r.byte_offset + r.byte_count > length:
            problems.append((f"{where}.external.ranges[{i}]",
                             f"runs past GPADL {data.handle:#x} ({length} bytes)"))


def check_external_shape(external, where: str, ptype: str, problems: list[Problem]) -> None:
    """What a packet we cannot check against a channel's GPADLs must still be: external
    data of its own type, GPA ranges whose PFN count fits their offset and length."""
    kind = str(external.kind)
    if kind != "none" and kind != ptype:
        problems.append((f"{where}.external.kind", f"{kind} data on a {ptype} packet"))
        return
    if kind != "gpa_direct":
        return
    for i, r in enumerate(external.body.ranges):
        if r.byte_offset >= PAGE_SIZE or len(r.pfns) != pfn_count(r.byte_offset, r.byte_count):
            problems.append((f"{where}.external.ranges[{i}]",
                             f"{len(r.pfns)} PFNs for {r.byte_count} bytes at offset "
                             f"{r.byte_offset}"))
