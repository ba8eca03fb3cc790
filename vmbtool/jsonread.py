"""JSON text read without surprises: a document nested past what Python's reader follows,
a number of thousands of digits, bytes that are not UTF-8, a blob given where its JSON
was meant: each is one JsonError naming the file, never Python's own exception.
"""

from __future__ import annotations

import json
from typing import Any

from vmbtool.errors import JsonError
from vmbtool.generated.header import MAGIC

# what Python's JSON reader follows before it gives up (its recursion limit, about)
JSON_READER_DEPTH = 1000


def too_deep(doc: Any, limit: int) -> str | None:
    """The path of the first value nested more than `limit` deep in `doc`, or None.
    (Walked with a stack of its own: a hostile nesting cannot exhaust Python's.)"""
    stack: list[tuple[Any, str, int]] = [(doc, "$", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > limit:
            return path
        if isinstance(value, dict):
            stack.extend((v, f"{path}.{k}" if path != "$" else str(k), depth + 1)
                         for k, v in value.items()
                         if isinstance(v, (dict, list)) or depth + 1 > limit)
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)
                         if isinstance(v, (dict, list)) or depth + 1 > limit)
    return None


def parse_json(text: str | bytes, where: str) -> Any:
    """A JSON text as Python values; what Python's reader refuses is one JsonError."""
    if isinstance(text, bytes) and text.startswith(MAGIC):
        raise JsonError(where, "a vmbtool blob, not JSON: `vmbtool decode` turns a blob "
                        "into JSON")
    try:
        return json.loads(text)
    except RecursionError:
        raise JsonError(where, f"arrays or objects nested more than about "
                        f"{JSON_READER_DEPTH:,} deep") from None
    except json.JSONDecodeError as exc:
        raise JsonError(f"{where} (line {exc.lineno}, column {exc.colno})",
                        f"not JSON: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise JsonError(f"{where} (offset {exc.start})", "not JSON: not UTF-8 text") from None
    except ValueError:  # a number with more digits than Python converts (4,300)
        raise JsonError(where, "not JSON that a reader takes: a number with thousands "
                        "of digits") from None
