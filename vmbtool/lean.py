"""Chunks a lean read takes apart element by element, holding none of their arrays.

A chunk's data is at most 32 MiB, but parsed whole into containers an array of tiny
elements costs some forty times that. A lean read walks PENDING_INCOMING, GPADLS and
SCENARIO chunks one element at a time with the elements' own grammars, checks each as
it comes and keeps what later checks need in compact form.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from construct import Construct, Container

from vmbtool import codec
from vmbtool.errors import BlobError
from vmbtool.formats.gpadl import GpadlTable
from vmbtool.formats.incoming import Incoming, PendingIncoming
from vmbtool.formats.packet import PacketRecord
from vmbtool.formats.scenario import GuestChannel, ScenarioHead, ScenarioState
from vmbtool.invariants import check_guest
from vmbtool.status import NtStatus

# the count in front of each array a lean read walks, as its grammar lays it out
GUEST_COUNT = codec.prefix_layout(ScenarioState, "guests")
GUEST_PACKET_COUNT = codec.prefix_layout(GuestChannel, "packets")
INCOMING_COUNT = codec.prefix_layout(PendingIncoming, "packets")
GPADL_COUNT = codec.prefix_layout(GpadlTable, "gpadls")


class Cursor:
    """Parses one grammar after another from a chunk's data."""

    def __init__(self, data: bytes, base: int, chunk_where: str) -> None:
        self.data, self.pos, self.base = data, 0, base
        self.chunk_where = chunk_where  # what codec.parse of the whole chunk is told

    def take(self, grammar: Construct, where: str) -> Any:
        """The next structure; an error names it as parsing the whole chunk would (the
        field path from the chunk down, the offset of the chunk's data)."""
        obj, self.pos = codec.parse_at(grammar, self.data, self.pos, where, self.base,
                                       self.chunk_where)
        return obj

    def count(self, where: str, layout: struct.Struct) -> int:
        """An array's count, laid out as `layout` (`codec.prefix_layout` of the array)."""
        if len(self.data) - self.pos < layout.size:
            raise BlobError(f"{where} (offset {self.base})",
                            "truncated: stream read less than specified amount, expected "
                            f"{layout.size}, found {len(self.data) - self.pos}",
                            NtStatus.DATA_ERROR)
        (count,) = layout.unpack_from(self.data, self.pos)
        self.pos += layout.size
        return int(count)

    def array(self, element: Construct, where: str, cap: int,
              layout: struct.Struct) -> Iterator[Any]:
        """An array's elements, one at a time. A count its data cannot hold fails where
        the data runs out, as a whole parse would; more than `cap` elements that are
        really there are refused at the first past the cap."""
        count = self.count(where, layout)
        for i in range(count):
            if i == cap:
                raise BlobError(f"{where} (offset {self.base})", f"{count} elements, a "
                                f"reader takes at most {cap}", NtStatus.INSUFFICIENT_RESOURCES)
            yield self.take(element, f"{where}.items")

    def finish(self, where: str) -> None:
        left = len(self.data) - self.pos
        if left:
            raise BlobError(f"{where} (offset {self.base + self.pos})",
                            f"{left} bytes left over after the structure")


def incoming_entries(data: bytes, base: int, where: str, cap: int) -> Iterator[Any]:
    """A PENDING_INCOMING chunk's entries, one at a time."""
    cursor = Cursor(data, base, f"{where}.pending_incoming")
    yield from cursor.array(Incoming, f"{where}.pending_incoming.packets", cap, INCOMING_COUNT)
    cursor.finish(f"{where}.pending_incoming")


def gpadl_entries(element: Construct, data: bytes, base: int, where: str,
                  cap: int) -> Iterator[Any]:
    """A GPADLS chunk's GPADLs, one at a time."""
    cursor = Cursor(data, base, f"{where}.gpadls")
    yield from cursor.array(element, f"{where}.gpadls.gpadls", cap, GPADL_COUNT)
    cursor.finish(f"{where}.gpadls")


def scenario(data: bytes, base: int, guest_cap: int, packet_cap: int) -> Container:
    """A SCENARIO chunk with each guest checked as it is read: its context and problems
    stay (`check_scenario` takes them), its packets and pending incoming do not."""
    cursor = Cursor(data, base, "scenario.scenario")
    head = cursor.take(ScenarioHead, "scenario.scenario")
    guests = []
    context_grammar, _packets, _incoming = GuestChannel.subcons
    at = "scenario.scenario.guests"
    for index in range(cursor.count(at, GUEST_COUNT)):
        if index == guest_cap:
            raise BlobError(f"{at} (offset {base})", f"more than {guest_cap} guest channels",
                            NtStatus.INSUFFICIENT_RESOURCES)
        guest = Container(context=cursor.take(context_grammar, f"{at}.items.context"))
        packets = cursor.array(PacketRecord, f"{at}.items.packets", packet_cap,
                               GUEST_PACKET_COUNT)
        entries = cursor.array(Incoming, f"{at}.items.pending_incoming.packets", packet_cap,
                               INCOMING_COUNT)
        guest.packets, guest.pending_incoming = packets, Container(packets=entries)
        guest.problems = check_guest(guest, f"scenario.guests[{index}]")  # reads both through
        del guest.packets, guest.pending_incoming
        guests.append(guest)
    cursor.finish("scenario.scenario")
    head.guests = guests
    return head
