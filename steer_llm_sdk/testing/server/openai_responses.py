"""OpenAI's Responses protocol (``.../responses``, Azure OpenAI's too): a ``response`` body
with one output item (a message or a function call) or its named stream events; an answer
cut by ``max_output_tokens`` is ``incomplete``, and so is one a ``completion``
content-filter fault cuts after half its text (``content_filter``, with the usage billed up
to there)."""

import json
import time
import zlib
from typing import Any, Dict, List, Optional

from . import content
from .azure import answering_model
from .faults import Fault
from .wire import Answer, Streamed, Whole, event


def as_chat(body: Any) -> Any:
    """The request with its ``input`` also as chat ``messages``, which the reply text, the
    token counts and the fault echoes read."""
    if isinstance(body, dict) and "input" in body:
        return {**body, "messages": _input_messages(body["input"])}
    return body


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


def answer(body: Dict[str, Any], fault: Fault, replies: content.Replies, path: str) -> Answer:
    """A message or a function call, whole or as named events."""
    call = content.tool_call(body, replies, "call_")
    limit = body.get("max_output_tokens")
    cut: Optional[str] = None
    if isinstance(limit, int) and call is None and limit < replies.reply_words:
        cut = "max_output_tokens"
    pieces = content.pieces({**body, "max_tokens": limit}, replies) if call is None else call[2]
    if fault.content_filter == "completion" and call is None:
        cut, pieces = "content_filter", pieces[: len(pieces) // 2]
    ident = f"{zlib.crc32(json.dumps(body).encode()):x}"
    response = _response(body, pieces, cut, ident, answering_model(path, body, replies.azure_model))
    item = _item(call, pieces, ident)
    if not body.get("stream"):
        return Whole({**response, "output": [item]}, tokens=len(pieces))
    frames = [event(e["type"], e) for e in _events(response, item, pieces)]
    return Streamed(frames, first_content=2)


def _item(call: content.ToolCallPlan, pieces: List[str], ident: str) -> Dict[str, Any]:
    """The one output item: the function call, else the message."""
    if call is None:
        return {
            "type": "message",
            "id": f"msg_local{ident}",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "".join(pieces), "annotations": []}],
        }
    return {
        "type": "function_call",
        "id": f"fc_local{ident}",
        "call_id": call[1],
        "name": call[0],
        "arguments": "".join(pieces),
        "status": "completed",
    }


def _response(
    body: Dict[str, Any], pieces: List[str], cut: Optional[str], ident: str, model: str
) -> Dict[str, Any]:
    """The ``response`` object, but its output; ``cut``: why it is incomplete, or None."""
    prompt = content.prompt_tokens(body)
    completion = content.completion_tokens(body, pieces)
    return {
        "id": f"resp_local{ident}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "incomplete" if cut else "completed",
        "incomplete_details": {"reason": cut} if cut else None,
        "error": None,
        "model": model,
        "instructions": body.get("instructions"),
        "metadata": {},
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "top_p": 1.0,
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        },
    }


def _events(
    response: Dict[str, Any], item: Dict[str, Any], pieces: List[str]
) -> List[Dict[str, Any]]:
    """The named events of a streamed answer with one output item, numbered."""
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    events: List[Dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
    ]
    if item["type"] == "message":
        events += _message_events(item, pieces)
    else:
        events += _call_events(item, pieces)
    events.append({"type": "response.output_item.done", "output_index": 0, "item": item})
    final = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
    events.append({"type": final, "response": {**response, "output": [item]}})
    for number, numbered in enumerate(events):
        numbered["sequence_number"] = number
    return events


def _message_events(item: Dict[str, Any], pieces: List[str]) -> List[Dict[str, Any]]:
    """A message item added, its text part streamed, both done."""
    empty = {**item, "status": "in_progress", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    at = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    text = item["content"][0]["text"]
    return [
        {"type": "response.output_item.added", "output_index": 0, "item": empty},
        {"type": "response.content_part.added", **at, "part": part},
        *(
            {"type": "response.output_text.delta", **at, "delta": piece, "logprobs": []}
            for piece in pieces
        ),
        {"type": "response.output_text.done", **at, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **at, "part": {**part, "text": text}},
    ]


def _call_events(item: Dict[str, Any], pieces: List[str]) -> List[Dict[str, Any]]:
    """A function-call item added, its arguments streamed and done."""
    empty = {**item, "status": "in_progress", "arguments": ""}
    at = {"item_id": item["id"], "output_index": 0}
    return [
        {"type": "response.output_item.added", "output_index": 0, "item": empty},
        *({"type": "response.function_call_arguments.delta", **at, "delta": p} for p in pieces),
        {"type": "response.function_call_arguments.done", **at, "arguments": item["arguments"]},
    ]
