"""Console text as a terminal shows it: ``\\n``, ``\\r`` and ESC[A (cursor up) are honoured.

The rules are bluesky-httpserver's (and bluesky-queueserver-api's), so ``/api/console_output``
shows the same text: text overwrites the current line from the cursor column (padding with
spaces), ``\\n`` moves to the start of the next line, ``\\r`` to the start of the current one,
ESC[A one line up (never above the first). After each message the oldest lines beyond
``max_lines`` are dropped; a trailing empty line is not counted.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"(\n|\r|\x1b\[A)")


class ConsoleText:
    def __init__(self, max_lines: int = 2000) -> None:
        self.max_lines = max_lines
        self.lines: list[str] = []
        self.line = 0
        self.column = 0

    def add(self, msg: str) -> None:
        for piece in _CONTROL.split(msg):
            if not piece:
                continue
            if not self.lines:
                self.lines, self.line, self.column = [""], 0, 0
            if piece == "\n":
                self.line += 1
                if self.line >= len(self.lines):
                    self.lines.insert(self.line, "")
                self.column = 0
            elif piece == "\r":
                self.column = 0
            elif piece == "\x1b[A":
                self.line = max(self.line - 1, 0)
            else:
                current = self.lines[self.line].ljust(self.column)
                self.lines[self.line] = current[: self.column] + piece + current[self.column + len(piece) :]
                self.column += len(piece)
        self._trim()

    def _trim(self) -> None:
        limit = self.max_lines + (1 if self.lines and self.lines[-1] == "" else 0)
        excess = len(self.lines) - limit
        if excess > 0:
            del self.lines[:excess]
            self.line = max(self.line - excess, 0)

    def text(self, nlines: int | None = None) -> str:
        """The last ``nlines`` lines (all if None; none if <= 0), without a trailing empty line."""
        lines = self.lines[:-1] if self.lines and self.lines[-1] == "" else self.lines
        if nlines is None:
            return "\n".join(lines)
        if nlines <= 0:
            return ""
        return "\n".join(lines[-nlines:])
