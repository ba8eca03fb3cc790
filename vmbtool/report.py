"""What `inspect` prints: a summary a person takes in at a glance, details on request."""

from __future__ import annotations

import datetime
from collections import Counter
from typing import Any, TextIO

from vmbtool.packetfilter import PacketFilter
from vmbtool.text import escape, plural

BAR_WIDTH = 32


def ring_picture(ring: dict) -> str:
    """`[r####.....w    ]`-style bar: used bytes between the read and write index."""
    size = ring["data_pages"] * 4096
    read, write = ring["read_index"], ring["write_index"]
    if not (read < size and write < size):  # a damaged blob: no picture to draw
        return f"read {read} write {write} of {size} B (index out of range)"
    used = (write - read) % size
    cells = []
    for i in range(BAR_WIDTH):
        pos = i * size // BAR_WIDTH
        inside = (pos - read) % size < used
        cells.append("#" if inside else ".")
    r, w = read * BAR_WIDTH // size, write * BAR_WIDTH // size
    cells[r] = "R"
    cells[w] = "W" if w != r else ("=" if used == 0 else "X")
    return (f"[{''.join(cells)}] read {read} write {write} used {used} free {size - used} "
            f"of {size} B ({100 * used // size}%)")


def hexdump(data: bytes, start: int, length: int, out: TextIO, indent: str) -> None:
    size = len(data)
    for row in range(0, length, 16):
        chunk = bytes(data[(start + row + i) % size] for i in range(min(16, length - row)))
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        out.write(f"{indent}{(start + row) % size:08x}  {chunk.hex(' '):<47}  {text}\n")


class PacketTally:
    """What the summary says of a channel's packets, counted as they stream past; with
    `--packets` or a filter, the packets it lists (as JSON) are kept too."""

    def __init__(self, listing: bool, flt: PacketFilter) -> None:
        self.listing, self.flt = listing, flt
        self.count, self.vsp_bytes, self.states = 0, 0, Counter()
        self.selected: list[dict] = []
        self.gpadls = self.incoming = 0  # the channel's GPADLs and pending incoming packets

    def add(self, index: int, record: Any) -> None:
        from vmbtool.jsonview import PACKET_STATE_JSON

        self.count += 1
        self.vsp_bytes += len(record.save_buf)
        self.states[PACKET_STATE_JSON[str(record.lib_buf.state)]] += 1
        if self.listing:
            from vmbtool.jsonview import packet_json

            p = packet_json(record)
            if self.flt.matches(index, p):
                self.selected.append(p)


def stream_summary(source: str, key: bytes | None, out: TextIO, **options: Any) -> None:
    """The summary of a blob of any size from a lean read: each channel is summed up as
    it streams past and dropped, its packets counted and never kept (unless listed)."""
    import io

    from vmbtool.blob import BlobReader
    from vmbtool.blob.consumers import Tally
    from vmbtool.jsonview import channel_json, header_json

    flt = options.pop("flt", None) or PacketFilter()
    listing = bool(options["packets"] or flt)
    tallies: dict[int, PacketTally] = {}

    def on_packet(index: int, record: Any) -> None:
        tallies.setdefault(index, PacketTally(listing, flt)).add(index, record)

    def write(index: int, saved: Any) -> None:
        ch = channel_json(saved, reader.stats.get(index), options["hexdump_rings"])
        tally = tallies.pop(index, None) or PacketTally(listing, flt)
        tally.gpadls, tally.incoming = saved.gpadl_count, saved.incoming_count
        ch["packets"] = tally.selected
        write_channel(index, ch, channels, flt=flt, tally=tally, **options)

    channels = io.StringIO()
    consumer = Tally(on_packet, keep_gpadls=options["gpadls"],
                     lean=not options["hexdump_rings"])
    with BlobReader(source, key, consumer) as reader:
        flt.check_channels(reader.header.channel_count)  # before a channel is read
        last = None  # a channel's statistics follow it: it is written once they came
        for index, (saved, _chunks) in enumerate(reader.channels()):
            if last is not None:
                write(index - 1, last)
            last = saved
        if last is not None:
            write(reader.tally.channels - 1, last)
        head = header_json(reader.header, reader.signed, reader.note)
        s = reader.scenario  # a lean read's: its guests were checked, not kept
        scenario = None if s is None else {
            "scenario": s.scenario, "seed": s.seed, "steps_taken": s.steps_taken,
            "vsp_state": bytes(s.vsp_state).hex(), "vsc_state": bytes(s.vsc_state).hex()}
    write_head(head, scenario, out)
    out.write(channels.getvalue())


