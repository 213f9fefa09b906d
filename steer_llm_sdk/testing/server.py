"""LocalLLMServer: a real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions and
Anthropic messages wire protocols, for tests, demos and benchmarks without a provider.

    with LocalLLMServer(ttft_ms=50, tokens_per_second=200) as server:
        client = SteerLLMClient(openai_base_url=server.openai_base_url,
                                anthropic_base_url=server.anthropic_base_url,
                                openai_api_key="test", anthropic_api_key="test")

What it serves:

* deterministic text (a function of the prompt) and usage that matches it exactly: tokens
  are counted with the same tokenizer the client uses locally, and every word of a plain
  reply is one ``o200k_base`` token;
* a latency profile: time to first token and tokens per second;
* tool calls: a request with ``tools`` (and a ``tool_choice`` other than none) whose last
  message is not a tool result is answered with a call of the chosen (else the first) tool,
  its arguments made from the tool's JSON schema, streamed in fragments; the answer to tool
  results is text;
* several choices (OpenAI's ``n``), kept apart by ``index`` in streams;
* scripted faults, one per request in order (:meth:`script`): an HTTP status with the
  provider's error body (429 with ``Retry-After``, 500, 502, 503, 529, 401, 400), a
  connection dropped mid-stream, a malformed event, a stall, a content filter (Azure
  OpenAI's shapes: the prompt refused with a 400, or the answer withheld with
  ``finish_reason: content_filter``), an error that echoes the request (its messages in
  the error message, as validation errors quote their input, or the whole request beside
  the error) or its headers (as AWS signature errors quote the canonical request); error
  statuses are answered on Gemini (``:generateContent``) and Bedrock (``/converse``) paths
  too, in their shapes;
* a request log (:attr:`requests`) for assertions;
* replay of recorded exchanges (vcrpy cassettes, see :meth:`replay`; needs PyYAML).

Run it on its own with ``python -m steer_llm_sdk.testing.server --port 8000``.
"""

import argparse
import json
import socket
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple
from urllib.parse import unquote, urlsplit

from ..streaming.tokens import count_messages, count_text, encoder

# Common English words that are each one token (with their leading space) in o200k_base, so
# a reply of N words is N completion tokens.
WORDS = (
    "the",
    "model",
    "said",
    "that",
    "this",
    "answer",
    "is",
    "a",
    "good",
    "one",
    "for",
    "you",
    "and",
    "we",
    "will",
    "see",
    "what",
    "comes",
    "next",
    "in",
    "time",
    "it",
    "was",
    "not",
    "so",
    "bad",
    "to",
    "be",
    "here",
    "with",
    "all",
    "of",
    "them",
    "at",
    "home",
    "on",
    "day",
)

_STATUS_ERRORS = {
    400: ("invalid_request_error", "Invalid request"),
    401: ("authentication_error", "Invalid API key"),
    403: ("permission_error", "Permission denied"),
    404: ("not_found_error", "Not found"),
    429: ("rate_limit_error", "Rate limit reached"),
    500: ("api_error", "Internal server error"),
    502: ("api_error", "Bad gateway"),
    503: ("api_error", "Service unavailable"),
    529: ("overloaded_error", "Overloaded"),
}


_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_BEDROCK_ERRORS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    422: "ValidationException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


def _credentials(headers: Any) -> List[str]:
    """The bare credentials among request headers (see ``Fault.echo_key``)."""
    found = []
    for name, value in headers:
        name = name.lower()
        if name == "authorization":
            scheme, _, value = value.partition(" ")
            if scheme.startswith("AWS4-"):
                value = value.split("Credential=", 1)[-1].split("/", 1)[0]
            found.append(value)
        elif name in ("api-key", "x-api-key", "x-goog-api-key", "x-amz-security-token"):
            found.append(value)
    return found


def _other_protocol(path: str) -> Optional[str]:
    """``gemini`` or ``bedrock`` for their generation paths (answered with scripted error
    statuses only), else None."""
    if path.endswith((":generateContent", ":streamGenerateContent")):
        return "gemini"
    if path.endswith(("/converse", "/converse-stream")):
        return "bedrock"
    return None


