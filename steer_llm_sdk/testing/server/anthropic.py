"""Anthropic's messages protocol (``/v1/messages``): a ``message`` body or its named stream
events, with a text or ``tool_use`` block and usage; a ``completion`` content-filter fault
makes it a refusal (``stop_reason: "refusal"`` after half the text, with ``stop_details``
and the usage billed up to there)."""

import json
import zlib
from typing import Any, Dict, List, Tuple

from . import content
from .faults import Fault
from .wire import Answer, Streamed, Whole, event


def error_body(status: int, message: str, kind: str) -> Tuple[Dict[str, Any], Dict[str, str]]:
    return {"type": "error", "error": {"type": kind, "message": message}}, {}


#: What a refusal says of itself (Anthropic's ``stop_details``).
STOP_DETAILS = {
    "type": "refusal",
    "category": "cyber",
    "explanation": "This request was declined because it could enable cyber harm.",
}


def answer(body: Dict[str, Any], fault: Fault, replies: content.Replies, path: str) -> Answer:
    """The answer to ``body``: one block, a tool call when it gets one, else text."""
    call = content.tool_call(body, replies, "toolu_")
    pieces = content.pieces(body, replies) if call is None else call[2]
    refused = fault.content_filter == "completion" and call is None
    if refused:
        pieces = pieces[: len(pieces) // 2]
    usage = {
        "input_tokens": content.prompt_tokens(body),
        "output_tokens": content.completion_tokens(body, pieces),
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }
    message = {
        "id": f"msg_local{zlib.crc32(json.dumps(body).encode()):x}",
        "type": "message",
        "role": "assistant",
        "model": str(body.get("model") or "unknown"),
    }
    stop = "refusal" if refused else "end_turn" if call is None else "tool_use"
    if call is None:
        block: Dict[str, Any] = {"type": "text", "text": ""}
    else:
        block = {"type": "tool_use", "id": call[1], "name": call[0], "input": {}}
    if not body.get("stream"):
        whole = "".join(pieces)
        block = {**block, "text": whole} if call is None else {**block, "input": json.loads(whole)}
        payload: Dict[str, Any] = {
            **message,
            "content": [block],
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        if refused:
            payload["stop_details"] = STOP_DETAILS
        return Whole(payload, tokens=len(pieces))
    return Streamed(_frames(message, block, pieces, stop, usage), first_content=3)


def _frames(
    message: Dict[str, Any],
    block: Dict[str, Any],
    pieces: List[str],
    stop: str,
    usage: Dict[str, Any],
) -> List[str]:
    """The named events of a streamed message with one content block."""
    kind = "text_delta" if block["type"] == "text" else "input_json_delta"
    field = "text" if block["type"] == "text" else "partial_json"
    started = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    frames = [
        event("message_start", {"type": "message_start", "message": started}),
        event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block},
        ),
        event("ping", {"type": "ping"}),
    ]
    frames += [
        event(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": kind, field: p}},
        )
        for p in pieces
    ]
    delta: Dict[str, Any] = {"stop_reason": stop, "stop_sequence": None}
    if stop == "refusal":
        delta["stop_details"] = STOP_DETAILS
    return frames + [
        event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": delta,
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        ),
        event("message_stop", {"type": "message_stop"}),
    ]
