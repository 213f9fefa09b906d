"""Bedrock's runtime paths.

* Converse (``/model/<model>/converse``, ``/converse-stream``) and InvokeModel (``/invoke``,
  ``/invoke-with-response-stream``): scripted error statuses, in Bedrock's error shape (the
  error's name in a header), so that instrumented ``boto3`` calls can be made to fail.
* InvokeModel answered in the body format of the model's family (:func:`invoke_answer`):
  Anthropic's messages and text completions, Amazon Nova, Titan text and embeddings, Meta
  Llama, Mistral (prompt and chat models), Cohere Command (and Command R), AI21 Jamba and
  Jurassic-2, each with its usage where that family's body carries it, the
  ``X-Amzn-Bedrock-*-Token-Count`` headers, and for ``invoke-with-response-stream`` AWS's
  binary event stream (:func:`event_frame`) whose last chunk carries
  ``amazon-bedrock-invocationMetrics``. :func:`send_invoke` writes an answer;
  :func:`invoke_interaction` makes it a recorded interaction for ``LocalLLMServer.replay``.

The counts agree everywhere they appear: the prompt's text (every string of the request's
text fields) counted with ``o200k_base``, and the reply's words, one token each.
"""

import base64
import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import quote, unquote

from ...streaming.tokens import count_text
from .content import Replies
from .wire import Writer

#: The ends of the Bedrock runtime paths answered with scripted errors.
INVOKE_PATHS = ("/invoke", "/invoke-with-response-stream")
PATHS = ("/converse", "/converse-stream") + INVOKE_PATHS

_ERRORS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    422: "ValidationException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


def error_body(status: int, message: str, kind: str) -> Tuple[Dict[str, Any], Dict[str, str]]:
    errortype = _ERRORS.get(status, "InternalServerException")
    return {"message": message}, {"x-amzn-errortype": errortype}


# ---------------------------------------------------------------------- the event stream


def _header(name: str, value: str) -> bytes:
    """One event-stream header of type string (7)."""
    key, data = name.encode("utf-8"), value.encode("utf-8")
    return struct.pack("!B", len(key)) + key + struct.pack("!BH", 7, len(data)) + data


def event_frame(headers: Dict[str, str], payload: bytes) -> bytes:
    """One message of AWS's event-stream encoding: its total and headers lengths, their
    CRC32, the headers, the payload, and the CRC32 of all before it."""
    encoded = b"".join(_header(name, value) for name, value in headers.items())
    prelude = struct.pack("!II", 16 + len(encoded) + len(payload), len(encoded))
    start = prelude + struct.pack("!I", zlib.crc32(prelude)) + encoded + payload
    return start + struct.pack("!I", zlib.crc32(start))


def chunk_frame(chunk: Dict[str, Any]) -> bytes:
    """A ``chunk`` event of InvokeModelWithResponseStream carrying ``chunk`` as its JSON
    bytes (base64 in the event's JSON payload, as Bedrock sends them)."""
    data = base64.b64encode(json.dumps(chunk).encode("utf-8")).decode("ascii")
    headers = {":event-type": "chunk", ":content-type": "application/json"}
    return event_frame({**headers, ":message-type": "event"}, json.dumps({"bytes": data}).encode())


def exception_frame(kind: str, message: str) -> bytes:
    """An exception event (``modelStreamErrorException``, ...), as a stream that fails
    midway sends it."""
    headers = {":exception-type": kind, ":content-type": "application/json"}
    payload = json.dumps({"message": message, "originalStatusCode": 500}).encode()
    return event_frame({**headers, ":message-type": "exception"}, payload)


# ---------------------------------------------------------------------- the families

