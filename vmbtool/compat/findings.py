"""What a comparison of two descriptions reports: its findings and notes (`Finding`), the
verdict and question (`Report`), as JSON and as lines for people; `canonical`, the
one spelling of a description two of them are compared in."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Finding:
    kind: str
    path: str
    old: Any
    new: Any
    why: str

    def as_json(self) -> dict:
        return {"kind": self.kind, "path": self.path, "old": self.old, "new": self.new,
                "why": self.why}

    def line(self) -> str:
        return f"{self.kind} at {self.path}: {self.why}"


@dataclass
class Report:
    old: str
    new: str
    reverse: bool
    findings: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)

    @property
    def compatible(self) -> bool:
        return not self.findings

    @property
    def question(self) -> str:
        if self.reverse:
            return f"can {self.old} (OLD) read blobs {self.new} (NEW) writes?"
        return f"can {self.new} (NEW) read blobs {self.old} (OLD) wrote?"

    def as_json(self) -> dict:
        return {"old": self.old, "new": self.new,
                "direction": "reverse" if self.reverse else "forward",
                "compatible": self.compatible,
                "findings": [f.as_json() for f in self.findings],
                "notes": [n.as_json() for n in self.notes]}


def canonical(value: Any, names: bool = True) -> str:
    if not names:
        value = _without_names(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _without_names(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_names(v) for k, v in value.items() if k != "name"}
    if isinstance(value, list):
        return [_without_names(v) for v in value]
    return value
