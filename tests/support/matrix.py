"""What the pattern matrix (test_matrix.py) knows about each API shape: the recorded exchange
it replays, the SDK call, the SDK's stream helper, and the content text of each item a
stream delivers (an oracle of our own, checked against the corpus' on the whole stream).
"""

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import yaml

from support.corpus import _RESPONSES_CONTENT, Exchange, cassettes, exchanges

#: The API shapes of the matrix: shape -> (corpus shape, streamed).
SHAPES: Dict[str, Any] = {
    "chat": ("chat", True),
    "responses": ("responses", True),
    "completions": ("completions", True),
    "messages": ("messages", True),
    "gemini": ("gemini", True),
    "converse": ("converse", True),
    "chat_blocking": ("chat", False),
}

#: The provider family a user names in ``track_request`` for each shape.
FAMILY = {
    "chat": "openai",
    "chat_blocking": "openai",
    "responses": "openai",
    "completions": "openai",
    "messages": "anthropic",
    "gemini": "gemini",
    "converse": "bedrock",
}

#: Text a cassette holds when it may have an exchange of the shape: a cheap test before its
#: YAML is parsed (parsing the whole corpus takes seconds).
_MARKERS = {
    "chat": "/chat/completions",
    "responses": "/responses",
    "completions": "/completions",
    "messages": "/v1/messages",
    "gemini": "GenerateContent",
    "converse": "/converse",
}

USER = [{"role": "user", "content": "hi"}]


def _usable(exchange: Exchange, streamed: bool) -> bool:
    """Streamed as wanted, not failing, with usage and (for streams) content."""
    if exchange.streamed != streamed or exchange.fails:
        return False
    usage, chars = exchange.expected()
    if not usage:
        return False
    if not streamed:
        return True
    # Bedrock's binary event stream has no character oracle: usage is enough.
    return chars is None if exchange.shape == "converse" else bool(chars)


def pick_exchanges() -> Dict[str, Exchange]:
    """The first usable exchange of each matrix shape in the corpus (see :func:`_usable`)."""
    wanted = dict(SHAPES)
    found: Dict[str, Exchange] = {}
    for cassette in cassettes():
        missing = {name: spec for name, spec in wanted.items() if name not in found}
        if not missing:
            break
        text = cassette.read_text(encoding="utf-8")
        if not any(_MARKERS[shape] in text for shape, _ in missing.values()):
            continue
        for exchange in exchanges(cassette):
            for name, (shape, streamed) in missing.items():
                if name not in found and exchange.shape == shape and _usable(exchange, streamed):
                    found[name] = exchange
    return found