#: Model id prefixes (after a cross-region prefix like ``us.``) -> family, first match wins.
_FAMILIES = (
    ("anthropic.claude-v2", "claude_text"),
    ("anthropic.claude-instant", "claude_text"),
    ("anthropic.", "anthropic"),
    ("amazon.nova", "nova"),
    ("amazon.titan-embed", "titan_embed"),
    ("amazon.titan", "titan"),
    ("meta.llama", "llama"),
    ("mistral.mistral-large-2407", "mistral_chat"),
    ("mistral.pixtral", "mistral_chat"),
    ("mistral.", "mistral"),
    ("cohere.command-r", "cohere_r"),
    ("cohere.command", "cohere"),
    ("ai21.jamba", "jamba"),
    ("ai21.j2", "jurassic"),
)
#: Families with prompt caching: their answers say how much was read from the cache.
_CACHING = ("anthropic", "nova")
#: Families whose models do not stream on Bedrock.
_NOT_STREAMED = ("titan_embed", "jurassic")
#: The request fields whose strings are the prompt, in every family's format.
_PROMPT_FIELDS = ("messages", "prompt", "inputText", "message", "system", "content", "text")


def family_of(model: str) -> Optional[str]:
    """The body format of a Bedrock model id (or inference profile), None if unknown."""
    name = model.split(":", 1)[0] if model.startswith("arn:") else model
    name = name.rsplit("/", 1)[-1]
    for region in ("us.", "eu.", "apac.", "global.", "us-gov."):
        if name.startswith(region):
            name = name[len(region) :]
            break
    return next((family for prefix, family in _FAMILIES if name.startswith(prefix)), None)


def _strings(value: Any, found: List[str]) -> None:
    if isinstance(value, str):
        found.append(value)
    elif isinstance(value, dict):
        for key in _PROMPT_FIELDS:
            if key in value:
                _strings(value[key], found)
    elif isinstance(value, list):
        for item in value:
            _strings(item, found)


def prompt_of(request: Dict[str, Any]) -> str:
    """The prompt's text: every string under the request's text fields, one a line."""
    found: List[str] = []
    _strings(request, found)
    return "\n".join(found)


@dataclass
class Invocation:
    """One InvokeModel answer being made: the model, its family, the reply's pieces (one
    token each) and the counts."""

    model: str
    family: str
    pieces: List[str]
    input_tokens: int
    output_tokens: int
    ident: str = field(default="")

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def metrics(self) -> Dict[str, Any]:
        """``amazon-bedrock-invocationMetrics`` of the last chunk."""
        return {
            "inputTokenCount": self.input_tokens,
            "outputTokenCount": self.output_tokens,
            "invocationLatency": 120,
            "firstByteLatency": 40,
        }


def _anthropic(call: Invocation) -> Dict[str, Any]:
    return {
        "id": f"msg_bdrk_{call.ident}",
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": [{"type": "text", "text": call.text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": call.input_tokens,
            "output_tokens": call.output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def _anthropic_chunks(call: Invocation) -> List[Dict[str, Any]]:
    start = {**_anthropic(call), "content": [], "stop_reason": None}
    start["usage"] = {**start["usage"], "output_tokens": 1}
    chunks: List[Dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    for piece in call.pieces:
        delta = {"type": "text_delta", "text": piece}
        chunks.append({"type": "content_block_delta", "index": 0, "delta": delta})
    chunks.append({"type": "content_block_stop", "index": 0})
    chunks.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": call.output_tokens},
        }
    )
    chunks.append({"type": "message_stop"})
    return chunks


def _claude_text(call: Invocation) -> Dict[str, Any]:
    return {"completion": call.text, "stop_reason": "stop_sequence", "stop": "\n\nHuman:"}


def _claude_text_chunks(call: Invocation) -> List[Dict[str, Any]]:
    chunks = [{"completion": p, "stop_reason": None, "stop": None} for p in call.pieces]
    return chunks + [{"completion": "", "stop_reason": "stop_sequence", "stop": "\n\nHuman:"}]


def _nova(call: Invocation) -> Dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": call.text}]}},
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": call.input_tokens,
            "outputTokens": call.output_tokens,
            "totalTokens": call.input_tokens + call.output_tokens,
            "cacheReadInputTokenCount": 0,
            "cacheWriteInputTokenCount": 0,
        },
    }


def _nova_chunks(call: Invocation) -> List[Dict[str, Any]]:
    chunks: List[Dict[str, Any]] = [{"messageStart": {"role": "assistant"}}]
    for piece in call.pieces:
        chunks.append({"contentBlockDelta": {"delta": {"text": piece}, "contentBlockIndex": 0}})
    chunks.append({"contentBlockStop": {"contentBlockIndex": 0}})
    chunks.append({"messageStop": {"stopReason": "end_turn"}})
    usage = {"inputTokens": call.input_tokens, "outputTokens": call.output_tokens}
    chunks.append({"metadata": {"usage": usage, "metrics": {}, "trace": {}}})
    return chunks


