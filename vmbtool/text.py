"""Text a person reads on a terminal: strings from a blob or a file name are escaped, counts
are spelled with their noun.

A blob's note, a channel's friendly name or a file name can hold anything. Printed raw,
`ESC]0;…BEL` sets a terminal's title, `ESC[2J` clears it, a newline forges a line of output
(`other.vmb: valid`) and a right-to-left override reverses what follows. `--json` is safe
because json.dumps escapes; `escape` does the same for text output.
"""

from __future__ import annotations

import re
from functools import cache

# C0 controls (newline, tab and carriage return among them), DEL and C1 controls; the
# bidirectional marks, embeddings, overrides and isolates (U+061C, U+200E/F, U+202A-E,
# U+2066-9); the line and paragraph separators some terminals break lines at; lone
# surrogates, which a file name that is not UTF-8 decodes to and which a UTF-8 stdout
# cannot encode at all. Each of them is one str.isprintable() refuses.
UNSAFE = ("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
          "\ud800-\udfff]")
SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_char(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return SHORT.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape(text: object) -> str:
    """`text` (a str, or anything str() turns into one) safe to print: each control,
    bidirectional or unencodable character is shown as `\\x1b`, `\\n` or `\\u202e`."""
    text = str(text)
    if text.isprintable():  # the common case: nothing to do, nothing copied (no UNSAFE
        return text         # character is printable; the pattern is compiled when needed)
    return _unsafe().sub(escape_char, text)


@cache
def _unsafe() -> re.Pattern[str]:
    return re.compile(UNSAFE)


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`1 channel`, `2 channels`, `0 channels` (`nouns` when the plural is not noun + s)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


__all__ = ["escape", "plural"]
