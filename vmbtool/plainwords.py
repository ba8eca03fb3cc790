"""construct's error text in plain words, for `codec` to put in a BlobError.

construct words its errors for the grammar's author (`struct '<Q' error during building,
given value -1`, `parsing expected b'VMBSAVE\\x00' but parsed b'(\\xb5/\\xfd'`). A user
gets the same facts as a type, a range and a value, with bytes shown as hex.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable

SHOWN_BYTES = 16
SHOWN_CHARS = 40
# struct format characters -> what the field holds
INTEGER_BITS = {"b": 8, "B": 8, "h": 16, "H": 16, "i": 32, "I": 32, "l": 32, "L": 32,
                "q": 64, "Q": 64}
BYTES_LITERAL = re.compile(r"""bytearray\((b'(?:[^'\\]|\\.)*'|b"(?:[^"\\]|\\.)*")\)"""
                           r"""|b'(?:[^'\\]|\\.)*'|b"(?:[^"\\]|\\.)*\"""")
MEMORY_VIEW = re.compile(r"<memory at 0x[0-9a-f]+>")


def hex_bytes(data: bytes) -> str:
    shown = data[:SHOWN_BYTES].hex(" ")
    more = " …" if len(data) > SHOWN_BYTES else ""
    return f"bytes {shown}{more}" if data else "no bytes"


def bytes_as_hex(text: str) -> str:
    """Every Python bytes literal (and bytearray, memoryview) in `text` as hex."""
    def one(match: re.Match) -> str:
        literal = match.group(1) or match.group(0)
        try:
            return hex_bytes(ast.literal_eval(literal))
        except (ValueError, SyntaxError):
            return "bytes"
    return MEMORY_VIEW.sub("bytes", BYTES_LITERAL.sub(one, text))


def value(text: str) -> str:
    """A value construct quoted with repr(), as a user would recognise it."""
    text = bytes_as_hex(text.strip())
    if text == "None":
        return "nothing (null)"
    if text in ("True", "False"):
        return text.lower()
    if text.startswith(("[", "(")):
        return "a list"
    if text.startswith("{"):
        return "an object"
    if len(text) > SHOWN_CHARS:
        text = text[:SHOWN_CHARS] + "…"
    return text


def integer_range(code: str) -> str:
    bits = INTEGER_BITS.get(code)
    if bits is None:
        return "a number"
    if code.islower():
        return f"an integer -2**{bits - 1}..2**{bits - 1}-1"
    return f"an integer 0..2**{bits}-1" if bits > 16 else f"an integer 0..{2**bits - 1}"


def _struct_build(m: re.Match) -> str:
    return f"expected {integer_range(m['code'])}, got {value(m['value'])}"


# (construct's message, its plain words); the first match wins
TRANSLATIONS: tuple[tuple[re.Pattern, Callable[[re.Match], str]], ...] = (
    (re.compile(r"struct '[<>=!@]?(?P<code>\w)' error during building, given value "
                r"(?P<value>.*)", re.S), _struct_build),
    (re.compile(r"struct '.*' error during parsing"), lambda m: "truncated"),
    (re.compile(r"parsing expected (?P<want>.*) but parsed (?P<got>.*)", re.S),
     lambda m: f"expected {value(m['want'])}, found {value(m['got'])}"),
    (re.compile(r"building expected None or (?P<want>.*) but got (?P<got>.*)", re.S),
     lambda m: f"must be {value(m['want'])} or left out, got {value(m['got'])}"),
    (re.compile(r"building expected (?P<want>.*) but got (?P<got>.*)", re.S),
     lambda m: f"must be {value(m['want'])}, got {value(m['got'])}"),
    (re.compile(r"cannot use encoding '(?P<enc>[^']*)' to decode (?P<got>.*)", re.S),
     lambda m: f"not {m['enc']} text: {value(m['got'])}"),
    (re.compile(r"cannot use encoding '(?P<enc>[^']*)' to encode (?P<got>.*)", re.S),
     lambda m: f"cannot be written as {m['enc']} text: {value(m['got'])}"),
    (re.compile(r"building failed, no mapping for (?P<got>.*)", re.S),
     lambda m: f"unknown name {value(m['got'])}"),
    (re.compile(r"parsing failed, no decoding mapping for (?P<got>.*)", re.S),
     lambda m: f"unknown value {value(m['got'])}"),
    (re.compile(r"bytes object of wrong length, expected (?P<want>\d+), found (?P<got>\d+)"),
     lambda m: f"expected {m['want']} bytes, got {m['got']}"),
    (re.compile(r"stream read less than specified amount, expected (?P<want>\d+), "
                r"found (?P<got>\d+)"),
     lambda m: f"{m['want']} bytes needed, {m['got']} left"),
    (re.compile(r"given non-bytes value.*", re.S), lambda m: "expected bytes"),
    (re.compile(r"string encoding failed, expected unicode string"),
     lambda m: "expected a string"),
    (re.compile(r"expected (?P<want>\d+) elements, found (?P<got>\d+)"),
     lambda m: f"expected {m['want']} elements, got {m['got']}"),
)


def plain(message: str) -> str:
    """construct's `message` (its last line, without the path) in a user's words."""
    for pattern, words in TRANSLATIONS:
        match = pattern.fullmatch(message)
        if match:
            return words(match)
    return bytes_as_hex(message)
