"""What a file that is not a blob looks like, from its first bytes.

A blob starts with the magic "VMBSAVE\\0". When a file does not, the user most likely
gave the wrong file: a blob they compressed, `vmbtool decode`'s JSON, a text or a
program. Saying which, and what to do about it, is more use than the magic it lacks.
"""

from __future__ import annotations

import re

from vmbtool.generated.header import MAGIC

SNIFF_SIZE = 64 << 10  # what is read to tell: enough for the start of any JSON document
SHOWN_BYTES = 8

# (leading bytes, what they are): compressed containers first, then programs
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file: if it holds a blob, decompress it with "
                          "`zstd -d` first"),
    (b"\x1f\x8b", "a gzip-compressed file: if it holds a blob, decompress it with "
                  "`gzip -d` first"),
    (b"\xfd7zXZ\x00", "an xz-compressed file: if it holds a blob, decompress it with "
                      "`xz -d` first"),
    (b"BZh", "a bzip2-compressed file: if it holds a blob, decompress it with "
             "`bzip2 -d` first"),
    (b"\x04\x22\x4d\x18", "an lz4-compressed file: if it holds a blob, decompress it with "
                          "`lz4 -d` first"),
    (b"PK\x03\x04", "a zip archive: extract the blob from it first"),
    (b"\x7fELF", "an ELF executable or library"),
    (b"MZ", "a Windows (PE/MZ) executable"),
)
# zstd's skippable frames (magic 0x184D2A50..5F) also start a zstd file
# (patterns `re` compiles when first met: only a file that is not a blob is described)
ZSTD_SKIPPABLE = rb"[\x50-\x5f]\x2a\x4d\x18"
DECODE_JSON_START = rb'\s*\{\s*"format"\s*:\s*\{\s*"major"\s*:'
DECODE_JSON_KEYS = {"format", "header", "channels"}
# text: printable characters and the usual white space, nothing else below 0x20
TEXT_CONTROLS = set(range(0x20)) - {0x09, 0x0A, 0x0C, 0x0D} | {0x7F}


def describe(head: bytes) -> str:
    """What `head`, the first bytes of a file without the blob magic, looks like."""
    if not head:
        return "empty file"
    if MAGIC.startswith(head):
        return f"truncated: the file ends after {len(head)} bytes of a blob's magic"
    if len(head) >= len(MAGIC) and \
            sum(a != b for a, b in zip(head[:len(MAGIC)], MAGIC, strict=True)) <= 2:
        return (f"a damaged blob, or not a blob: its first bytes "
                f"({first_bytes(head)}) are nearly a blob's magic "
                f"({MAGIC.hex(' ')})")
    if re.match(ZSTD_SKIPPABLE, head, re.DOTALL):
        return "not a blob but " + SIGNATURES[0][1]
    for signature, what in SIGNATURES:
        if head.startswith(signature):
            return f"not a blob but {what}"
    text = as_text(head)
    if text is not None:
        if looks_like_decode_json(text):
            return ("not a blob but `vmbtool decode` JSON: turn it back into a blob with "
                    "`vmbtool encode`")
        if text.lstrip().startswith(("{", "[")):
            return "not a blob but a JSON document"
        return "not a blob but a text file"
    return f"not a blob: unknown binary data (first bytes {first_bytes(head)})"


def first_bytes(head: bytes) -> str:
    shown = " ".join(f"{b:02x}" for b in head[:SHOWN_BYTES])
    return shown + (" …" if len(head) > SHOWN_BYTES else "")


def as_text(head: bytes) -> str | None:
    """`head` as text when it is UTF-8 (or ASCII) without control characters; a
    character cut off at the end of what was read does not count against it."""
    head = head.removeprefix(b"\xef\xbb\xbf")
    for cut in range(4):
        try:
            text = head[:len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        if any(ord(c) in TEXT_CONTROLS for c in text):
            return None
        return text
    return None


def looks_like_decode_json(text: str) -> bool:
    """decode's documents open with "format": {"major": ...}; a whole one that was
    reordered is known by its keys."""
    if re.match(DECODE_JSON_START, text.encode()):
        return True
    import json  # (only for a file that is text: a blob's read never needs it)

    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and DECODE_JSON_KEYS <= doc.keys()
