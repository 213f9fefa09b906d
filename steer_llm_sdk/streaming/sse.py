"""Server-sent events decoding, incremental and strict about the line rules.

Follows the WHATWG event-stream rules: lines end in CRLF, LF or CR (a CR at the end of one
network read and an LF at the start of the next are one line ending); a blank line dispatches
the event; ``data`` lines are joined with newlines; lines starting with ``:`` are comments
(keep-alives); ``event``, ``id`` and ``retry`` are fields; one space after the colon is
dropped. Pure: no I/O.
"""

import re
from typing import List, NamedTuple, Optional

_LINE_END = re.compile(r"\r\n|\r|\n")


class ServerSentEvent(NamedTuple):
    """One dispatched event: ``event`` defaults to ``"message"``."""

    event: str
    data: str
    id: Optional[str] = None
    retry: Optional[int] = None


class SSEDecoder:
    """Turns text arriving in arbitrary pieces into :class:`ServerSentEvent` values.

    Not thread-safe: one per stream.
    """

    __slots__ = ("_buffer", "_pending_cr", "_event", "_data", "_id", "_retry", "_has_data")

    def __init__(self) -> None:
        self._buffer = ""
        self._pending_cr = False
        self._event = ""
        self._data: List[str] = []
        self._id: Optional[str] = None
        self._retry: Optional[int] = None
        self._has_data = False

    def feed(self, text: str) -> List[ServerSentEvent]:
        """Decode the next piece of the stream; return the events it completed."""
        if self._pending_cr:
            self._pending_cr = False
            if text.startswith("\n"):
                text = text[1:]
        if not text:
            return []
        if text.endswith("\r"):
            self._pending_cr = True
        parts = _LINE_END.split(self._buffer + text)
        self._buffer = parts.pop()
        events: List[ServerSentEvent] = []
        for line in parts:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def close(self) -> List[ServerSentEvent]:
        """End of stream: an unterminated last line is processed; an event without its
        blank line is discarded, as the standard says."""
        if self._buffer:
            self._line(self._buffer)
            self._buffer = ""
        return []

    def _line(self, line: str) -> Optional[ServerSentEvent]:
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> Optional[ServerSentEvent]:
        if not self._has_data:
            self._event = ""
            return None
        event = ServerSentEvent(
            self._event or "message", "\n".join(self._data), self._id, self._retry
        )
        self._event = ""
        self._data = []
        self._has_data = False
        return event