def write_head(doc: dict, s: dict | None, out: TextIO) -> None:
    h = doc["header"]
    created = datetime.datetime.fromtimestamp(h["created_ns"] / 1e9, datetime.UTC)
    out.write(f"format {doc['format']['major']}.{doc['format']['minor']}, written by vmbtool "
              f"{escape(h['writer_version'])} at {created:%Y-%m-%d %H:%M:%S} UTC, "
              f"{h['compression']}"
              f"{' level ' + str(h['level']) if h['compression'] != 'none' else ''}, "
              f"{'signed' if h['signed'] else 'unsigned'}\n")
    if doc.get("note") is not None:
        out.write(f"note: {escape(doc['note'])}\n")
    if s:
        out.write(f"scenario {escape(s['scenario'])}, seed {s['seed']}, "
                  f"{plural(s['steps_taken'], 'step')} taken; VSP state "
                  f"{len(s['vsp_state']) // 2} B, VSC state {len(s['vsc_state']) // 2} B\n")


def write_channel(index: int, ch: dict, out: TextIO, *, packets: bool, rings: bool,
                  gpadls: bool, hexdump_rings: bool, flt: PacketFilter,
                  tally: PacketTally) -> None:
    """One channel's lines; `tally` counts its packets (`ch` lists only those selected)."""
    if not flt.selects_channel(index):
        return
    offer = ch["offer"]
    out.write(f"\nchannel {index} \"{escape(ch['config']['friendly_name'])}\": "
              f"{escape(ch['state'])}\n"
              f"  offer {offer['interface_type']} / {offer['interface_instance']} "
              f"sub {offer['subchannel_index']}\n")
    for direction in ("incoming", "outgoing"):
        ring = ch["rings"].get(direction)
        if ring:
            out.write(f"  {direction:<8} {ring_picture(ring)}\n")
    by_state = ", ".join(f"{n} {escape(s)}" for s, n in sorted(tally.states.items())) or "none"
    out.write(f"  packets: {tally.count} ({by_state}); VSP state {tally.vsp_bytes} B\n"
              f"  GPADLs: {tally.gpadls}; pending incoming: "
              f"{tally.incoming}; next txid {ch['next_transaction_id']}\n")
    if ch.get("stats"):
        out.write(f"  stats: {stats_line(ch['stats'])}\n")
    if gpadls:
        for g in ch["gpadls"]:
            first = f"{g['pfns'][0]:#x}" if g["pfns"] else "(none)"
            out.write(f"    GPADL {g['handle']:#x}: {plural(len(g['pfns']), 'page')} from PFN "
                      f"{first}, offset {g['byte_offset']}, "
                      f"{g['byte_length']} B{', read-only' if g['read_only'] else ''}"
                      f"{', mapped' if g['mapped'] else ''}\n")
    if rings or hexdump_rings:
        for direction in ("incoming", "outgoing"):
            ring = ch["rings"].get(direction)
            if not ring:
                continue
            out.write(f"    {direction}: interrupt_mask {ring['interrupt_mask']}, "
                      f"pending_send_size {ring['pending_send_size']}, feature_bits "
                      f"{ring['feature_bits']:#x}, {ring['data_pages']} data pages\n")
            if hexdump_rings and "data" in ring and max(
                    ring["read_index"], ring["write_index"]) < len(ring["data"]) // 2:
                data = bytes.fromhex(ring["data"])
                used = (ring["write_index"] - ring["read_index"]) % len(data)
                hexdump(data, ring["read_index"], used, out, "      ")
    if packets or flt:
        selected = [p for p in ch["packets"] if flt.matches(index, p)]
        for p in selected:
            ext = p["external"]["kind"]
            routine = p["completion_routine"]
            out.write(f"    txid {p['transaction_id']:>6} {escape(p['state']):<19} "
                      f"{escape(p['type']):<15} flags {p['flags']:#x} payload "
                      f"{len(p['payload']) // 2} B{' ext ' + escape(ext) if ext != 'none' else ''}"
                      f"{' routine ' + escape(routine) if routine else ''}"
                      f" vsp {len(p['vsp_state']) // 2} B\n")
        if flt and not selected:
            out.write("    no packet matches the filter\n")


def stats_line(stats: dict[str, int]) -> str:
    entries = stats["backlog_entries"]
    wait = f", mean wait {stats['backlog_packet_steps'] / entries:.1f} steps" if entries else ""
    return (f"{stats['packets_sent']} sent, {stats['packets_completed']} completed, "
            f"{stats['bytes_sent']} ring bytes; {entries} backlogged{wait}")


def newer_version_note(info: dict[str, Any], out: TextIO) -> None:
    out.write(f"format {info['major']}.{info['minor']} (header {info['header_size']} B): "
              f"this vmbtool reads format {info['reads']}; the body cannot be decoded\n")