@dataclass
class Fault:
    """What to do to one request instead of answering it normally.

    Attributes:
        status: answer with this HTTP status and the protocol's error body.
        retry_after: ``Retry-After`` header value (seconds) with ``status``.
        drop_after: for streams, drop the connection after this many events.
        malformed_after: for streams, send a malformed event after this many events.
        stall: seconds to wait before answering (or, with ``drop_after``/``stall_after``
            unset, before the first byte).
        stall_after: for streams, stall after this many events.
        content_filter: ``"prompt"`` (a 400 with code ``content_filter``) or
            ``"completion"`` (the answer withheld: ``finish_reason: content_filter`` with
            the filter results), OpenAI protocol.
        echo_request: with ``status``: ``"message"`` quotes the request's messages (as
            JSON) in the error message; ``"body"`` puts the whole request in the error
            body under ``"request"``, beside an error message that does not quote it.
        echo_headers: with ``status``: the error message quotes the request's headers,
            credentials included.
        echo_key: with ``status``: the error message quotes the request's credentials
            bare ("Incorrect API key provided: ..."): the values of its credential
            headers (an ``Authorization`` scheme dropped; of an AWS signature, the access
            key id).
    """

    status: Optional[int] = None
    retry_after: Optional[float] = None
    drop_after: Optional[int] = None
    malformed_after: Optional[int] = None
    stall: float = 0.0
    stall_after: Optional[int] = None
    content_filter: Optional[str] = None
    echo_request: Optional[str] = None
    echo_headers: bool = False
    echo_key: bool = False


@dataclass
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: Dict[str, str]
    body: Any
    time: float = field(default_factory=time.time)


