"""Positions and the one error type a user ever sees."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pos:
    """A 1-based source position; `end_column` (exclusive) widens the caret.

    Slotted, as the syntax nodes are (gradc/syntax.py says why): there is a
    Pos for almost every node of a program."""

    line: int
    column: int
    end_column: int | None = None
    end_line: int | None = None  # None: the same line


class CompileError(Exception):
    """A mistake in the user's program, reported at a position in their file."""

    def __init__(self, message: str, pos: Pos | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.hint = hint
        self.filename = "<source>"
        self.source = ""

    def located(self, filename: str, source: str) -> CompileError:
        """Attach the file this error belongs to (done once, where the file is known)."""
        self.filename = filename
        self.source = source
        return self

    def render(self) -> str:
        """`file:line:col: error: message`, the source line and a caret."""
        if self.pos is None:
            return f"{self.filename}: error: {self.message}"
        message = _shortened(self.message)
        head = f"{self.filename}:{self.pos.line}:{self.pos.column}: error: {message}"
        lines = self.source.splitlines()
        out = [head]
        if 0 < self.pos.line <= len(lines):
            text = lines[self.pos.line - 1].expandtabs(1)
            start = self.pos.column - 1
            width = 1
            one_line = self.pos.end_line in (None, self.pos.line)
            if one_line and self.pos.end_column and self.pos.end_column > self.pos.column:
                width = self.pos.end_column - self.pos.column
            text, start, width = _window(text, start, width)
            out.append("    " + text.translate(_VISIBLE))
            out.append("    " + " " * start + "^" * width)
        if self.hint:
            out.append(f"hint: {_shortened(self.hint)}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render()


# Control characters (a NUL in the file) are shown as their Unicode pictures,
# one character each, so the caret stays under the right column.
_VISIBLE = {c: 0x2400 + c for c in range(32)} | {127: 0x2421}
_WIDTH = 100  # the widest source line shown; longer lines show a window


def _window(text: str, start: int, width: int) -> tuple[str, int, int]:
    """The part of a long line around the caret, marked with '...' where cut."""
    if len(text) <= _WIDTH:
        return text, start, width
    left = max(0, min(start - _WIDTH // 2, len(text) - _WIDTH))
    shown = text[left : left + _WIDTH]
    prefix = "..." if left else ""
    suffix = "..." if left + _WIDTH < len(text) else ""
    start = start - left + len(prefix)
    width = max(1, min(width, len(prefix) + len(shown) - start))
    return prefix + shown + suffix, start, width


def _shortened(message: str) -> str:
    """A message with any very long name (a 1 MB identifier) cut short."""
    return re.sub(r"[A-Za-z0-9_]{61,}", lambda m: m.group()[:40] + "...", message)


class CompileErrors(CompileError):
    """Several independent mistakes (in different defs), reported together
    in the order of the file; the first is also this error's own message."""

    def __init__(self, errors: list[CompileError]):
        first = errors[0]
        super().__init__(first.message, first.pos, first.hint)
        self.errors = errors

    def located(self, filename: str, source: str) -> CompileErrors:
        super().located(filename, source)
        for e in self.errors:
            e.located(filename, source)
        return self

    def render(self) -> str:
        return "\n".join(e.render() for e in self.errors)
