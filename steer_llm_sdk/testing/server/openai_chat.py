"""OpenAI's chat-completions protocol (``.../chat/completions``, Azure OpenAI's too): a
``chat.completion`` body or a stream of ``chat.completion.chunk`` events, with ``n``
choices, tool calls and usage."""

import json
import time
import zlib
from typing import Any, Dict, List, Optional, Tuple

from . import content
from .azure import FILTER_RESULTS, answering_model
from .faults import Fault
from .wire import Answer, Streamed, Whole

#: What one choice says: (text pieces, tool-call argument pieces).
_Said = Tuple[List[str], List[str]]


def error_body(status: int, message: str, kind: str) -> Tuple[Dict[str, Any], Dict[str, str]]:
    return {"error": {"message": message, "type": kind, "code": None}}, {}


def answer(body: Dict[str, Any], fault: Fault, replies: content.Replies, path: str) -> Answer:
    """The answer to ``body``: a tool call when it gets one, else text in every choice; a
    ``completion`` content-filter fault withholds it."""
    call = content.tool_call(body, replies, "call_")
    answers = _choices_said(body, call, replies)
    usage = _usage(body, answers)
    finish = "tool_calls" if call is not None else "stop"
    if fault.content_filter == "completion":
        finish = "content_filter"
    base = {
        "id": f"chatcmpl-local{zlib.crc32(json.dumps(body).encode()):x}",
        "created": int(time.time()),
        "model": answering_model(path, body, replies.azure_model),
    }
    if not body.get("stream"):
        choices = [
            _choice(index, texts, args, call, finish) for index, (texts, args) in enumerate(answers)
        ]
        payload = {**base, "object": "chat.completion", "choices": choices, "usage": usage}
        return Whole(payload, tokens=len(answers[0][0]))
    base = {**base, "object": "chat.completion.chunk", "system_fingerprint": None}
    events = _events(base, answers, call, finish)
    include = (body.get("stream_options") or {}).get("include_usage")
    if include and replies.report_usage:
        events.append({**base, "choices": [], "usage": usage})
    frames = [f"data: {json.dumps(e)}\n\n" for e in events] + ["data: [DONE]\n\n"]
    return Streamed(frames, first_content=len(answers))


def _choices_said(
    body: Dict[str, Any], call: content.ToolCallPlan, replies: content.Replies
) -> List[_Said]:
    """What each of the ``n`` choices says: the tool call, or text of its own."""
    n = body.get("n")
    count = n if isinstance(n, int) and n > 1 else 1
    answers: List[_Said] = []
    for index in range(count):
        if call is not None:
            answers.append(([], list(call[2])))
        else:
            extra = {"role": "user", "content": f"#{index}"}
            tagged = body if index == 0 else {**body, "messages": [*body["messages"], extra]}
            answers.append((content.pieces(tagged, replies), []))
    return answers


def _usage(body: Dict[str, Any], answers: List[_Said]) -> Dict[str, Any]:
    prompt = content.prompt_tokens(body)
    completion = sum(content.completion_tokens(body, texts + args) for texts, args in answers)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def _choice(
    index: int, texts: List[str], args: List[str], call: content.ToolCallPlan, finish: str
) -> Dict[str, Any]:
    """One choice of a chat.completion body."""
    message: Dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if args and call is not None:
        function = {"name": call[0], "arguments": "".join(args)}
        message["tool_calls"] = [{"id": call[1], "type": "function", "function": function}]
    entry: Dict[str, Any] = {"index": index, "message": message, "finish_reason": finish}
    if finish == "content_filter":
        entry["message"] = {"role": "assistant", "content": None}
        entry["content_filter_results"] = FILTER_RESULTS
    return entry


def _events(
    base: Dict[str, Any], answers: List[_Said], call: content.ToolCallPlan, finish: str
) -> List[Dict[str, Any]]:
    """The chunks of a chat-completion stream: the choices interleaved piece by piece, as
    OpenAI sends them; a tool call's id and name come with its first fragment."""

    def chunk(index: int, delta: Dict[str, Any], reason: Optional[str] = None) -> Dict[str, Any]:
        choice: Dict[str, Any] = {"index": index, "delta": delta, "finish_reason": reason}
        if reason == "content_filter":
            choice["content_filter_results"] = FILTER_RESULTS
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
