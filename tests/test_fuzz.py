"""A short, bounded pass of fuzz/fuzz_blob.py, and the bugs it found, kept as regressions.

The long runs are `python3 fuzz/fuzz_blob.py --seconds 600` (fuzz/README.md). Here: a
fixed number of the same hypothesis-driven inputs (the same ones on any machine, however
fast), then every input shape that once made
a target raise something other than a VmbtoolError, rebuilt from the golden blobs.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import struct
import sys

import pytest
from conftest import ROOT

from vmbtool import jsonview, report
from vmbtool.blob import load_blob
from vmbtool.errors import VmbtoolError
from vmbtool.tools import restore_and_run, validate_file

INPUTS = 80  # about 5 s here


@pytest.fixture(scope="module")
def fuzz_blob():
    spec = importlib.util.spec_from_file_location("fuzz_blob", ROOT / "fuzz" / "fuzz_blob.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_a_bounded_fuzz_pass_finds_nothing(fuzz_blob):
    stats = fuzz_blob.fuzz(0.0, seed=20240611, crashes=None, quiet=True, batch=25,
                           inputs=INPUTS)
    bugs = [f"{sig}: {bug.what}\n{bug.tb}" for sig, (bug, _) in stats.bugs.items()]
    assert not bugs, "\n\n".join(bugs)
    assert stats.inputs == INPUTS
    assert stats.outcomes.get("restored", 0) + stats.outcomes.get("invalid", 0) > 0


# -- regressions: each once raised something other than a VmbtoolError --------------


def doc_of(name: str) -> dict:
    return jsonview.decode(load_blob(str(ROOT / "fixtures" / "v1" / name)))


def ring_index_past_the_end(doc):
    doc["channels"][0]["rings"]["outgoing"]["read_index"] = 1 << 20


def guest_gpa_range_with_wrong_pfn_count(doc):
    packet = next(p for p in doc["scenario"]["guests"][0]["packets"]
                  if p["external"]["kind"] == "gpa_direct")
    packet["external"]["body"]["ranges"][0]["byte_count"] += 4096 * 4


def pending_incoming_gpa_range_with_wrong_pfn_count(doc):
    ch = doc["channels"][0]
    ch["pending_incoming"].append({
        "number": 1, "transaction_id": 1, "type": "gpa_direct", "flags": 1, "payload": "",
        "external": {"kind": "gpa_direct", "body": {"ranges": [
            {"byte_count": 8192, "byte_offset": 0, "pfns": [1]}]}}})
    ch["channel_end"]["incoming_count"] += 1
    doc.pop("end")


def guest_transaction_ids_past_u32(doc):
    doc["scenario"]["guests"][0]["next_transaction_id"] = 1 << 40


def receive_buffer_unmapped(doc):
    for ch in doc["channels"]:
        for gpadl in ch["gpadls"]:
            gpadl["mapped"] = False


def host_completion_payload_too_short(doc):
    """network: the host's completion of a guest SEND, in the outgoing ring, with its
    header grown over the payload (offset8 = len8): the guest gets an empty payload."""
    ring = doc["channels"][0]["rings"]["outgoing"]
    data = bytearray.fromhex(ring["data"])
    size, at = len(data), ring["read_index"]
    while at != ring["write_index"]:
        ptype, _offset8, len8 = struct.unpack("<HHH", bytes(
            data[(at + i) % size] for i in range(6)))
        if ptype == 0xB:
            for i, byte in enumerate(struct.pack("<H", len8)):
                data[(at + 2 + i) % size] = byte
            ring["data"] = data.hex()
            return "malformed completion"
        at = (at + len8 * 8 + 8) % size
    raise AssertionError("no completion in the ring")


def guest_config_not_the_scenarios(doc):
    doc["scenario"]["guests"][0]["config"]["max_packet_size"] = 16


def storage_vsc_retries_an_unknown_request(doc):
    state = bytes.fromhex(doc["scenario"]["vsc_state"])
    next_tag = state[:4]
    doc["scenario"]["vsc_state"] = (next_tag + (1).to_bytes(4, "little")
                                    + (0xDEAD).to_bytes(4, "little") + bytes(4)).hex()


def guest_state_unknown(doc):
    doc["scenario"]["guests"][0]["state"] = 7


def guest_not_open_beside_an_open_server(doc):
    doc["scenario"]["guests"][0]["state"] = "enabled"


def guest_channel_paused(doc):
    doc["scenario"]["guests"][0]["state"] = "paused"


REGRESSIONS = {
    "inspect: ring index past the end": ("storage.vmb", ring_index_past_the_end),
    "guest GPA range with a wrong PFN count": (
        "storage.vmb", guest_gpa_range_with_wrong_pfn_count),
    "pending incoming GPA range with a wrong PFN count": (
        "storage.vmb", pending_incoming_gpa_range_with_wrong_pfn_count),
    "pipe guest transaction ids past u32": ("pipe.vmb", guest_transaction_ids_past_u32),
    "network receive buffer unmapped": ("network.vmb", receive_buffer_unmapped),
    "network completion payload too short": (
        "network.vmb", host_completion_payload_too_short),
    "guest configuration not the scenario's": ("pipe.vmb", guest_config_not_the_scenarios),
    "storage VSC retries an unknown request": (
        "storage.vmb", storage_vsc_retries_an_unknown_request),
    "guest channel in an unknown state": ("network.vmb", guest_state_unknown),
    "guest channel not open, its server channel open": (
        "storage.vmb", guest_not_open_beside_an_open_server),
    "guest channel paused (the VSC never pauses one)": ("network.vmb", guest_channel_paused),
}


@pytest.mark.parametrize("case", list(REGRESSIONS))
def test_once_crashed_now_refused_or_carried_on(case, fuzz_blob):
    fixture, edit = REGRESSIONS[case]
    doc = copy.deepcopy(doc_of(fixture))
    logged = edit(doc)  # what the restored scenario logs when it meets the edit, if known
    data = jsonview.encode(doc)
    # every target as the fuzzer runs them: raises fuzz_blob.Bug on anything but a
    # VmbtoolError, or when validate and restore disagree
    fuzz_blob.run_targets(data, False, steps=40)
    verdict = validate_file(data)
    try:
        scenario, rep = restore_and_run(data, 40)
    except VmbtoolError as exc:
        assert not verdict.valid and (exc.where, exc.why) == verdict.problems[0]
    else:
        assert verdict.valid, verdict.problems
        assert rep["ran_steps"] == 40
        assert not logged or any(logged in line for line in scenario.transcript)
    try:
        load_blob(data)
    except VmbtoolError:
        return
    # what `inspect --packets --ring --gpadls --hexdump` prints of a blob that loads
    report.stream_summary(data, None, io.StringIO(), packets=True, rings=True,
                          gpadls=True, hexdump_rings=True)


def test_encode_refuses_a_4_gib_header_before_padding_it():
    """jsonview.encode once padded the header to whatever `header_size` said."""
    doc = doc_of("storage.vmb")
    doc["header"]["header_size"] = 0xFFFFFFFF
    with pytest.raises(VmbtoolError, match="header_size"):
        jsonview.encode(doc)