class LocalLLMServer:
    """A local LLM server; see the module docstring. Thread-safe.

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
        self._replays: Deque[Tuple[str, str, Dict[str, Any]]] = deque()
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
            # Load the tokenizers now, not inside the first (timed) request.
            for name in ("o200k_base", "cl100k_base"):
                encoder(name)
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
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - PyYAML is in the dev extra
            raise ImportError("LocalLLMServer.replay needs PyYAML (pip install pyyaml)") from exc
        with open(cassette, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        queued = 0
        with self._lock:
            for interaction in data["interactions"]:
                request = interaction["request"]
                parts = urlsplit(request.get("uri") or request.get("url") or "")
                if hosts is not None and parts.hostname not in hosts:
                    continue
                method = str(request.get("method", "POST")).upper()
                self._replays.append((method, unquote(parts.path), interaction["response"]))
                queued += 1
        return queued

    def _next_error(self) -> Optional[Fault]:
        """The next scripted fault if it is an error status (taken), else None (left)."""
        with self._lock:
            if self._faults and self._faults[0].status is not None:
                return self._faults.popleft()
            return None

    def _next(self) -> "tuple[Optional[Fault], Optional[Dict[str, Any]]]":
        with self._lock:
            return (self._faults.popleft() if self._faults else None), None

    def _take_replay(self, method: str, path: str) -> "tuple[bool, Optional[Dict[str, Any]]]":
        """(whether replays are queued, the recorded response for this request or None)."""
        path = unquote(path.split("?", 1)[0]).rstrip("/")
        with self._lock:
            if not self._replays:
                return False, None
            for index, (recorded_method, recorded_path, response) in enumerate(self._replays):
                recorded_path = recorded_path.rstrip("/")
                if recorded_method == method and (
                    path.endswith(recorded_path)
                    or recorded_path.endswith(path)
                    or path.split("/")[-2:] == recorded_path.split("/")[-2:]
                ):
                    del self._replays[index]
                    return True, response
            return True, None

    def _log(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    # ------------------------------------------------------------------ content
    def reply_text(self, prompt: str, words: Optional[int] = None) -> List[str]:
        """The reply to ``prompt`` as its list of pieces (one token each)."""
        seed = zlib.crc32(prompt.encode("utf-8"))
        count = words if words is not None else self.reply_words
        picked = [WORDS[(seed + i * 7919) % len(WORDS)] for i in range(count)]
        return [picked[0]] + [" " + w for w in picked[1:]] if picked else []

    def pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # the default backlog of 5 resets bursts of connections
    owner: LocalLLMServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or close early are part of the job: no traceback for them.
        import sys

        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm the second waits for
    # the client's delayed ACK (~40 ms a response).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # ------------------------------------------------------------------ dispatch
    def do_POST(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        replaying, replay = owner._take_replay("POST", self.path)
        if replaying:
            owner._log(RecordedRequest("POST", self.path, dict(self.headers.items()), None))
            if replay is None:
                self._json(404, {"error": {"message": f"no recorded answer for {self.path}"}})
            else:
                self._replay(replay)
            return
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        owner._log(
            RecordedRequest(
                "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body
            )
        )
        path = self.path.split("?", 1)[0]
        other = _other_protocol(path)
        error = owner._next_error() if other is not None else None
        if other is not None and error is not None:
            self._fault_error(other, error, body)
            return
        if path.endswith("/chat/completions"):
            protocol = "openai"
        elif path.endswith("/v1/messages"):
            protocol = "anthropic"
        elif path.endswith("/responses"):
            protocol = "responses"
            if isinstance(body, dict) and "input" in body:
                body = {**body, "messages": _input_messages(body["input"])}
        else:
            self._json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
            return
        fault, _ = owner._next()
        fault = fault or Fault()
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._error(protocol, 400, "messages must be a list")
            return
        if fault.stall and fault.stall_after is None:
            owner.pause(fault.stall)
        if fault.status is not None:
            self._fault_error(protocol, fault, body)
            return
        if fault.content_filter == "prompt":
            self._json(400, _FILTERED_PROMPT)
            return
        if protocol == "openai":
            self._openai(body, fault)
        elif protocol == "responses":
            self._responses(body, fault)
        else:
            self._anthropic(body, fault)

    def do_GET(self) -> None:
        replaying, replay = self.server.owner._take_replay("GET", self.path)
        if replay is not None:
            self._replay(replay)
        elif replaying:
            self._json(404, {"error": {"message": f"no recorded answer for {self.path}"}})
        elif self.path.rstrip("/") in ("", "/health"):
            self._json(200, {"status": "ok"})
        else:
            self._json(404, {"error": {"message": "not found"}})

    # ------------------------------------------------------------------ plain responses
    def _json(self, status: int, payload: Any, headers: Optional[Dict[str, str]] = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-request-id", f"req_local_{id(self):x}")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(
        self,
        protocol: str,
        status: int,
        message: Optional[str] = None,
        retry_after: Optional[float] = None,
        extra: Optional[Dict[str, Any]] = None,
    ) -> None:
        kind, default = _STATUS_ERRORS.get(status, ("api_error", "Error"))
        text = message or default
        headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
        if protocol == "openai":
            payload: Dict[str, Any] = {"error": {"message": text, "type": kind, "code": None}}
        elif protocol == "gemini":
            code = _GEMINI_STATUS.get(status, "UNKNOWN")
            payload = {"error": {"code": status, "message": text, "status": code}}
        elif protocol == "bedrock":
            payload = {"message": text}
            headers["x-amzn-errortype"] = _BEDROCK_ERRORS.get(status, "InternalServerException")
        else:
            payload = {"type": "error", "error": {"type": kind, "message": text}}
        self._json(status, {**payload, **(extra or {})}, headers)

    def _fault_error(self, protocol: str, fault: Fault, body: Any) -> None:
        """Answer with the error status of ``fault``, echoing what it says to echo."""
        assert fault.status is not None
        kind, default = _STATUS_ERRORS.get(fault.status, ("api_error", "Error"))
        message = None
        extra: Dict[str, Any] = {}
        if fault.echo_request == "message" and isinstance(body, dict):
            quoted = ("system", "systemInstruction", "instructions", "messages", "contents")
            said = {k: body[k] for k in quoted if k in body}
            message = f"{default}: invalid input {json.dumps(said)}"
        elif fault.echo_request == "body":
            extra["request"] = body
        if fault.echo_key:
            keys = ", ".join(_credentials(self.headers.items()))
            message = f"{message or default}. Incorrect API key provided: {keys}"
        if fault.echo_headers:
            lines = "\n".join(f"{k.lower()}:{v}" for k, v in self.headers.items())
            message = f"{message or default}. The canonical request was:\n{lines}"
        self._error(protocol, fault.status, message, fault.retry_after, extra)

    # ------------------------------------------------------------------ protocols
    def _prompt_of(self, body: Dict[str, Any]) -> str:
        return "\n".join(str(m.get("content", "")) for m in body["messages"] if isinstance(m, dict))

    def _usage(self, body: Dict[str, Any], pieces: Sequence[str]) -> "tuple[int, int]":
        """(prompt, completion) tokens, counted as the client counts them locally."""
        messages = list(body["messages"])
        if isinstance(body.get("system"), str):
            messages.insert(0, {"role": "system", "content": body["system"]})
        model = body.get("model")
        return count_messages(messages, model).tokens, count_text("".join(pieces), model).tokens

    def _pieces(self, body: Dict[str, Any]) -> List[str]:
        owner = self.server.owner
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        words = owner.reply_words if not isinstance(limit, int) else min(limit, owner.reply_words)
        pieces = owner.reply_text(self._prompt_of(body), words)
        fmt = body.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
            return ['{"answer": "', *pieces, '"}']  # one JSON object, streamed in pieces
        return pieces

    def _tool_call(
        self, body: Dict[str, Any], protocol: str
    ) -> Optional[Tuple[str, str, List[str]]]:
        """(name, call id, argument JSON pieces) when the answer is a tool call, else None."""
        tools = body.get("tools")
        choice = body.get("tool_choice")
        if not tools or choice in ("none", {"type": "none"}):
            return None
        last = body["messages"][-1] if body["messages"] else {}
        if last.get("role") == "tool":
            return None
        content = last.get("content")
        if isinstance(content, list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in content
        ):
            return None
        wanted = None
        if isinstance(choice, dict):
            wanted = choice.get("name") or (choice.get("function") or {}).get("name")
        specs = []
        for tool in tools:
            function = tool.get("function") if isinstance(tool.get("function"), dict) else tool
            schema = function.get("parameters") or function.get("input_schema") or {}
            specs.append((function.get("name"), schema))
        name, schema = next((spec for spec in specs if spec[0] == wanted), specs[0])
        words = self.server.owner.reply_text(self._prompt_of(body), 4)
        arguments: Dict[str, Any] = {}
        for i, (key, prop) in enumerate(sorted((schema.get("properties") or {}).items())):
            kind = prop.get("type") if isinstance(prop, dict) else None
            value: Any = {"integer": i + 1, "number": i + 0.5, "boolean": True}.get(
                str(kind), words[i % len(words)].strip() if words else "x"
            )
            arguments[key] = value
        text = json.dumps(arguments)
        third = max(1, len(text) // 3)
        pieces = [text[:third], text[third : 2 * third], text[2 * third :]]
        prefix = "call_" if protocol == "openai" else "toolu_"
        return str(name), f"{prefix}local{zlib.crc32(text.encode()):x}", pieces

    def _openai(self, body: Dict[str, Any], fault: Fault) -> None:
        owner = self.server.owner
        n = body.get("n")
        count = n if isinstance(n, int) and n > 1 else 1
        call = self._tool_call(body, "openai")
        answers: List[Tuple[List[str], List[str]]] = []  # per choice: (text, call arguments)
        for index in range(count):
            if call is not None:
                answers.append(([], list(call[2])))
            else:
                extra = {"role": "user", "content": f"#{index}"}
                tagged = body if index == 0 else {**body, "messages": [*body["messages"], extra]}
                answers.append((self._pieces(tagged), []))
        prompt_tokens = self._usage(body, [])[0]
        completion_tokens = sum(self._usage(body, texts + args)[1] for texts, args in answers)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
        }
        finish = "tool_calls" if call is not None else "stop"
        if fault.content_filter == "completion":
            finish = "content_filter"
        base = {
            "id": f"chatcmpl-local{zlib.crc32(json.dumps(body).encode()):x}",
            "created": int(time.time()),
            # An Azure deployment answers with the model behind it, not its own name.
            "model": owner.azure_model
            if self.path.startswith("/openai/")
            else str(body.get("model") or "unknown"),
        }
        if not body.get("stream"):
            owner.pause(owner.ttft_ms / 1000.0 + self._generation_seconds(len(answers[0][0])))
            choices = [
                _openai_choice(index, texts, args, call, finish)
                for index, (texts, args) in enumerate(answers)
            ]
            self._json(
                200, {**base, "object": "chat.completion", "choices": choices, "usage": usage}
            )
            return
        base = {**base, "object": "chat.completion.chunk", "system_fingerprint": None}
        events = _openai_events(base, answers, call, finish)
        include = (body.get("stream_options") or {}).get("include_usage")
        if include and owner.report_usage:
            events.append({**base, "choices": [], "usage": usage})
        frames = [f"data: {json.dumps(e)}\n\n" for e in events] + ["data: [DONE]\n\n"]
        self._stream(frames, fault, first_content=count)

    def _anthropic(self, body: Dict[str, Any], fault: Fault) -> None:
        owner = self.server.owner
        model = str(body.get("model") or "unknown")
        call = self._tool_call(body, "anthropic")
        pieces = self._pieces(body) if call is None else call[2]
        prompt_tokens, completion_tokens = self._usage(body, pieces)
        ident = f"msg_local{zlib.crc32(json.dumps(body).encode()):x}"
        stop = "end_turn" if call is None else "tool_use"
        if call is None:
            block: Dict[str, Any] = {"type": "text", "text": ""}
        else:
            block = {"type": "tool_use", "id": call[1], "name": call[0], "input": {}}
        if not body.get("stream"):
            owner.pause(owner.ttft_ms / 1000.0 + self._generation_seconds(len(pieces)))
            self._json(
                200,
                {
                    "id": ident,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [
                        {"type": "text", "text": "".join(pieces)}
                        if call is None
                        else {**block, "input": json.loads("".join(pieces))}
                    ],
                    "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": prompt_tokens,
                        "output_tokens": completion_tokens,
                        "cache_read_input_tokens": 0,
                        "cache_creation_input_tokens": 0,
                    },
                },
            )
            return
        frames = [
            _event(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": ident,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {
                            "input_tokens": prompt_tokens,
                            "output_tokens": 1,
                            "cache_read_input_tokens": 0,
                            "cache_creation_input_tokens": 0,
                        },
                    },
                },
            ),
            _event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": block,
                },
            ),
            _event("ping", {"type": "ping"}),
        ]
        frames += [
            _event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": p}
                    if call is None
                    else {"type": "input_json_delta", "partial_json": p},
                },
            )
            for p in pieces
        ]
        frames += [
            _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": completion_tokens},
                },
            ),
            _event("message_stop", {"type": "message_stop"}),
        ]
        self._stream(frames, fault, first_content=3)

    def _responses(self, body: Dict[str, Any], fault: Fault) -> None:
        """The Responses API: a message or a function call, whole or as named events."""
        owner = self.server.owner
        call = self._tool_call(body, "openai")
        limit = body.get("max_output_tokens")
        words = owner.reply_words
        cut = isinstance(limit, int) and call is None and limit < words
        pieces = self._pieces({**body, "max_tokens": limit}) if call is None else call[2]
        prompt_tokens, completion_tokens = self._usage(body, pieces)
        ident = f"{zlib.crc32(json.dumps(body).encode()):x}"
        response: Dict[str, Any] = {
            "id": f"resp_local{ident}",
            "object": "response",
            "created_at": int(time.time()),
            "status": "incomplete" if cut else "completed",
            "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
            "error": None,
            # Azure (``/openai/...``) answers with the model behind the deployment.
            "model": owner.azure_model
            if self.path.startswith("/openai/")
            else str(body.get("model") or "unknown"),
            "instructions": body.get("instructions"),
            "metadata": {},
            "parallel_tool_calls": True,
            "temperature": 1.0,
            "top_p": 1.0,
            "tool_choice": body.get("tool_choice") or "auto",
            "tools": body.get("tools") or [],
            "usage": {
                "input_tokens": prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": completion_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        if call is None:
            item: Dict[str, Any] = {
                "type": "message",
                "id": f"msg_local{ident}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "".join(pieces), "annotations": []}],
            }
        else:
            item = {
                "type": "function_call",
                "id": f"fc_local{ident}",
                "call_id": call[1],
                "name": call[0],
                "arguments": "".join(pieces),
                "status": "completed",
            }
        if not body.get("stream"):
            owner.pause(owner.ttft_ms / 1000.0 + self._generation_seconds(len(pieces)))
            self._json(200, {**response, "output": [item]})
            return
        events = _responses_events(response, item, pieces)
        frames = [_event(e["type"], e) for e in events]
        self._stream(frames, fault, first_content=2)

    def _generation_seconds(self, tokens: int) -> float:
        rate = self.server.owner.tokens_per_second
        return tokens / rate if rate else 0.0

    # ------------------------------------------------------------------ streaming
    def _stream(self, frames: List[str], fault: Fault, first_content: int) -> None:
        owner = self.server.owner
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("x-request-id", f"req_local_{id(self):x}")
        self.end_headers()
        rate = owner.tokens_per_second
        try:
            for index, frame in enumerate(frames):
                if index == fault.drop_after:
                    self._drop()
                    return
                if index == fault.malformed_after:
                    self._chunk("data: {this is not json\n\n")
                if index == fault.stall_after:
                    owner.pause(fault.stall)
                if index == first_content:
                    owner.pause(owner.ttft_ms / 1000.0)
                elif index > first_content and rate:
                    owner.pause(1.0 / rate)
                self._chunk(frame)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away: fine

    def _chunk(self, text: str) -> None:
        data = text.encode("utf-8")
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _drop(self) -> None:
        """Cut the connection without ending the chunked body, as a network failure would."""
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _replay(self, response: Dict[str, Any]) -> None:
        status = int(response.get("status", {}).get("code", 200))
        headers = {
            k.lower(): v[0] if isinstance(v, list) else v
            for k, v in (response.get("headers") or {}).items()
        }
        body = response.get("body")
        data: bytes
        if "parsed_body" in response:
            data = json.dumps(response["parsed_body"]).encode("utf-8")
            headers.setdefault("content-type", "application/json")
            headers.pop("content-encoding", None)  # stored decoded
        else:
            raw = body.get("string", "") if isinstance(body, dict) else (body or "")
            if isinstance(raw, str) and headers.get("content-type", "").startswith(
                "text/event-stream"
            ):
                self._replay_events(status, headers["content-type"], raw)
                return
            data = raw if isinstance(raw, bytes) else str(raw).encode("utf-8")
        self.send_response(status)
        self.send_header("content-type", headers.get("content-type", "application/json"))
        self.send_header("content-length", str(len(data)))
        for key in _REPLAYED_HEADERS:
            if key in headers:
                self.send_header(key, str(headers[key]))
        self.end_headers()
        self.wfile.write(data)

    def _replay_events(self, status: int, content_type: str, text: str) -> None:
        """Server-sent events as recorded, one chunk per event."""
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for frame in text.replace("\r\n", "\n").split("\n\n"):
            if frame.strip():
                self._chunk(frame + "\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


#: Response headers a replay sends as recorded (besides content-type and -length).
_REPLAYED_HEADERS = (
    "content-encoding",
    "x-request-id",
    "request-id",
    "retry-after",
    "x-amzn-requestid",
)


ToolCallPlan = Optional[Tuple[str, str, List[str]]]  # (name, call id, argument pieces)


def _openai_choice(
    index: int, texts: List[str], args: List[str], call: ToolCallPlan, finish: str
) -> Dict[str, Any]:
    """One choice of a chat.completion body."""
    message: Dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if args and call is not None:
        function = {"name": call[0], "arguments": "".join(args)}
        message["tool_calls"] = [{"id": call[1], "type": "function", "function": function}]
    entry: Dict[str, Any] = {"index": index, "message": message, "finish_reason": finish}
    if finish == "content_filter":
        entry["message"] = {"role": "assistant", "content": None}
        entry["content_filter_results"] = _FILTER_RESULTS
    return entry


def _openai_events(
    base: Dict[str, Any],
    answers: List[Tuple[List[str], List[str]]],
    call: ToolCallPlan,
    finish: str,
) -> List[Dict[str, Any]]:
    """The chunks of a chat-completion stream: the choices interleaved piece by piece, as
    OpenAI sends them; a tool call's id and name come with its first fragment."""

    def chunk(index: int, delta: Dict[str, Any], reason: Optional[str] = None) -> Dict[str, Any]:
        choice: Dict[str, Any] = {"index": index, "delta": delta, "finish_reason": reason}
        if reason == "content_filter":
            choice["content_filter_results"] = _FILTER_RESULTS
        return {**base, "choices": [choice]}

    events = [chunk(i, {"role": "assistant", "content": ""}) for i in range(len(answers))]
    longest = max(len(texts) + len(args) for texts, args in answers)
    for step in range(longest):
        for index, (texts, args) in enumerate(answers):
            if step < len(texts):
                events.append(chunk(index, {"content": texts[step]}))
            elif call is not None and step < len(args):
                fragment: Dict[str, Any] = {"index": 0, "function": {"arguments": args[step]}}
                if step == 0:
                    fragment.update(id=call[1], type="function")
                    fragment["function"]["name"] = call[0]
                events.append(chunk(index, {"tool_calls": [fragment]}))
    return events + [chunk(i, {}, finish) for i in range(len(answers))]


