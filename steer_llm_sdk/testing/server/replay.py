"""Replay of recorded exchanges: a vcrpy cassette read, each request matched with a recorded
interaction, and the recorded response sent as it was recorded."""

import functools
import json
from typing import Any, Deque, Dict, Iterator, Optional, Sequence, Tuple, Union
from urllib.parse import unquote, urlsplit

from .wire import Writer

#: A recorded interaction: (method, path, the cassette's response).
Recorded = Tuple[str, str, Dict[str, Any]]

#: Response headers a replay sends as recorded (besides content-type and -length).
_REPLAYED_HEADERS = (
    "content-encoding",
    "x-request-id",
    "request-id",
    "retry-after",
    "x-amzn-requestid",
    # Bedrock InvokeModel reports usage in these headers only (for most body formats).
    "x-amzn-bedrock-input-token-count",
    "x-amzn-bedrock-output-token-count",
    "x-amzn-bedrock-cache-read-input-token-count",
    "x-amzn-bedrock-cache-write-input-token-count",
    "x-amzn-bedrock-invocation-latency",
)


#: How many parsed cassettes :func:`read` keeps (tests replay one cassette a few times in a
#: row, then the next).
_KEPT = 64


def read(cassette: str) -> Any:
    """The cassette file's contents, parsed.

    The same contents are parsed once per process (the last :data:`_KEPT` different ones
    are kept, by their bytes: a file changed in place is parsed again); the parsed object
    is shared by every caller, which must not change it. Thread-safe.

    Raises:
        ImportError: PyYAML is not installed.
        OSError: the file cannot be read.
    """
    with open(cassette, "rb") as handle:
        return _parse(handle.read())


@functools.lru_cache(maxsize=_KEPT)
def _parse(text: bytes) -> Any:
    """``text`` parsed with PyYAML's C loader when PyYAML was built with libyaml (about ten
    times faster, the same objects on every recorded cassette), else its pure-Python one."""
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - PyYAML is in the dev extra
        raise ImportError("LocalLLMServer.replay needs PyYAML (pip install pyyaml)") from exc
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def interactions(data: Any, hosts: Optional[Sequence[str]]) -> Iterator[Recorded]:
    """The cassette's interactions with ``hosts`` (None: all), in order."""
    for interaction in data["interactions"]:
        request = interaction["request"]
        parts = urlsplit(request.get("uri") or request.get("url") or "")
        if hosts is not None and parts.hostname not in hosts:
            continue
        method = str(request.get("method", "POST")).upper()
        yield method, unquote(parts.path), interaction["response"]


def take(queued: Deque[Recorded], method: str, path: str) -> Tuple[bool, Optional[Dict[str, Any]]]:
    """(whether replays are queued, the recorded response for this request or None); the
    response taken is removed from ``queued``. The caller holds the lock guarding it."""
    if not queued:
        return False, None
    path = unquote(path.split("?", 1)[0]).rstrip("/")
    for index, (recorded_method, recorded_path, response) in enumerate(queued):
        if recorded_method == method and _same_path(path, recorded_path.rstrip("/")):
            del queued[index]
            return True, response
    return True, None


def _same_path(path: str, recorded: str) -> bool:
    """One path ends like the other (base URLs differ), or both end in the same two
    segments (``chat/completions``, ``models/<model>:generateContent``)."""
    return (
        path.endswith(recorded)
        or recorded.endswith(path)
        or path.split("/")[-2:] == recorded.split("/")[-2:]
    )


def send(writer: Writer, response: Optional[Dict[str, Any]]) -> None:
    """Send a recorded response as recorded; None: a 404 saying none was recorded."""
    if response is None:
        writer.write_json(404, {"error": {"message": f"no recorded answer for {writer.path}"}})
        return
    status = int(response.get("status", {}).get("code", 200))
    headers, body = _recorded(response)
    if isinstance(body, str):
        _send_events(writer, status, headers["content-type"], body)
        return
    writer.send_response(status)
    writer.send_header("content-type", headers.get("content-type", "application/json"))
    writer.send_header("content-length", str(len(body)))
    for key in _REPLAYED_HEADERS:
        if key in headers:
            writer.send_header(key, str(headers[key]))
    writer.end_headers()
    writer.wfile.write(body)


def _recorded(response: Dict[str, Any]) -> Tuple[Dict[str, Any], Union[bytes, str]]:
    """(headers, body) of a recorded response, the header names in lower case; the body as
    bytes, or as text when it is server-sent events (sent one event a chunk)."""
    headers = {
        k.lower(): v[0] if isinstance(v, list) else v
        for k, v in (response.get("headers") or {}).items()
    }
    if "parsed_body" in response:
        data = json.dumps(response["parsed_body"]).encode("utf-8")
        headers.setdefault("content-type", "application/json")
        headers.pop("content-encoding", None)  # stored decoded
        return headers, data
    body = response.get("body")
    raw = body.get("string", "") if isinstance(body, dict) else (body or "")
    if isinstance(raw, str) and headers.get("content-type", "").startswith("text/event-stream"):
        return headers, raw
    return headers, raw if isinstance(raw, bytes) else str(raw).encode("utf-8")


def _send_events(writer: Writer, status: int, content_type: str, text: str) -> None:
    """Server-sent events as recorded, one chunk per event."""
    writer.send_response(status)
    writer.send_header("content-type", content_type)
    writer.send_header("transfer-encoding", "chunked")
    writer.end_headers()
    for frame in text.replace("\r\n", "\n").split("\n\n"):
        if frame.strip():
            writer.write_chunk(frame + "\n\n")
    writer.write_last_chunk()
