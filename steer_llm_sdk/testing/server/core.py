"""The server itself: ``LocalLLMServer`` (its settings, the fault script, the queued replays,
the request log, its thread) and the request handler, which routes each request to a replay
or to the module speaking its protocol, and sends what that module answers with the latency
profile and the fault's interruptions."""

import argparse
import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

from ...streaming.tokens import encoder
from . import anthropic, bedrock, content, faults, gemini, openai_chat, openai_responses, replay
from .errors import ErrorShape, send_error
from .faults import Fault
from .wire import Answer, Whole, Writer


@dataclass
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: Dict[str, str]
    body: Any
    time: float = field(default_factory=time.time)


class LocalLLMServer:
    """A local LLM server; see the package docstring. Thread-safe.

    Args:
        host: address to bind (loopback only by default).
        port: 0 picks a free port.
        ttft_ms: delay before the first streamed token (and before a blocking answer).
        tokens_per_second: streaming rate; None sends as fast as possible.
        reply_words: length of the generated reply in words (= completion tokens).
        report_usage: False leaves usage out of OpenAI streams, as servers that ignore
            ``stream_options.include_usage`` do.
        azure_model: the model an Azure OpenAI deployment (any ``/openai/...`` path) says
            it runs.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ttft_ms: float = 0.0,
        tokens_per_second: Optional[float] = None,
        reply_words: int = 12,
        report_usage: bool = True,
        azure_model: str = "gpt-4o-mini-2024-07-18",
    ) -> None:
        self.host = host
        self.ttft_ms = ttft_ms
        self.tokens_per_second = tokens_per_second
        self.reply_words = reply_words
        self.report_usage = report_usage
        self.azure_model = azure_model
        self.requests: List[RecordedRequest] = []
        self._faults: Deque[Fault] = deque()
        self._replays: Deque[replay.Recorded] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server((host, port), _Handler)
        self._server.owner = self
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """Base URL in the OpenAI convention (with ``/v1``)."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Base URL in the Anthropic convention (without ``/v1``)."""
        return self.url

    def start(self) -> "LocalLLMServer":
        if self._thread is None:
            _load_tokenizers()
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="local-llm-server",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; stalled responses are released."""
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()

    def __enter__(self) -> "LocalLLMServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ scripting
    def script(self, *faults: Fault) -> None:
        """Queue faults; each request takes the next one (a ``Fault()`` answers normally)."""
        with self._lock:
            self._faults.extend(faults)

    def replay(self, cassette: str, hosts: Optional[Sequence[str]] = None) -> int:
        """Answer requests with the recorded responses of a vcrpy cassette file.

        Each recorded interaction answers one request with the same method whose path ends
        like the recorded one, or shares its last two segments (``chat/completions``,
        ``models/<model>:generateContent``): the query string and the base URL's prefix are
        ignored. The earliest such interaction answers first; a request that matches none
        gets a 404. Bodies may
        be text (JSON or server-sent events, streamed as they were recorded), binary
        (``!!binary``: gzip, AWS event streams; sent as recorded, with their
        ``Content-Encoding``) or decoded JSON under ``parsed_body``. Needs PyYAML.

        Args:
            cassette: the file.
            hosts: only interactions with these hosts (default: all).

        Returns:
            How many interactions were queued.
        """
        data = replay.read(cassette)
        with self._lock:
            before = len(self._replays)
            self._replays.extend(replay.interactions(data, hosts))
            return len(self._replays) - before

    def _next_error(self) -> Optional[Fault]:
        """The next scripted fault if it is an error status (taken), else None (left)."""
        with self._lock:
            if self._faults and self._faults[0].status is not None:
                return self._faults.popleft()
            return None

    def _next(self) -> Optional[Fault]:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _take_replay(self, method: str, path: str) -> Tuple[bool, Optional[Dict[str, Any]]]:
        """(whether replays are queued, the recorded response for this request or None)."""
        with self._lock:
            return replay.take(self._replays, method, path)

    def _log(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    # ------------------------------------------------------------------ content
    def reply_text(self, prompt: str, words: Optional[int] = None) -> List[str]:
        """The reply to ``prompt`` as its list of pieces (one token each)."""
        return content.reply_text(prompt, words if words is not None else self.reply_words)

    def pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


def _load_tokenizers() -> None:
    """Load the tokenizers now, not inside the first (timed) request."""
    for name in ("o200k_base", "cl100k_base"):
        encoder(name)


#: (request body, fault, server settings, request path) -> the answer.
_Answerer = Callable[[Dict[str, Any], Fault, content.Replies, str], Answer]


@dataclass(frozen=True)
class _Route:
    """A protocol answered in full."""

    error_body: ErrorShape
    answer: _Answerer
    #: The request body as the answer (and the checks before it) reads it.
    adapt: Callable[[Any], Any] = lambda body: body


#: The protocols answered in full, by the end of their path.
_ROUTES = {
    "/chat/completions": _Route(openai_chat.error_body, openai_chat.answer),
    "/v1/messages": _Route(anthropic.error_body, anthropic.answer),
    # Errors on the Responses path have always gone out in the Anthropic shape; kept, so
    # that clients see the bytes they always did.
    "/responses": _Route(anthropic.error_body, openai_responses.answer, openai_responses.as_chat),
}
#: The protocols answered with scripted error statuses only: the ends of their paths, the
#: shape of their errors.
_ERRORS_ONLY = ((gemini.PATHS, gemini.error_body), (bedrock.PATHS, bedrock.error_body))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # the default backlog of 5 resets bursts of connections
    owner: LocalLLMServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or close early are part of the job: no traceback for them.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class _Handler(Writer):
    """One connection's requests: a replay if one is queued, else the protocol's answer."""

    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        replaying, recorded = owner._take_replay("POST", self.path)
        if replaying:
            owner._log(RecordedRequest("POST", self.path, dict(self.headers.items()), None))
            replay.send(self, recorded)
            return
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        owner._log(RecordedRequest("POST", self.path, headers, body))
        self._respond(self.path.split("?", 1)[0], body)

    def do_GET(self) -> None:
        replaying, recorded = self.server.owner._take_replay("GET", self.path)
        if replaying:
            replay.send(self, recorded)
        elif self.path.rstrip("/") in ("", "/health"):
            self.write_json(200, {"status": "ok"})
        else:
            self.write_json(404, {"error": {"message": "not found"}})

    def _respond(self, path: str, body: Any) -> None:
        """Answer a request not replayed: a scripted error on the paths answered with errors
        only, else the fault the request takes applied to the answer of its protocol."""
        owner = self.server.owner
        shape = next((shape for ends, shape in _ERRORS_ONLY if path.endswith(ends)), None)
        error = owner._next_error() if shape is not None else None
        if shape is not None and error is not None:
            faults.send_fault_error(self, shape, error, body)
            return
        if path.endswith(bedrock.INVOKE_PATHS):  # the model's own body format, not messages
            owner.pause(owner.ttft_ms / 1000.0)
            bedrock.send_invoke(self, bedrock.invoke_answer(self.path, body, owner))
            return
        route = next((r for end, r in _ROUTES.items() if path.endswith(end)), None)
        if route is None:
            self.write_json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
            return
        body = route.adapt(body)
        fault = owner._next() or Fault()
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            send_error(self, route.error_body, 400, "messages must be a list")
            return
        if faults.answered_first(self, route.error_body, fault, body, owner.pause):
            return
        self._send(route.answer(body, fault, owner, self.path), fault)

    def _send(self, answer: Answer, fault: Fault) -> None:
        owner = self.server.owner
        if isinstance(answer, Whole):
            rate = owner.tokens_per_second
            generating = answer.tokens / rate if rate else 0.0
            owner.pause(owner.ttft_ms / 1000.0 + generating)
            self.write_json(200, answer.payload)
        else:
            self._stream(answer.frames, fault, answer.first_content)

    def _stream(self, frames: List[str], fault: Fault, first_content: int) -> None:
        """Send the frames as a chunked event stream at the server's pace, as ``fault``
        interrupts it."""
        owner = self.server.owner
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("x-request-id", self.request_id)
        self.end_headers()
        rate = owner.tokens_per_second
        try:
            for index, frame in enumerate(frames):
                if faults.interrupted(self, fault, index, owner.pause):
                    return
                if index == first_content:
                    owner.pause(owner.ttft_ms / 1000.0)
                elif index > first_content and rate:
                    owner.pause(1.0 / rate)
                self.write_chunk(frame)
            self.write_last_chunk()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away: fine


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Serve until interrupted (``python -m steer_llm_sdk.testing.server``)."""
    parser = argparse.ArgumentParser(
        description="Serve the OpenAI and Anthropic wire protocols locally, with generated replies."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--ttft-ms", type=float, default=50.0)
    parser.add_argument(
        "--tokens-per-second", type=float, default=100.0, help="0 streams as fast as possible"
    )
    parser.add_argument("--reply-words", type=int, default=24)
    args = parser.parse_args(argv)
    server = LocalLLMServer(
        args.host,
        args.port,
        ttft_ms=args.ttft_ms,
        tokens_per_second=args.tokens_per_second,
        reply_words=args.reply_words,
    )
    print(
        f"serving OpenAI at {server.openai_base_url} and Anthropic at "
        f"{server.anthropic_base_url}; Ctrl-C stops",
        flush=True,
    )
    _load_tokenizers()  # as start() does
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._server.server_close()
