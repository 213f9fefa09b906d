"""Counting complete top-level JSON values in text that arrives in pieces.

A response streamed with a JSON response format arrives as text deltas; we want to know how
many complete top-level objects (or arrays) it holds so far without re-parsing the whole
text on every chunk. :class:`JsonObjectCounter` keeps the scanner state (nesting depth,
inside a string, after a backslash) between calls, so each character is looked at once and
the cost of a chunk is proportional to its length.

Top-level scalars are not counted: a bare number or literal is ambiguous until a delimiter
arrives, and streamed JSON responses are objects or arrays.
"""

import re

# Inside a string only the quote and the backslash matter; outside, only brackets and quotes.
_OUTSIDE = re.compile(r'[{}\[\]"]')
_INSIDE = re.compile(r'["\\]')


class JsonObjectCounter:
    """Incremental counter of complete top-level JSON objects and arrays.

    Not thread-safe: one per stream. Malformed input never raises; an unbalanced closing
    bracket at top level is ignored.
    """

    __slots__ = ("count", "_depth", "_in_string", "_escaped")

    def __init__(self) -> None:
        self.count = 0
        self._depth = 0
        self._in_string = False
        self._escaped = False

    def feed(self, text: str) -> int:
        """Scan the next piece of text; return how many values it completed."""
        before = self.count
        pos = 0
        end = len(text)
        if self._escaped and end:
            self._escaped = False
            pos = 1
        while pos < end:
            if self._in_string:
                match = _INSIDE.search(text, pos)
                if match is None:
                    break
                pos = match.end()
                if match.group() == "\\":
                    if pos >= end:
                        self._escaped = True
                        break
                    pos += 1
                else:
                    self._in_string = False
                continue
            match = _OUTSIDE.search(text, pos)
            if match is None:
                break
            pos = match.end()
            char = match.group()
            if char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            elif self._depth > 0:
                self._depth -= 1
                if self._depth == 0:
                    self.count += 1
        return self.count - before
