"""The HTTP side every part of the server writes through: the handler's writing methods, an
answer as a protocol module hands it to the core, and server-sent event frames."""

import json
import socket
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Dict, List, Optional, Union


@dataclass(frozen=True)
class Whole:
    """A blocking answer: a JSON body, sent once generating ``tokens`` would have ended."""

    payload: Dict[str, Any]
    tokens: int


@dataclass(frozen=True)
class Streamed:
    """A streamed answer: its frames, with the time to first token before
    ``frames[first_content]`` (the frames before it announce the answer)."""

    frames: List[str]
    first_content: int


Answer = Union[Whole, Streamed]


def event(name: str, payload: Dict[str, Any]) -> str:
    """A named server-sent event (the Anthropic and Responses streams)."""
    return f"event: {name}\ndata: {json.dumps(payload)}\n\n"


class Writer(BaseHTTPRequestHandler):
    """The request handler's writing side: JSON bodies, chunks of a chunked body, a dropped
    connection."""

    protocol_version = "HTTP/1.1"  # chunked bodies and kept-alive connections
    # Headers and body go out in separate writes; with Nagle's algorithm the second waits for
    # the client's delayed ACK (~40 ms a response).
    disable_nagle_algorithm = True

    @property
    def request_id(self) -> str:
        """The ``x-request-id`` of the server's own answers."""
        return f"req_local_{id(self):x}"

    def write_json(
        self, status: int, payload: Any, headers: Optional[Dict[str, str]] = None
    ) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-request-id", self.request_id)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def write_chunk(self, text: str) -> None:
        data = text.encode("utf-8")
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def write_last_chunk(self) -> None:
        """End the chunked body."""
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def drop(self) -> None:
        """Cut the connection without ending the chunked body, as a network failure would."""
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