def synthetic_completions(folder: Path) -> Exchange:
    """A streamed legacy completions exchange in OpenAI's wire format (the corpus has none),
    as a one-interaction cassette in ``folder``, read back through the corpus' oracle."""
    base = {
        "id": "cmpl-matrix",
        "object": "text_completion",
        "created": 1700000000,
        "model": "gpt-3.5-turbo-instruct",
    }

    def chunk(text: str, finish: Optional[str] = None) -> Dict[str, Any]:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice]}

    events = [chunk(t) for t in ("Hello", " there", ",", " friend")] + [chunk("", "stop")]
    usage = {"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5}
    events.append({**base, "choices": [], "usage": usage})
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    request = {"model": base["model"], "prompt": "hi", "stream": True}
    interaction = {
        "request": {
            "method": "POST",
            "uri": "https://api.openai.com/v1/completions",
            "body": {"string": json.dumps(request)},
            "headers": {},
        },
        "response": {
            "status": {"code": 200, "message": "OK"},
            "headers": {"content-type": ["text/event-stream; charset=utf-8"]},
            "body": {"string": body},
        },
    }
    path = folder / "completions-source.yaml"
    path.write_text(yaml.safe_dump({"interactions": [interaction]}), encoding="utf-8")
    return Exchange(path, 0, interaction, "completions")


def one_interaction(exchange: Exchange, folder: Path, name: str) -> str:
    """The exchange alone in a cassette of its own (replaying the whole recorded cassette
    would parse all of it for each request)."""
    data = yaml.safe_load(exchange.cassette.read_text(encoding="utf-8"))
    path = folder / f"{name}.yaml"
    interaction = data["interactions"][exchange.index]
    path.write_text(yaml.safe_dump({"interactions": [interaction]}), encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------------- the calls


def sdk_call(shape: str, clients: Dict[str, Any], model: str) -> Callable[[], Any]:
    """A thunk making the SDK's call for ``shape``: a stream (Bedrock: the event stream
    under ``result["stream"]``) or, for a blocking shape, the response."""
    openai, anthropic = clients["openai"], clients["anthropic"]
    usage = {"include_usage": True}
    if shape == "chat":
        return lambda: openai.chat.completions.create(
            model=model, messages=USER, stream=True, stream_options=usage
        )
    if shape == "chat_blocking":
        return lambda: openai.chat.completions.create(model=model, messages=USER)
    if shape == "completions":
        return lambda: openai.completions.create(
            model=model, prompt="hi", stream=True, stream_options=usage
        )
    if shape == "responses":
        return lambda: openai.responses.create(model=model, input="hi", stream=True)
    if shape == "messages":
        return lambda: anthropic.messages.create(
            model=model, max_tokens=16, messages=USER, stream=True
        )
    if shape == "gemini":
        models = clients["gemini"].models
        return lambda: models.generate_content_stream(model=model, contents="hi")
    bedrock = clients["bedrock"]
    messages = [{"role": "user", "content": [{"text": "hi"}]}]
    return lambda: bedrock.converse_stream(modelId=model, messages=messages)["stream"]


#: The shapes with an SDK stream helper, and the helper's "whole answer" method.
HELPER_FINAL = {
    "chat": "get_final_completion",
    "responses": "get_final_response",
    "messages": "get_final_message",
}


def helper_call(shape: str, clients: Dict[str, Any], model: str) -> Callable[[], Any]:
    """A thunk opening the SDK's stream helper for ``shape`` (its context manager)."""
    if shape == "chat":
        return lambda: clients["openai"].chat.completions.stream(
            model=model, messages=USER, stream_options={"include_usage": True}
        )
    if shape == "responses":
        return lambda: clients["openai"].responses.stream(model=model, input="hi")
    return lambda: clients["anthropic"].messages.stream(model=model, max_tokens=16, messages=USER)


#: The shapes SteerLLMClient speaks, and the ``openai_api`` its client needs for each.
CLIENT_API = {
    "chat": "chat_completions",
    "chat_blocking": "chat_completions",
    "messages": "chat_completions",
    "responses": "responses",
}


def client_call(shape: str, steer: Dict[str, Any], model: str) -> Callable[[], Any]:
    """A thunk calling SteerLLMClient: ``generate`` for a blocking shape, else ``stream``."""
    client = steer[CLIENT_API[shape]]
    if shape == "chat_blocking":
        return lambda: client.generate("hi", model=model, provider=FAMILY[shape])
    return lambda: client.stream("hi", model=model, provider=FAMILY[shape])


# ---------------------------------------------------------------------- content text


def _delta_text(delta: Dict[str, Any]) -> str:
    """A chat delta's content as corpus._content_chars counts it, as text."""
    content = delta.get("content")
    if isinstance(content, str) and content:
        return content
    args = [(call.get("function") or {}).get("arguments") for call in delta.get("tool_calls") or ()]
    joined = "".join(a for a in args if isinstance(a, str))
    if joined:
        return joined
    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        return reasoning
    refusal = delta.get("refusal")
    return refusal if isinstance(refusal, str) else ""


def _chat_text(chunk: Any) -> str:
    return "".join(
        _delta_text(choice.delta.model_dump() if choice.delta is not None else {})
        for choice in chunk.choices or ()
    )


def _completions_text(chunk: Any) -> str:
    return "".join(choice.text or "" for choice in chunk.choices or ())


def _responses_text(event: Any) -> str:
    delta = getattr(event, "delta", None)
    return (
        delta if getattr(event, "type", "") in _RESPONSES_CONTENT and isinstance(delta, str) else ""
    )


def _messages_text(event: Any) -> str:
    if getattr(event, "type", "") != "content_block_delta":
        return ""
    for key in ("text", "partial_json", "thinking"):
        value = getattr(event.delta, key, None)
        if isinstance(value, str):
            return value
    return ""


def _gemini_text(chunk: Any) -> str:
    candidates = chunk.candidates or []
    content = candidates[0].content if candidates else None
    out: List[str] = []
    for part in (content.parts if content is not None else None) or ():
        if isinstance(part.text, str):
            out.append(part.text)
        elif part.function_call is not None and part.function_call.args is not None:
            out.append(json.dumps(part.function_call.args, separators=(",", ":")))
    return "".join(out)


def _converse_text(event: Any) -> str:
    delta = (event.get("contentBlockDelta") or {}).get("delta") or {}
    for value in (
        delta.get("text"),
        (delta.get("toolUse") or {}).get("input"),
        (delta.get("reasoningContent") or {}).get("text"),
    ):
        if isinstance(value, str):
            return value
    return ""


_TEXT: Dict[str, Callable[[Any], str]] = {
    "chat": _chat_text,
    "completions": _completions_text,
    "responses": _responses_text,
    "messages": _messages_text,
    "gemini": _gemini_text,
    "converse": _converse_text,
}

#: A stream helper's events that carry content, and the attribute holding it.
_HELPER_TEXT = {
    "content.delta": "delta",
    "refusal.delta": "delta",
    "tool_calls.function.arguments.delta": "arguments_delta",
    "text": "text",
    "input_json": "partial_json",
    "thinking": "thinking",
    **dict.fromkeys(_RESPONSES_CONTENT, "delta"),
}


def item_text(shape: str, item: Any) -> str:
    """The content text of one item an SDK stream of ``shape`` delivered (a str is its own
    text)."""
    if isinstance(item, str):
        return item
    return _TEXT[shape](item)


def helper_text(event: Any) -> str:
    """The content text of one event an SDK stream helper delivered."""
    value = getattr(event, _HELPER_TEXT.get(getattr(event, "type", ""), ""), None)
    return value if isinstance(value, str) else ""


#: Events anthropic's helper derives from a chunk, after the chunk's own event.
_ANTHROPIC_DERIVED = {"text", "citation", "thinking", "signature", "input_json"}


def helper_chunk(event: Any) -> Any:
    """The SDK chunk a stream helper's event is the own event of (each chunk has one, before
    the events derived from it), or None for a derived event."""
    kind = getattr(event, "type", "")
    if kind == "chunk":  # openai's chat helper: the chunk's own event carries it
        return event.chunk
    if kind.startswith(("content.", "refusal.", "tool_calls.", "logprobs.")):
        return None  # derived by openai's chat helper
    if kind in _ANTHROPIC_DERIVED:
        return None
    return event  # anthropic's raw events and the Responses API's events are the chunks
