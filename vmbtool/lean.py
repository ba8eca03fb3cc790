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

from vmbtool import codec
from vmbtool.errors import BlobError
from vmbtool.fastpath import FieldContainer
from vmbtool.formats import limits
from vmbtool.formats.kinds import ChunkType
from vmbtool.generated.gpadl import Gpadl, GpadlTable
from vmbtool.generated.incoming import Incoming, PendingIncoming
from vmbtool.generated.packet import PacketRecord
from vmbtool.generated.scenario import (
    GuestChannel,
    GuestChannel_context,
    ScenarioHead,
    ScenarioState,
)
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

    def take(self, grammar: Any, where: str) -> Any:
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

    def array(self, element: Any, where: str, cap: int,
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

    def peek_count(self, layout: struct.Struct) -> int | None:
        """The count of the array at the cursor, not read yet (None: too few bytes)."""
        if len(self.data) - self.pos < layout.size:
            return None
        return int(layout.unpack_from(self.data, self.pos)[0])

    def kept(self, element: Any, where: str, cap: int,
             layout: struct.Struct, whole: Any | None = None) -> list[Any]:
        """An array's elements, kept: as `array` reads them, with the same errors. A
        count past `cap` is walked without keeping anything (it fails on the way: the
        data runs out, or the cap is reached), so at most `cap` elements are held.

        `whole` is a Struct of the array alone: an array within the cap is first
        parsed by its generated code in one call (the usual array, 33,000 entries of
        pending incoming in the benchmarks' guest), element by element if it refuses."""
        count = self.peek_count(layout)
        if whole is not None and count is not None and count <= cap:
            usual = codec.usual_parse_at(whole, self.data, self.pos)
            if usual is not None:
                obj, self.pos = usual
                (items,) = obj.values()  # (the array is the one field of `whole`)
                return list(items)
        entries = self.array(element, where, cap, layout)
        if count is None or count > cap:
            for _ in entries:
                pass
        return list(entries)

    def finish(self, where: str) -> None:
        left = len(self.data) - self.pos
        if left:
            raise BlobError(f"{where} (offset {self.base + self.pos})",
                            f"{left} bytes left over after the structure")


# the array chunks a reader takes apart element by element: (the chunk's name, its
# array's field, the element's grammar, the name of its cap in formats.limits, read when
# a chunk is, the count's layout, and the chunk's own grammar: the array alone)
ARRAYS: dict[int, tuple[str, str, Any, str, struct.Struct, Any]] = {
    ChunkType.INCOMING: ("pending_incoming", "packets", Incoming, "MAX_PACKETS_PER_CHANNEL",
                         INCOMING_COUNT, PendingIncoming),
    ChunkType.GPADLS: ("gpadls", "gpadls", Gpadl, "MAX_GPADLS_PER_CHANNEL", GPADL_COUNT,
                       GpadlTable),
}


def array_value(chunk_type: int, data: bytes, base: int, where: str,
                keep: bool = False) -> FieldContainer:
    """A PENDING_INCOMING or GPADLS chunk, element by element under the caps, with the
    errors a whole parse gives: walked as it is read (a check holds none of it), or kept
    (RestoreFromBuffer), a count past a cap then refused before more than the cap is
    held."""
    name, field, element, cap_name, layout, whole = ARRAYS[chunk_type]
    cap = getattr(limits, cap_name)
    cursor = Cursor(data, base, f"{where}.{name}")
    at = f"{where}.{name}.{field}"
    if keep:
        items: Any = cursor.kept(element, at, cap, layout, whole)
        cursor.finish(f"{where}.{name}")
    else:
        items = _walked(cursor, cursor.array(element, at, cap, layout), f"{where}.{name}")
    return FieldContainer({field: items})


def _walked(cursor: Cursor, items: Iterator[Any], where: str) -> Iterator[Any]:
    """The elements, then the check that nothing is left over after them."""
    yield from items
    cursor.finish(where)


def scenario(data: bytes, base: int, guest_cap: int, packet_cap: int,
             keep: bool = False) -> FieldContainer:
    """A SCENARIO chunk with each guest checked as it is read: its context and problems
    stay (`check_scenario` takes them), its packets and pending incoming only when
    `keep` (a restore needs them; a count past a cap is refused before more than the cap
    is held)."""
    cursor = Cursor(data, base, "scenario.scenario")
    head = cursor.take(ScenarioHead, "scenario.scenario")
    guests = []
    at = "scenario.scenario.guests"
    count = cursor.peek_count(GUEST_COUNT)
    keep = keep and count is not None and count <= guest_cap
    for index in range(cursor.count(at, GUEST_COUNT)):
        if index == guest_cap:
            raise BlobError(f"{at} (offset {base})", f"more than {guest_cap} guest channels",
                            NtStatus.INSUFFICIENT_RESOURCES)
        guest = FieldContainer(context=cursor.take(GuestChannel_context, f"{at}.items.context"))
        take = cursor.kept if keep else cursor.array
        packets = take(PacketRecord, f"{at}.items.packets", packet_cap, GUEST_PACKET_COUNT)
        where = f"{at}.items.pending_incoming.packets"
        entries = cursor.kept(Incoming, where, packet_cap, INCOMING_COUNT, PendingIncoming) \
            if keep else cursor.array(Incoming, where, packet_cap, INCOMING_COUNT)
        guest.packets, guest.pending_incoming = packets, FieldContainer(packets=entries)
        guest.problems = check_guest(guest, f"scenario.guests[{index}]")  # reads both through
        if not keep:
            del guest.packets, guest.pending_incoming
        guests.append(guest)
    cursor.finish("scenario.scenario")
    head.guests = guests
    return head
