"""Which blobs a key lets through. A key given verifies every signed blob; an unsigned
blob is refused by default (a stripped signature must never pass as an unsigned blob)
unless the key says unsigned ones are accepted: `--allow-unsigned` for validate,
restore and upgrade, and always for the views that only show a blob (inspect, diff,
decode), which say whether it was signed."""

from __future__ import annotations

SIGNED_NEEDS_KEY = "blob is signed: give its key (--key-file) to verify and read it"
UNSIGNED_REFUSED = ("blob is not signed but a key was given (--allow-unsigned accepts "
                    "unsigned blobs too)")


class KeyAcceptingUnsigned(bytes):
    """An HMAC key that also lets unsigned blobs through (read unauthenticated)."""

    accepts_unsigned = True


def accepting_unsigned(key: bytes | None) -> bytes | None:
    """`key`, letting unsigned blobs through as well (None stays None)."""
    return None if key is None else KeyAcceptingUnsigned(key)


def accepts_unsigned(key: bytes | None) -> bool:
    return key is None or getattr(key, "accepts_unsigned", False)
