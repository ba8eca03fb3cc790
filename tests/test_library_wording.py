"""The library-wording guard (tests/wording.py, installed by conftest.py) itself: what it
calls library wording, that it hears all three sources, and that it fails the test that
provoked such a message (in a pytest session of its own)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import wording
from click.testing import CliRunner

from vmbtool.cli import main
from vmbtool.errors import BlobError

LIBRARY_TEXT = [
    "parsing expected b'VMBSAVE\\x00' but parsed b'(\\xb5/\\xfd'",
    'given value b"x"',
    "struct '<Q' error during building, given value -1",
    "Container(a=1)",
    "ListContainer([1])",
    "Error in path (parsing) -> magic",
    "Traceback (most recent call last):",
    "error during building",
]
PLAIN_TEXT = [
    "bad blob at header.magic (offset 0): not a blob but a text file",
    "the file ends after 5 bytes of a blob's magic",
    "a verb'd noun, a 'b' in quotes",
    "expected an integer 0..2**64-1, got -1",
]


@pytest.mark.parametrize("text", LIBRARY_TEXT)
def test_library_text_is_caught(text):
    assert wording.leaks([f"Error: {text}"]) == [f"Error: {text}"]


@pytest.mark.parametrize("text", PLAIN_TEXT)
def test_plain_text_passes(text):
    assert wording.leaks([text]) == []


@pytest.mark.library_wording_ok("it provokes library text on purpose")
def test_every_source_is_heard():
    wording.provoked.clear()
    BlobError("here", "given value b'1'")
    wording.provoked.append("")  # (the line CliRunner adds must be its own)
    CliRunner().invoke(main, ["inspect", "/nonexistent/b'x'.vmb"])
    subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write(\"struct '<Q'\")"],
                   capture_output=True, check=True)
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stderr.write("
                                "'Traceback (most recent call last):')"],
                               stderr=subprocess.PIPE)
    process.communicate(timeout=60)
    # --debug asks for a traceback: it is not held against the run
    CliRunner().invoke(main, ["--debug", "inspect", "/nonexistent/x.vmb"])
    found = wording.leaks(wording.provoked)
    wording.provoked.clear()
    assert "bad blob at here: given value b'1'" in found
    assert any("/nonexistent/b'x'.vmb" in line for line in found)  # from CliRunner
    assert "struct '<Q'" in found
    assert "Traceback (most recent call last):" in found
    assert not any("x.vmb" in line and "Traceback" in line for line in found)


def test_a_test_that_provokes_library_text_fails_at_teardown(pytester):
    pytester.makeconftest("from wording import no_library_wording, register_marker\n"
                          "def pytest_configure(config):\n"
                          "    register_marker(config)\n")
    pytester.makepyfile(test_inner="""
        import pytest
        from vmbtool.errors import BlobError

        def test_leaks():
            BlobError("header", "parsing expected b'VMBSAVE'")

        def test_plain():
            BlobError("header", "not a blob but a text file")

        @pytest.mark.library_wording_ok("on purpose")
        def test_allowed():
            BlobError("header", "parsing expected b'VMBSAVE'")
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaks*",
                                 "*library wording reached a message*"])