def _titan(call: Invocation) -> Dict[str, Any]:
    result = {
        "tokenCount": call.output_tokens,
        "outputText": call.text,
        "completionReason": "FINISH",
    }
    return {"inputTextTokenCount": call.input_tokens, "results": [result]}


def _titan_chunks(call: Invocation) -> List[Dict[str, Any]]:
    chunks = []
    for index, piece in enumerate(call.pieces):
        chunk: Dict[str, Any] = {
            "outputText": piece,
            "index": 0,
            "totalOutputTextTokenCount": index + 1,
            "completionReason": "FINISH" if index == len(call.pieces) - 1 else None,
        }
        if index == 0:
            chunk["inputTextTokenCount"] = call.input_tokens
        chunks.append(chunk)
    return chunks


def _titan_embed(call: Invocation) -> Dict[str, Any]:
    return {"embedding": [0.125, -0.5, 0.25, 0.0], "inputTextTokenCount": call.input_tokens}


def _llama(call: Invocation) -> Dict[str, Any]:
    return {
        "generation": call.text,
        "prompt_token_count": call.input_tokens,
        "generation_token_count": call.output_tokens,
        "stop_reason": "stop",
    }


def _llama_chunks(call: Invocation) -> List[Dict[str, Any]]:
    chunks: List[Dict[str, Any]] = []
    for index, piece in enumerate(call.pieces):
        chunks.append(
            {
                "generation": piece,
                "prompt_token_count": call.input_tokens if index == 0 else None,
                "generation_token_count": index + 1,
                "stop_reason": None,
            }
        )
    last = {"generation": "", "prompt_token_count": None, "stop_reason": "stop"}
    return chunks + [{**last, "generation_token_count": call.output_tokens}]


def _mistral(call: Invocation) -> Dict[str, Any]:
    return {"outputs": [{"text": call.text, "stop_reason": "stop"}]}


def _mistral_chunks(call: Invocation) -> List[Dict[str, Any]]:
    chunks = [{"outputs": [{"text": p, "stop_reason": None}]} for p in call.pieces]
    return chunks + [{"outputs": [{"text": "", "stop_reason": "stop"}]}]


def _mistral_chat(call: Invocation) -> Dict[str, Any]:
    message = {"role": "assistant", "content": call.text}
    return {
        "id": call.ident,
        "object": "chat.completion",
        "model": call.model,
        "choices": [{"index": 0, "message": message, "stop_reason": "stop"}],
    }


def _mistral_chat_chunks(call: Invocation) -> List[Dict[str, Any]]:
    def chunk(content: str, stop: Optional[str]) -> Dict[str, Any]:
        message = {"role": "assistant", "content": content}
        return {
            "id": call.ident,
            "choices": [{"index": 0, "message": message, "stop_reason": stop}],
        }

    return [chunk(p, None) for p in call.pieces] + [chunk("", "stop")]


def _cohere_r(call: Invocation) -> Dict[str, Any]:
    return {
        "response_id": call.ident,
        "text": call.text,
        "generation_id": f"gen-{call.ident}",
        "chat_history": [],
        "finish_reason": "COMPLETE",
    }


def _cohere_r_chunks(call: Invocation) -> List[Dict[str, Any]]:
    start = {"is_finished": False, "event_type": "stream-start", "generation_id": call.ident}
    pieces = [
        {"is_finished": False, "event_type": "text-generation", "text": p} for p in call.pieces
    ]
    end = {
        "is_finished": True,
        "event_type": "stream-end",
        "finish_reason": "COMPLETE",
        "response": _cohere_r(call),
    }
    return [start, *pieces, end]


def _cohere(call: Invocation) -> Dict[str, Any]:
    generation = {"id": f"gen-{call.ident}", "text": call.text, "finish_reason": "COMPLETE"}
    return {"generations": [generation], "id": call.ident, "prompt": ""}


