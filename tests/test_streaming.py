"""The streaming paths (validate, inspect's summary) say what the decode JSON of the same
blob (`jsonview.decode(load_blob(...))`, the `decode` command's document) holds."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest
from conftest import FIXTURE_DIR, FIXTURE_KEY

from vmbtool import jsonview, report, tools
from vmbtool.blob import load_blob
from vmbtool.packetfilter import parse_filter
from vmbtool.text import escape

BLOBS = sorted(FIXTURE_DIR.glob("v*/*.vmb"))
OPTIONS = [{}, {"packets": True, "gpadls": True, "rings": True},
           {"hexdump_rings": True}, {"flt": parse_filter("channel=0,state=in_ring")}]
GOLDEN = Path(__file__).parent / "golden"


def key_for(path: Path) -> bytes | None:
    return FIXTURE_KEY if path.stem.endswith("-signed") else None


def summary_of(path: Path, options: dict) -> str:
    full = {"packets": False, "rings": False, "gpadls": False, "hexdump_rings": False,
            "flt": parse_filter(None), **options}
    out = io.StringIO()
    report.stream_summary(str(path), key_for(path), out, **full)
    return out.getvalue()


def expected_lines(doc: dict, options: dict) -> list[tuple[str, ...]]:
    """What the summary must say of the decoded blob, line by line: ("eq", line) or
    ("prefix", start[, a part the rest of the line holds])."""
    h, f = doc["header"], doc["format"]
    lines = [("prefix", f"format {f['major']}.{f['minor']}, written by vmbtool "
                        f"{h['writer_version']} at ", f", {h['compression']}")]
    if doc.get("note") is not None:
        lines.append(("eq", f"note: {escape(doc['note'])}"))
    s = doc["scenario"]
    lines.append(("eq", f"scenario {s['scenario']}, seed {s['seed']}, {s['steps_taken']} "
                        f"steps taken; VSP state {len(s['vsp_state']) // 2} B, VSC state "
                        f"{len(s['vsc_state']) // 2} B"))
    filtered = "flt" in options
    for index, ch in enumerate(doc["channels"]):
        if filtered and index != 0:
            continue
        lines += [("eq", ""),
                  ("eq", f'channel {index} "{escape(ch["config"]["friendly_name"])}": '
                         f'{ch["state"]}'),
                  ("eq", f"  offer {ch['offer']['interface_type']} / "
                         f"{ch['offer']['interface_instance']} sub "
                         f"{ch['offer']['subchannel_index']}")]
        rings = [(d, ch["rings"][d]) for d in ("incoming", "outgoing") if ch["rings"].get(d)]
        for direction, ring in rings:
            size = ring["data_pages"] * 4096
            used = (ring["write_index"] - ring["read_index"]) % size
            lines.append(("prefix", f"  {direction:<8} [",
                          f"] read {ring['read_index']} write {ring['write_index']} "
                          f"used {used} free {size - used} of {size} B"))
        states = Counter(p["state"] for p in ch["packets"])
        by_state = ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "none"
        vsp = sum(len(p["vsp_state"]) // 2 for p in ch["packets"])
        lines += [("eq", f"  packets: {len(ch['packets'])} ({by_state}); VSP state {vsp} B"),
                  ("eq", f"  GPADLs: {len(ch['gpadls'])}; pending incoming: "
                         f"{len(ch['pending_incoming'])}; next txid "
                         f"{ch['next_transaction_id']}")]
        if ch.get("stats"):
            st = ch["stats"]
            lines.append(("prefix", f"  stats: {st['packets_sent']} sent, "
                                    f"{st['packets_completed']} completed, "
                                    f"{st['bytes_sent']} ring bytes; "
                                    f"{st['backlog_entries']} backlogged"))
        if options.get("gpadls"):
            lines += [("prefix", f"    GPADL {g['handle']:#x}: ") for g in ch["gpadls"]]
        if options.get("rings") or options.get("hexdump_rings"):
            for direction, ring in rings:
                lines.append(("eq", f"    {direction}: interrupt_mask "
                                    f"{ring['interrupt_mask']}, pending_send_size "
                                    f"{ring['pending_send_size']}, feature_bits "
                                    f"{ring['feature_bits']:#x}, {ring['data_pages']} "
                                    "data pages"))
                if options.get("hexdump_rings"):
                    data = bytes.fromhex(ring["data"])
                    used = (ring["write_index"] - ring["read_index"]) % len(data)
                    for row in range(0, used, 16):
                        start = ring["read_index"] + row
                        piece = bytes(data[(start + i) % len(data)]
                                      for i in range(min(16, used - row)))
                        lines.append(("prefix", f"      {start % len(data):08x}  "
                                                f"{piece.hex(' ')}"))
        if options.get("packets") or filtered:
            listed = [p for p in ch["packets"] if not filtered or p["state"] == "in-ring"]
            lines += [("prefix", f"    txid {p['transaction_id']:>6} {p['state']:<19} "
                                 f"{p['type']:<15} flags {p['flags']:#x} payload "
                                 f"{len(p['payload']) // 2} B") for p in listed]
            if filtered and not listed:
                lines.append(("eq", "    no packet matches the filter"))
    return lines


@pytest.mark.parametrize("path", BLOBS, ids=lambda p: f"{p.parent.name}/{p.name}")
@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_streamed_summary_says_what_the_decoded_blob_holds(path, options):
    """`inspect`'s summary (`report.stream_summary`, a lean read), line by line, against
    what the decode JSON of the same blob holds: the header and scenario, each channel's
    offer, ring indexes, packet counts by state, VSP state bytes, GPADL and pending
    incoming counts and statistics; with the options, each GPADL, ring, hexdumped ring
    byte (read index to write index) and listed packet, the filter's choice included."""
    doc = jsonview.decode(load_blob(str(path), key_for(path)),
                          with_data=bool(options.get("hexdump_rings")))
    text = summary_of(path, options)
    lines = text.split("\n")
    assert lines.pop() == ""  # every line ends
    assert lines[0].endswith(", signed" if doc["header"]["signed"] else ", unsigned")
    expected = expected_lines(doc, options)
    assert len(lines) == len(expected), text
    for line, (how, want, *part) in zip(lines, expected, strict=True):
        if how == "eq":
            assert line == want
        else:
            assert line.startswith(want) and all(p in line for p in part), (line, want, part)
    if "flt" in options:  # the filter chose channel 0 alone
        assert "\nchannel 0 " in text and "\nchannel 1 " not in text


