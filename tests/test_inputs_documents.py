"""JSON documents read by `encode` (decode's JSON) and `compat` (format descriptions)
from a file or stdin: a closed stdin is trouble, an endless device is refused at its
first bytes, a document past the size any such document has is refused as it is read."""

from __future__ import annotations

import json

import pytest
from inputs_support import STORAGE, cli, mknod, one_error, run

from vmbtool import inputs

DOCUMENT_READERS = {  # a command reading one JSON document {} (`-`: stdin)
    "encode": (["encode", "{}", "-o", "{out}"], "JSON"),
    "compat": (["compat", "{}", "current"], "schema"),
}


def args_for(command: str, source: str, tmp_path) -> list[str]:
    return [a.format(source, out=tmp_path / "out.vmb") for a in DOCUMENT_READERS[command][0]]


@pytest.mark.parametrize("command", list(DOCUMENT_READERS))
def test_a_closed_stdin_is_trouble(command, tmp_path):
    p = run(*args_for(command, "-", tmp_path), stdin=None, close_fds=True,
            preexec_fn=lambda: __import__("os").close(0))
    what = DOCUMENT_READERS[command][1]
    assert one_error(p.returncode, 2, p.stderr) == \
        f"Error: cannot read {what} at stdin: stdin is closed"
    assert not (tmp_path / "out.vmb").exists()


@pytest.mark.parametrize("command", list(DOCUMENT_READERS))
def test_an_endless_device_is_refused_at_its_first_bytes(command, tmp_path, monkeypatch):
    zero = mknod(tmp_path / "zero.json", 5)
    read = []
    real = inputs.read_bounded

    def counting(stream, *args):
        data = real(stream, *args)
        read.append(len(data))
        return data

    monkeypatch.setattr(inputs, "read_bounded", counting)
    result = cli(*args_for(command, str(zero), tmp_path))
    code = 1 if command == "encode" else 2  # a bad blob document; a bad description
    line = one_error(result.exit_code, code, result.stderr)
    assert "not JSON" in line and str(zero) in line
    assert read == [inputs.SPOOL_BLOCK]  # one block looked at, not the endless rest


@pytest.mark.parametrize("command", list(DOCUMENT_READERS))
def test_a_document_past_the_limit_is_refused_as_it_is_read(command, tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "MAX_JSON_DOCUMENT", 3 << 20)
    monkeypatch.setattr(inputs, "MAX_SCHEMA_SIZE", 3 << 20)
    big = tmp_path / "big.json"
    big.write_bytes(b"{" + b" " * (5 << 20) + b"}")
    result = cli(*args_for(command, str(big), tmp_path))
    what = DOCUMENT_READERS[command][1]
    assert one_error(result.exit_code, 2, result.stderr) == (
        f"Error: cannot read {what} at {big}: longer than 3 MiB, more than any {what} "
        "document vmbtool reads")


def test_documents_within_the_limits_still_read_from_stdin(tmp_path):
    doc = cli("decode", STORAGE).stdout
    encoded = cli("encode", "-", "-o", tmp_path / "out.vmb", input=doc.encode())
    assert encoded.exit_code == 0, encoded.stderr
    assert (tmp_path / "out.vmb").read_bytes() == STORAGE.read_bytes()
    description = cli("schema", "--json").stdout
    assert json.loads(description)["format"]
    assert cli("compat", "-", "current", input=description.encode()).exit_code == 0