def _cohere_chunks(call: Invocation) -> List[Dict[str, Any]]:
    chunks: List[Dict[str, Any]] = [{"text": p, "is_finished": False} for p in call.pieces]
    return chunks + [{"is_finished": True, "finish_reason": "COMPLETE"}]


def _jamba_usage(call: Invocation) -> Dict[str, Any]:
    return {
        "prompt_tokens": call.input_tokens,
        "completion_tokens": call.output_tokens,
        "total_tokens": call.input_tokens + call.output_tokens,
    }


def _jamba(call: Invocation) -> Dict[str, Any]:
    message = {"role": "assistant", "content": call.text}
    return {
        "id": call.ident,
        "model": call.model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": _jamba_usage(call),
        "meta": {"requestDurationMillis": 120},
    }


def _jamba_chunks(call: Invocation) -> List[Dict[str, Any]]:
    def chunk(delta: Dict[str, Any], stop: Optional[str]) -> Dict[str, Any]:
        return {"id": call.ident, "choices": [{"index": 0, "delta": delta, "finish_reason": stop}]}

    chunks = [chunk({"role": "assistant", "content": ""}, None)]
    chunks += [chunk({"content": p}, None) for p in call.pieces]
    return chunks + [{**chunk({}, "stop"), "usage": _jamba_usage(call)}]


def _jurassic(call: Invocation) -> Dict[str, Any]:
    def tokens(count: int) -> List[Dict[str, Any]]:
        return [{"generatedToken": {"token": f"t{i}"}, "textRange": {}} for i in range(count)]

    completion = {"data": {"text": call.text, "tokens": tokens(call.output_tokens)}}
    return {
        "id": call.ident,
        "prompt": {"text": "", "tokens": tokens(call.input_tokens)},
        "completions": [{**completion, "finishReason": {"reason": "endoftext"}}],
    }


_Body = Callable[[Invocation], Dict[str, Any]]
_Chunks = Callable[[Invocation], List[Dict[str, Any]]]
#: family -> (its InvokeModel body, its stream's chunks or None)
_FORMATS: Dict[str, Tuple[_Body, Optional[_Chunks]]] = {
    "anthropic": (_anthropic, _anthropic_chunks),
    "claude_text": (_claude_text, _claude_text_chunks),
    "nova": (_nova, _nova_chunks),
    "titan": (_titan, _titan_chunks),
    "titan_embed": (_titan_embed, None),
    "llama": (_llama, _llama_chunks),
    "mistral": (_mistral, _mistral_chunks),
    "mistral_chat": (_mistral_chat, _mistral_chat_chunks),
    "cohere_r": (_cohere_r, _cohere_r_chunks),
    "cohere": (_cohere, _cohere_chunks),
    "jamba": (_jamba, _jamba_chunks),
    "jurassic": (_jurassic, None),
}

#: The families :func:`invoke_answer` answers.
FAMILIES = tuple(_FORMATS)


# ---------------------------------------------------------------------- answers


@dataclass
class InvokeAnswer:
    """An InvokeModel answer: its status and headers, and either a whole ``body`` or the
    event-stream ``frames`` (one message each) of a streamed one."""

    status: int
    headers: Dict[str, str]
    body: bytes = b""
    frames: Optional[List[bytes]] = None


def _error(status: int, message: str) -> InvokeAnswer:
    payload, headers = error_body(status, message, "")
    data = json.dumps(payload).encode("utf-8")
    return InvokeAnswer(status, {"content-type": "application/json", **headers}, data)


