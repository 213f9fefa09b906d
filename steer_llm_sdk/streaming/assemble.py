"""Assembling a streamed answer: text and tool calls of each choice, from decoded chunks.

The readers of :mod:`.readers` measure a stream (content, usage) and stay as cheap as a
stream allows; the client also needs the answer itself, put together: every choice kept
apart by its ``index``, and tool calls assembled from their fragments (OpenAI sends an id
and name first, then pieces of the arguments' JSON; Anthropic a ``tool_use`` block, then
``input_json_delta`` pieces). Decoded JSON dicts of the OpenAI chat-completions and Anthropic
messages streams. Pure: no I/O, no imports from the package beyond the leaf ``types``.
"""

from typing import Any, Dict, List, Optional

from ..types import Choice, ToolCall
from .usage import field


def responses_finish_reason(response: Any, has_calls: bool) -> Optional[str]:
    """The chat-completions finish reason of an OpenAI Responses API response (object or
    dict): ``length`` when cut at ``max_output_tokens``, another incomplete reason as given,
    ``tool_calls`` when it calls tools, ``stop`` when completed."""
    status = field(response, "status")
    if status == "incomplete":
        reason = field(field(response, "incomplete_details"), "reason")
        return "length" if reason == "max_output_tokens" else reason
    if has_calls:
        return "tool_calls"
    return "stop" if status == "completed" else status


class _Call:
    __slots__ = ("id", "name", "pieces")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.pieces: List[str] = []


class _Answer:
    __slots__ = ("text", "calls", "finish")

    def __init__(self) -> None:
        self.text: List[str] = []
        self.calls: Dict[int, _Call] = {}  # by tool-call (or content block) index
        self.finish: Optional[str] = None


class Assembler:
    """Puts a streamed answer together. Not thread-safe: one per stream.

    Args:
        protocol: the wire protocol's ``STREAM_SHAPE``: ``anthropic`` (message events),
            ``responses`` (OpenAI Responses API events), else chat-completion chunks.
    """

    def __init__(self, protocol: str) -> None:
        feeds = {"anthropic": self._anthropic, "responses": self._responses}
        self.feed = feeds.get(protocol, self._openai)
        self._answers: Dict[int, _Answer] = {}

    def reset(self) -> None:
        """Forget everything (a stream asked for again from its start)."""
        self._answers = {}

    @staticmethod
    def _open_call(answer: _Answer, key: Any, ident: Any, name: Any) -> _Call:
        """A new tool call of ``answer`` at ``key`` (its block or output index)."""
        call = answer.calls[key if isinstance(key, int) else len(answer.calls)] = _Call()
        call.id, call.name = str(ident or ""), str(name or "")
        return call

    @staticmethod
    def _append(answer: _Answer, key: Any, piece: Any) -> None:
        """A fragment of the arguments of the call at ``key`` (ignored when there is none)."""
        call = answer.calls.get(key)
        if call is not None and isinstance(piece, str):
            call.pieces.append(piece)

    def _answer(self, index: int) -> _Answer:
        answer = self._answers.get(index)
        if answer is None:
            answer = self._answers[index] = _Answer()
        return answer

    def _openai(self, chunk: Any) -> None:
        if not isinstance(chunk, dict):
            return
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            index = choice.get("index")
            answer = self._answer(index if isinstance(index, int) else 0)
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if isinstance(content, str) and content:
                answer.text.append(content)
            for fragment in delta.get("tool_calls") or ():
                if not isinstance(fragment, dict):
                    continue
                position = fragment.get("index")
                key = position if isinstance(position, int) else len(answer.calls)
                call = answer.calls.get(key)
                if call is None:
                    call = answer.calls[key] = _Call()
                if fragment.get("id"):
                    call.id = str(fragment["id"])
                function = fragment.get("function") or {}
                if function.get("name"):
                    call.name = str(function["name"])
                arguments = function.get("arguments")
                if isinstance(arguments, str):
                    call.pieces.append(arguments)
            if choice.get("finish_reason"):
                answer.finish = choice["finish_reason"]

    def _anthropic(self, event: Any) -> None:
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        answer = self._answer(0)
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                text = delta.get("text")
                if isinstance(text, str):
                    answer.text.append(text)
            elif delta.get("type") == "input_json_delta":
                self._append(answer, event.get("index"), delta.get("partial_json"))
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            # Only tools the application runs: server tools (web search, ...) are run by
            # Anthropic and answered in the same response.
            if block.get("type") == "tool_use":
                call = self._open_call(
                    answer, event.get("index"), block.get("id"), block.get("name")
                )
                if block.get("input"):  # complete input given up front (rare)
                    call.pieces.append(ToolCall.from_raw("", "", block["input"]).arguments_raw)
        elif kind == "message_delta":
            reason = (event.get("delta") or {}).get("stop_reason")
            if reason:
                answer.finish = reason

    def _responses(self, event: Any) -> None:
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        answer = self._answer(0)
        if kind == "response.output_text.delta":
            delta = event.get("delta")
            if isinstance(delta, str):
                answer.text.append(delta)
        elif kind == "response.output_item.added":
            item = event.get("item") or {}
            if item.get("type") == "function_call":
                self._open_call(
                    answer, event.get("output_index"), item.get("call_id"), item.get("name")
                )
        elif kind == "response.function_call_arguments.delta":
            self._append(answer, event.get("output_index"), event.get("delta"))
        elif kind == "response.function_call_arguments.done":
            pending = answer.calls.get(event.get("output_index", -1))
            if pending is not None and isinstance(event.get("arguments"), str):
                pending.pieces = [event["arguments"]]  # the whole, as the server joined it
        elif kind in ("response.completed", "response.incomplete"):
            answer.finish = responses_finish_reason(event.get("response"), bool(answer.calls))

    def choices(self) -> List[Choice]:
        """The choices so far, by index (at least one)."""
        if not self._answers:
            return [Choice(0, "")]
        out = []
        for index in sorted(self._answers):
            answer = self._answers[index]
            calls = [
                ToolCall.from_raw(call.id, call.name, "".join(call.pieces))
                for _, call in sorted(answer.calls.items())
            ]
            out.append(Choice(index, "".join(answer.text), calls, answer.finish))
        return out
