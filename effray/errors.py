"""Spec problems as data: one `Problem` per mistake, rendered as one line each.

    field.path: message (value …; allowed …; did you mean …)

`SpecError` carries every problem found, so a user fixes a spec in one pass.
The CLI turns it into exit code 2; nothing has started when it is raised.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    path: str  # dotted field path, e.g. "train.lr" or "techniques.0.alpha"; "" for the file
    message: str
    value: object = None
    allowed: str | None = None
    suggestion: str | None = None
    has_value: bool = False

    def __str__(self) -> str:
        extras = []
        if self.has_value:
            extras.append(f"value {self.value!r}")
        if self.allowed:
            extras.append(f"allowed {self.allowed}")
        if self.suggestion:
            extras.append(f"did you mean {self.suggestion!r}?")
        tail = f" ({'; '.join(extras)})" if extras else ""
        where = f"{self.path}: " if self.path else ""
        return f"{where}{self.message}{tail}"


def problem(path: str, message: str, *, value: object = ..., allowed=None, suggestion=None):
    """Build a Problem; `value` is shown only when given (None is a real value)."""
    has_value = value is not ...
    return Problem(path, message, None if not has_value else value, allowed, suggestion, has_value)


class SpecError(Exception):
    """One or more problems with a spec, an override or a file the spec names."""

    def __init__(self, problems: Iterable[Problem], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.source}: " if self.source else ""
        n = len(self.problems)
        lines = [f"{head}{n} problem{'s' if n != 1 else ''}"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The closest valid name to a typo, or None when nothing is close."""
    choices = list(choices)
    word = str(word)
    extended = [c for c in choices if c.startswith(word) and len(word) >= 3]
    if extended:  # a name typed without its suffix: 'paper_mnist_1p5k' -> 'paper_mnist_1p5k_dw'
        return min(extended, key=len)
    matches = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return matches[0] if matches else None


def one_of(choices: Iterable[str]) -> str:
    return "one of " + ", ".join(sorted(choices))