def invoke_answer(
    path: str,
    request: Any,
    replies: Replies,
    error_after: Optional[int] = None,
    token_headers: Optional[bool] = None,
) -> InvokeAnswer:
    """The answer to an InvokeModel request (``/model/<model>/invoke`` or
    ``/invoke-with-response-stream``) whose decoded JSON body is ``request``.

    ``token_headers`` false (by default ``replies.report_usage``) leaves the token-count
    headers out, as a gateway that drops them would. ``error_after``: a stream that fails
    with a ``modelStreamErrorException`` after that many chunks. A model of no known family,
    or a family that does not stream asked for a stream, is a 400 ``ValidationException``."""
    if token_headers is None:
        token_headers = replies.report_usage
    route = unquote(path.split("?", 1)[0])
    streamed = route.endswith("/invoke-with-response-stream")
    model = route.split("/model/", 1)[-1].rsplit("/", 1)[0]
    family = family_of(model)
    if family is None or not isinstance(request, dict):
        return _error(400, f"The provided model identifier is invalid: {model}")
    body_of, chunks_of = _FORMATS[family]
    if streamed and chunks_of is None:
        return _error(400, "The model is unsupported for streaming")
    prompt = prompt_of(request)
    embeds = family == "titan_embed"
    pieces = [] if embeds else replies.reply_text(prompt)
    ident = f"{zlib.crc32(json.dumps(request, sort_keys=True).encode()):x}"
    call = Invocation(
        model,
        family,
        pieces,
        count_text(prompt, None).tokens,
        count_text("".join(pieces), None).tokens,
        ident,
    )
    headers = {"x-amzn-requestid": f"local-{ident}"}
    if not streamed:
        if token_headers:
            headers["x-amzn-bedrock-input-token-count"] = str(call.input_tokens)
            if not embeds:
                headers["x-amzn-bedrock-output-token-count"] = str(call.output_tokens)
            if family in _CACHING:
                headers["x-amzn-bedrock-cache-read-input-token-count"] = "0"
        headers["x-amzn-bedrock-invocation-latency"] = "120"
        data = json.dumps(body_of(call)).encode("utf-8")
        return InvokeAnswer(200, {"content-type": "application/json", **headers}, data)
    assert chunks_of is not None
    chunks = chunks_of(call)
    chunks[-1] = {**chunks[-1], "amazon-bedrock-invocationMetrics": call.metrics()}
    frames = [chunk_frame(chunk) for chunk in chunks]
    if error_after is not None:
        failure = exception_frame("modelStreamErrorException", "The model failed midway")
        frames = frames[:error_after] + [failure]
    headers["content-type"] = "application/vnd.amazon.eventstream"
    headers["x-amzn-bedrock-content-type"] = "application/json"
    return InvokeAnswer(200, headers, frames=frames)


def send_invoke(writer: Writer, answer: InvokeAnswer, chunked: bool = False) -> None:
    """Write ``answer``: a whole body with its length (``chunked``: as a chunked body of
    unknown length, as a gateway may send it), or the frames of a stream as a chunked body,
    one frame a chunk (the client reads each as it comes)."""
    writer.send_response(answer.status)
    for name, value in answer.headers.items():
        writer.send_header(name, value)
    if answer.frames is None and not chunked:
        writer.send_header("content-length", str(len(answer.body)))
        writer.end_headers()
        writer.wfile.write(answer.body)
        return
    writer.send_header("transfer-encoding", "chunked")
    writer.end_headers()
    try:
        for frame in answer.frames if answer.frames is not None else [answer.body]:
            writer.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            writer.wfile.flush()
        writer.write_last_chunk()
    except (BrokenPipeError, ConnectionResetError):
        writer.close_connection = True  # the client went away: fine


def invoke_interaction(
    model: str,
    request: Dict[str, Any],
    replies: Replies,
    streamed: bool = False,
    error_after: Optional[int] = None,
    token_headers: Optional[bool] = None,
) -> Dict[str, Any]:
    """The answer to an InvokeModel request (see :func:`invoke_answer`) as a recorded
    interaction (a vcrpy cassette's item) that ``LocalLLMServer.replay`` serves; a streamed
    one's frames make its binary body."""
    path = f"/model/{quote(model, safe='')}/" + (
        "invoke-with-response-stream" if streamed else "invoke"
    )
    answer = invoke_answer(path, request, replies, error_after, token_headers)
    body = answer.body if answer.frames is None else b"".join(answer.frames)
    return {
        "request": {
            "method": "POST",
            "uri": f"https://bedrock-runtime.us-east-1.amazonaws.com{path}",
            "body": {"string": json.dumps(request)},
            "headers": {"content-type": ["application/json"]},
        },
        "response": {
            "status": {"code": answer.status, "message": "OK"},
            "headers": {name: [value] for name, value in answer.headers.items()},
            "body": {"string": body},
        },
    }