def test_streamed_summary_of_a_fixture_is_its_golden_text():
    """The whole text, ring pictures and statistics lines included, for one fixture and
    every detail option (tests/golden/inspect-v1.1-storage.txt; regenerate with
    `vmbtool inspect fixtures/v1.1/storage.vmb --packets --gpadls --ring` when the
    layout changes on purpose)."""
    path = FIXTURE_DIR / "v1.1" / "storage.vmb"
    text = summary_of(path, {"packets": True, "gpadls": True, "rings": True})
    assert text == (GOLDEN / "inspect-v1.1-storage.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("budget", [0, tools.DRY_RUN_BUDGET])
def test_validate_without_the_dry_run_still_checks_every_channel(budget, monkeypatch,
                                                                 tmp_path):
    """Above the dry-run budget validate still checks invariants and offers."""
    monkeypatch.setattr(tools, "DRY_RUN_BUDGET", budget)
    doc = jsonview.decode(load_blob(str(FIXTURE_DIR / "v1.1" / "network.vmb")))
    assert tools.validate_file(str(FIXTURE_DIR / "v1.1" / "network.vmb")).valid
    doc["channels"][2]["rings"]["outgoing"]["write_index"] += 4
    bad = tmp_path / "misaligned.vmb"
    bad.write_bytes(jsonview.encode(doc))
    verdict = tools.validate_file(str(bad))
    assert not verdict.valid
    assert verdict.problems[0][0].startswith("channels[2].rings.outgoing")
    doc = jsonview.decode(load_blob(str(FIXTURE_DIR / "v1.1" / "network.vmb")))
    doc["channels"][0], doc["channels"][1] = doc["channels"][1], doc["channels"][0]
    bad.write_bytes(jsonview.encode(doc))
    verdict = tools.validate_file(str(bad))
    assert not verdict.valid
    assert verdict.problems[0][0] in ("channels[0].context.offer", "channels[0]") or \
        "offer" in verdict.problems[0][1]
