"""`inspect --filter`: which channels and packets to show.

`channel=1,state=backlog,txid=0x54` selects by field; different fields must all match, a
field given again widens it (`channel=1,channel=2`: either channel). Every value is
checked against the tables the rest of the tool uses, so a misspelt state is an error
listing the states, never an empty answer that looks like one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vmbtool.errors import UsageError

FIELDS = ("channel", "txid", "state", "type")
MAX_TRANSACTION_ID = 2**64 - 1  # formats/packet.py: a u64


def packet_states() -> tuple[str, ...]:
    """The packet states as `--json` spells them (`in-ring`)."""
    from vmbtool.jsonview import PACKET_STATE_JSON

    return tuple(PACKET_STATE_JSON.values())


def packet_types() -> tuple[str, ...]:
    """The packet types as `--json` spells them (`transfer_pages`)."""
    from vmbtool.state import PACKET_TYPE_NAMES

    return tuple(PACKET_TYPE_NAMES.values())


@dataclass
class PacketFilter:
    """What `--filter` asked for; an empty set selects everything of that field."""

    channels: set[int] = field(default_factory=set)
    txids: set[int] = field(default_factory=set)
    states: set[str] = field(default_factory=set)
    types: set[str] = field(default_factory=set)
    text: str = ""  # as given, for messages

    def __bool__(self) -> bool:
        return bool(self.channels or self.txids or self.states or self.types)

    def check_channels(self, count: int) -> None:
        """Refuse a channel number the blob does not have, naming those it has."""
        missing = sorted(c for c in self.channels if c >= count)
        if missing:
            has = ("no channels" if count == 0 else "channel 0 only" if count == 1
                   else f"channels 0-{count - 1}")
            raise bad(f"channel={missing[0]}", f"this blob has {has}")

    def selects_channel(self, index: int) -> bool:
        return not self.channels or index in self.channels

    def matches(self, index: int, packet: dict) -> bool:
        return (self.selects_channel(index)
                and (not self.txids or packet["transaction_id"] in self.txids)
                and (not self.states or str(packet["state"]) in self.states)
                and (not self.types or str(packet["type"]) in self.types))

    def as_json(self) -> dict[str, list[Any]]:
        """The filter as read (hex transaction ids as numbers, states as JSON spells them)."""
        chosen = {"channel": self.channels, "txid": self.txids, "state": self.states,
                  "type": self.types}
        return {name: sorted(values) for name, values in chosen.items() if values}


def bad(part: str, why: str) -> UsageError:
    return UsageError("bad filter", f"--filter {part!r}", why)


def parse_number(part: str, value: str, what: str, example: str) -> int:
    digits = value.lower()
    try:
        number = int(digits[2:], 16) if digits.startswith("0x") else int(digits, 10)
    except ValueError:
        number = -1
    if not 0 <= number <= MAX_TRANSACTION_ID:
        raise bad(part, f"{value!r} is not {what}: give it in decimal or hex ({example})")
    return number


def parse_filter(expr: str | None) -> PacketFilter:
    """`channel=1,state=backlog,txid=0x54` -> a PacketFilter; UsageError (exit 2) names
    the part that is wrong and the values it could be."""
    flt = PacketFilter(text=expr or "")
    if not expr:
        return flt
    for part in expr.split(","):
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or name not in FIELDS or not value:
            raise bad(part, f"use FIELD=VALUE with FIELD one of {', '.join(FIELDS)}")
        if name == "channel":
            flt.channels.add(parse_number(part, value, "a channel number", "1, 0x1"))
        elif name == "txid":
            flt.txids.add(parse_number(part, value, "a transaction id", "84, 0x54"))
        elif name == "state":
            # states are spelt with `-` in JSON (`in-ring`); `in_ring` means the same
            state = value.lower().replace("_", "-")
            if state not in packet_states():
                raise bad(part, f"state is one of {', '.join(packet_states())}")
            flt.states.add(state)
        else:
            # types are spelt with `_` in JSON (`transfer_pages`); `transfer-pages` too
            ptype = value.lower().replace("-", "_")
            if ptype not in packet_types():
                raise bad(part, f"type is one of {', '.join(packet_types())}")
            flt.types.add(ptype)
    return flt


def filter_doc(doc: dict, flt: PacketFilter) -> dict:
    """`inspect --json`'s document filtered as the text is: only the selected channels
    (in blob order) and, in them, only the matching packets; `filter` says what was
    asked for."""
    if not flt:
        return doc
    flt.check_channels(doc["header"]["channel_count"])
    channels = []
    for index, ch in enumerate(doc["channels"]):
        if flt.selects_channel(index):
            ch["packets"] = [p for p in ch["packets"] if flt.matches(index, p)]
            channels.append(ch)
    doc["channels"] = channels
    doc["filter"] = flt.as_json()
    return doc


__all__ = ["FIELDS", "PacketFilter", "filter_doc", "packet_states", "packet_types",
           "parse_filter"]
