"""A check's problems: (field path, why) pairs, a channel's first MAX_PROBLEMS kept and
the rest counted."""

from __future__ import annotations

Problem = tuple[str, str]  # (field path, why)
MAX_PROBLEMS = 1000  # a channel's problems kept; the rest are counted


class Problems(list):
    """A channel's problems: the first MAX_PROBLEMS, and a count of the rest (a lying
    channel of 200,000 packets must not cost 200,000 messages)."""

    dropped = 0

    def append(self, problem: Problem) -> None:
        if len(self) < MAX_PROBLEMS:
            super().append(problem)
        else:
            self.dropped += 1

    def extend(self, problems) -> None:
        for problem in problems:
            self.append(problem)
        self.dropped += getattr(problems, "dropped", 0)

    @property
    def total(self) -> int:
        return len(self) + self.dropped