def _input_messages(given: Any) -> List[Dict[str, Any]]:
    """A Responses API ``input`` as chat messages (for the reply text and token counts)."""
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    out: List[Dict[str, Any]] = []
    for item in given or ():
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call_output":
            out.append({"role": "tool", "content": str(item.get("output", ""))})
        elif item.get("type") == "function_call":
            out.append({"role": "assistant", "content": str(item.get("arguments", ""))})
        else:
            content = item.get("content")
            if isinstance(content, list):
                content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            out.append({"role": item.get("role", "user"), "content": content or ""})
    return out


def _responses_events(
    response: Dict[str, Any], item: Dict[str, Any], pieces: List[str]
) -> List[Dict[str, Any]]:
    """The named events of a streamed Responses API answer with one output item."""
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    events: List[Dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
    ]
    if item["type"] == "message":
        empty = {**item, "status": "in_progress", "content": []}
        part = {"type": "output_text", "text": "", "annotations": []}
        events.append({"type": "response.output_item.added", "output_index": 0, "item": empty})
        events.append(
            {
                "type": "response.content_part.added",
                "item_id": item["id"],
                "output_index": 0,
                "content_index": 0,
                "part": part,
            }
        )
        events += [
            {
                "type": "response.output_text.delta",
                "item_id": item["id"],
                "output_index": 0,
                "content_index": 0,
                "delta": piece,
                "logprobs": [],
            }
            for piece in pieces
        ]
        text = item["content"][0]["text"]
        events.append(
            {
                "type": "response.output_text.done",
                "item_id": item["id"],
                "output_index": 0,
                "content_index": 0,
                "text": text,
                "logprobs": [],
            }
        )
        events.append(
            {
                "type": "response.content_part.done",
                "item_id": item["id"],
                "output_index": 0,
                "content_index": 0,
                "part": {**part, "text": text},
            }
        )
    else:
        empty = {**item, "status": "in_progress", "arguments": ""}
        events.append({"type": "response.output_item.added", "output_index": 0, "item": empty})
        events += [
            {
                "type": "response.function_call_arguments.delta",
                "item_id": item["id"],
                "output_index": 0,
                "delta": piece,
            }
            for piece in pieces
        ]
        events.append(
            {
                "type": "response.function_call_arguments.done",
                "item_id": item["id"],
                "output_index": 0,
                "arguments": item["arguments"],
            }
        )
    events.append({"type": "response.output_item.done", "output_index": 0, "item": item})
    final = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
    events.append({"type": final, "response": {**response, "output": [item]}})
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return events


#: Azure OpenAI's content-filter results (every category checked, one filtered).
_FILTER_RESULTS = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": True, "severity": "high"},
}
#: Azure OpenAI's answer to a prompt its filter refuses.
_FILTERED_PROMPT = {
    "error": {
        "message": "The response was filtered due to the prompt triggering the content "
        "management policy.",
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": _FILTER_RESULTS,
        },
    }
}


def _event(name: str, payload: Dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(payload)}\n\n"


def main(argv: Optional[Sequence[str]] = None) -> None:
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
    for name in ("o200k_base", "cl100k_base"):  # as start() does
        encoder(name)
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._server.server_close()


if __name__ == "__main__":
    main()
