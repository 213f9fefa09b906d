"""Reading the client's streamed chunks once: the answer put together, and what the stream
reports about itself, from one read of each chunk.

The readers of :mod:`.readers` measure a stream (content, usage) and stay as cheap as a
stream allows; the client also needs the answer itself, put together: every choice kept
apart by its ``index``, and tool calls assembled from their fragments (OpenAI sends an id
and name first, then pieces of the arguments' JSON; Anthropic a ``tool_use`` block, then
``input_json_delta`` pieces). An :class:`Assembler` reads each decoded chunk once for both:
:meth:`Assembler.read` has a reader's signature, so its caller hands the stream's
:class:`~.readers.StreamReader` in and gets the chunk's content back, exactly as
``StreamReader.observe`` would have given it (a test holds the two to the same answers);
the events that carry only measures (Anthropic's ``message_start``, the Responses API's
``response.created``, reasoning deltas, ...) go to the readers' own handlers.

An answer the provider ended early (a content filter, Anthropic's refusal, a failed or
filtered response) is still billed: its usage comes after the chunk that says so (OpenAI's
in a later chunk, Anthropic's and the Responses API's later in the same event). So the
error such a chunk carries is held while the rest of the stream is read, and raised by
:meth:`Assembler.finish` at the stream's end, with the usage read.

Decoded JSON dicts of the OpenAI chat-completions and Anthropic messages streams and of the
OpenAI Responses API's; any other value is left to the readers. Pure: no I/O, no imports
from the package beyond ``errors``, ``types``, :mod:`.usage` and :mod:`.readers`.
"""

from typing import Any, Callable, Dict, List, Optional

from ..errors import ContentFilterError
from ..types import Choice, ToolCall
from .readers import Content, Reader, StreamReader
from .readers.anthropic import EVENTS as ANTHROPIC_EVENTS
from .readers.openai_chat import read_groq_usage
from .readers.openai_responses import EVENTS as RESPONSES_EVENTS
from .usage import field, usage_from_usage_object

#: Raises the provider's error for a chunk the shape marks as carrying one; see
#: :class:`Assembler`.
Check = Callable[[Any], None]


def responses_finish_reason(response: Any, has_calls: bool) -> Optional[str]:
    """The chat-completions finish reason of an OpenAI Responses API response (object or
    dict): ``length`` when cut at ``max_output_tokens``, another incomplete reason as given,
    ``tool_calls`` when it calls tools, ``stop`` when completed."""
    status = field(response, "status")
    if status == "incomplete":
        reason = field(field(response, "incomplete_details"), "reason")
        return "length" if reason == "max_output_tokens" else reason
    return _finish_of(status, has_calls)


def _finish_of(status: Any, has_calls: bool) -> Optional[str]:
    """:func:`responses_finish_reason` for a status other than ``incomplete``."""
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


#: A handler of one event type: ``(assembler, reader, event) -> content``.
_Handler = Callable[["Assembler", StreamReader, Dict[str, Any]], str]


class Assembler:
    """Puts a streamed answer together while reading each chunk for its stream's measures.
    Not thread-safe: one per stream.

    Args:
        shape: the wire protocol's ``STREAM_SHAPE``: ``anthropic`` (message events),
            ``responses`` (OpenAI Responses API events), else chat-completion chunks.
        check: called with a chunk that the shape marks as carrying an error (an
            ``error`` event, a failed or incomplete response, a choice the content filter
            finished, an Anthropic ``message_delta`` whose stop reason is ``refusal``);
            raises the provider's error, or returns when the chunk carries none (a response
            cut at its token limit). An ``error`` event's error is raised at once, before
            the event is read; that of a chunk that ends the answer early is held, the
            chunk read, and raised by :meth:`finish`.

    Attributes:
        read: ``read(reader, chunk)``, a :data:`~.readers.Reader`: notes what the chunk
            reports on ``reader``, adds its content to the answer and returns the content
            (the text of the first choice as ``str``, other output as
            :class:`~.readers.Content`, ``""`` for none); a chunk that is not a dict goes
            to ``reader.observe``. May raise on a chunk of an unexpected shape (its caller
            counts it in ``reader.errors``), and raises what ``check`` raises.
        ended: whether the shape's last event was read (Anthropic's ``message_stop``, the
            Responses API's ``response.completed``/``incomplete``/``failed``); a
            chat-completions stream ends with a marker that is not a chunk.
        held: the error ``check`` raised for a chunk that ended the answer early, until
            :meth:`finish` raises it; None when there is none.
    """

    def __init__(self, shape: str, check: Optional[Check] = None) -> None:
        self._check = check
        events = _EVENTS.get(shape)
        self.read: Reader = self._chat if events is None else self._events
        self._handlers: Dict[str, _Handler] = events or {}
        self.reset()

    def reset(self) -> None:
        """Forget everything (a stream asked for again from its start)."""
        self._answers: Dict[int, _Answer] = {}
        self.ended = False
        self.held: Optional[Exception] = None

    def finish(self, reader: StreamReader) -> None:
        """The stream has ended (its end marker, its last event, or the connection): raise
        the error held for an answer the provider ended early, if any. A
        :class:`~steer_llm_sdk.errors.ContentFilterError` gets the first choice's text so
        far (``text``) and the usage ``reader`` has read (``usage``: billed though
        refused).

        Raises:
            Exception: the held error (once; :attr:`held` is cleared).
        """
        error = self.held
        if error is None:
            return
        self.held = None
        if isinstance(error, ContentFilterError):
            answer = self._answers.get(0)
            error.text = "" if answer is None else "".join(answer.text)
            error.usage = reader.token_usage()
        raise error

    def _hold(self, chunk: Any) -> None:
        """``check`` a chunk that ends the answer early; keep the error it raises (the
        first) for :meth:`finish`."""
        if self._check is None or self.held is not None:
            return
        try:
            self._check(chunk)
        except Exception as error:
            self.held = error

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

    # ------------------------------------------------------------------ shared steps
    def _answer(self, index: int) -> _Answer:
        answer = self._answers.get(index)
        if answer is None:
            answer = self._answers[index] = _Answer()
        return answer

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

    # ------------------------------------------------------------------ chat completions
    def _chat(self, reader: StreamReader, chunk: Any) -> str:
        """A chat-completion chunk: usage, model, and each choice (the reader's rules: the
        first choice with content gives the content, the others' characters are counted
        in ``reader.extra_chars``)."""
        if type(chunk) is not dict:  # no chunk of the shape: whatever the readers make of it
            return reader.observe(chunk)
        usage = chunk.get("usage")
        if usage is not None:
            reader.apply(usage_from_usage_object(usage))
        if reader.model is None:
            model = chunk.get("model")
            if type(model) is str and model:
                reader.model = model
        choices = chunk.get("choices")
        if not choices:
            if usage is None:
                read_groq_usage(reader, chunk)
            return ""
        if len(choices) == 1:
            first = self._choice(reader, chunk, choices[0])
        else:
            first, extra = "", 0
            for choice in choices:
                content = self._choice(reader, chunk, choice)
                if content:
                    if not first:
                        first = content
                    else:
                        extra += len(content)
            reader.extra_chars += extra
        # Groq's usage comes with the finish reason: looked for from there on only.
        if reader.finish_reason is not None and usage is None:
            read_groq_usage(reader, chunk)
        return first

    def _choice(self, reader: StreamReader, chunk: Dict[str, Any], choice: Any) -> str:
        if type(choice) is not dict:
            return ""
        index = choice.get("index")
        primary = not index  # the answer's text: the first choice (index 0 or none)
        answer = self._answer(index if isinstance(index, int) else 0)
        reason = choice.get("finish_reason")
        if reason:
            if reason == "content_filter":
                self._hold(chunk)  # the usage follows, in a later chunk
            answer.finish = reason
            if primary:
                reader.finish_reason = reason
        delta = choice.get("delta")
        if delta is None:  # a legacy completion chunk: the text is on the choice
            text = choice.get("text")
            content = text if type(text) is str else ""
            if content:
                answer.text.append(content)
        elif type(delta) is dict:
            content = self._delta(answer, delta)
        else:
            return ""
        if not content or (primary and type(content) is str):
            return content
        return Content(content)

    def _delta(self, answer: _Answer, delta: Dict[str, Any]) -> str:
        text = delta.get("content")
        calls = delta.get("tool_calls")
        if type(text) is str and text:
            answer.text.append(text)
            if calls and type(calls) is list:  # text and tool calls in one delta (rare)
                self._fragments(answer, calls)
            return text
        if calls:
            arguments = self._fragments(answer, calls)
            return Content(arguments) if arguments else ""
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if type(reasoning) is str and reasoning:
            return Content(reasoning)
        refusal = delta.get("refusal")
        return refusal if type(refusal) is str else ""

    @staticmethod
    def _fragments(answer: _Answer, fragments: Any) -> str:
        """Tool-call fragments added to their calls; returns their argument pieces joined."""
        pieces = []
        calls = answer.calls
        for fragment in fragments:
            if type(fragment) is not dict:
                continue
            position = fragment.get("index")
            key = position if isinstance(position, int) else len(calls)
            call = calls.get(key)
            if call is None:
                call = calls[key] = _Call()
            ident = fragment.get("id")
            if ident:
                call.id = str(ident)
            function = fragment.get("function")
            if type(function) is not dict:
                continue
            name = function.get("name")
            if name:
                call.name = str(name)
            arguments = function.get("arguments")
            if type(arguments) is str:
                call.pieces.append(arguments)
                pieces.append(arguments)
        return "".join(pieces)

    # ------------------------------------------------------------------ typed events
    def _events(self, reader: StreamReader, event: Any) -> str:
        """An event told by its ``type`` (Anthropic messages, Responses API)."""
        if type(event) is not dict:  # no event of the shape: whatever the readers make of it
            return reader.observe(event)
        kind = event.get("type")
        handler = self._handlers.get(kind) if type(kind) is str else None
        return "" if handler is None else handler(self, reader, event)

    def _first(self) -> _Answer:
        return self._answer(0)


def _measured(read: Reader) -> _Handler:
    """The handler of an event that carries only measures: the readers' own."""

    def handler(assembler: Assembler, reader: StreamReader, event: Dict[str, Any]) -> str:
        return read(reader, event)

    return handler


def _checked(assembler: Assembler, reader: StreamReader, event: Dict[str, Any]) -> str:
    """The handler of an ``error`` event: ``check`` raises its error at once."""
    if assembler._check is not None:
        assembler._check(event)
    return ""


def _held(then: _Handler) -> _Handler:
    """The handler of an event that may end the answer early: read by ``then`` (its usage
    included), and the error ``check`` raises for it held for :meth:`Assembler.finish`."""

    def handler(assembler: Assembler, reader: StreamReader, event: Dict[str, Any]) -> str:
        content = then(assembler, reader, event)
        assembler._hold(event)
        return content

    return handler


def _end(then: _Handler) -> _Handler:
    """``then``, for the shape's last event."""

    def handler(assembler: Assembler, reader: StreamReader, event: Dict[str, Any]) -> str:
        assembler.ended = True
        return then(assembler, reader, event)

    return handler


def _nothing(assembler: Assembler, reader: StreamReader, event: Dict[str, Any]) -> str:
    return ""


# ---------------------------------------------------------------------- Anthropic
def _anthropic_delta(assembler: Assembler, reader: StreamReader, event: Dict[str, Any]) -> str:
    delta = event.get("delta")
    if type(delta) is not dict:
        return ""
    kind = delta.get("type")
    if kind == "text_delta":
        text = delta.get("text")
        if type(text) is not str:
            return ""
        assembler._first().text.append(text)
        return text
    if kind == "input_json_delta":
        piece = delta.get("partial_json")
        assembler._append(assembler._first(), event.get("index"), piece)
        return Content(piece or "")
    if kind == "thinking_delta":
        return Content(delta.get("thinking") or "")
    return ""


def _anthropic_block(assembler: Assembler, reader: StreamReader, event: Dict[str, Any]) -> str:
    block = event.get("content_block")
    # Only tools the application runs: server tools (web search, ...) are run by Anthropic
    # and answered in the same response.
    if type(block) is dict and block.get("type") == "tool_use":
        call = assembler._open_call(
            assembler._first(), event.get("index"), block.get("id"), block.get("name")
        )
        given = block.get("input")
        if given:  # complete input given up front (rare)
            call.pieces.append(ToolCall.from_raw("", "", given).arguments_raw)
    return ""


def _anthropic_message_delta(
    assembler: Assembler, reader: StreamReader, event: Dict[str, Any]
) -> str:
    # The reader takes the stop reason (and the running usage); the answer takes it from
    # there rather than reading it a second time.
    ANTHROPIC_EVENTS["message_delta"](reader, event)
    if reader.finish_reason:
        assembler._first().finish = reader.finish_reason
        if reader.finish_reason == "refusal":  # the usage was in this event: read above
            assembler._hold(event)
    return ""


_ANTHROPIC: Dict[str, _Handler] = {
    "content_block_delta": _anthropic_delta,
    "content_block_start": _anthropic_block,
    "message_start": _measured(ANTHROPIC_EVENTS["message_start"]),
    "message_delta": _anthropic_message_delta,
    "message_stop": _end(_nothing),
    "error": _checked,
}


# ---------------------------------------------------------------------- Responses API
def _responses_text(assembler: Assembler, reader: StreamReader, event: Dict[str, Any]) -> str:
    delta = event.get("delta")
    if type(delta) is not str:
        return ""
    assembler._first().text.append(delta)
    return delta


def _responses_arguments(assembler: Assembler, reader: StreamReader, event: Dict[str, Any]) -> str:
    delta = event.get("delta")
    assembler._append(assembler._first(), event.get("output_index"), delta)
    return Content(delta) if type(delta) is str else ""


def _responses_item(assembler: Assembler, reader: StreamReader, event: Dict[str, Any]) -> str:
    item = event.get("item")
    if type(item) is dict and item.get("type") == "function_call":
        assembler._open_call(
            assembler._first(), event.get("output_index"), item.get("call_id"), item.get("name")
        )
    return ""


def _responses_arguments_done(
    assembler: Assembler, reader: StreamReader, event: Dict[str, Any]
) -> str:
    pending = assembler._first().calls.get(event.get("output_index", -1))
    arguments = event.get("arguments")
    if pending is not None and isinstance(arguments, str):
        pending.pieces = [arguments]  # the whole, as the server joined it
    return ""


def _responses_done(read: Reader) -> _Handler:
    """The handler of a response's end: the reader's ``read`` takes the model, the status
    (as its finish reason) and the usage; the answer's finish reason follows from that
    status."""

    def handler(assembler: Assembler, reader: StreamReader, event: Dict[str, Any]) -> str:
        read(reader, event)
        answer = assembler._first()
        status = reader.finish_reason
        if status == "incomplete":  # why it was cut short: read only then
            answer.finish = responses_finish_reason(event.get("response"), bool(answer.calls))
        else:
            answer.finish = _finish_of(status, bool(answer.calls))
        return ""

    return handler


_RESPONSES: Dict[str, _Handler] = {
    **{kind: _measured(read) for kind, read in RESPONSES_EVENTS.items()},
    "response.output_text.delta": _responses_text,
    "response.function_call_arguments.delta": _responses_arguments,
    "response.output_item.added": _responses_item,
    "response.function_call_arguments.done": _responses_arguments_done,
    "response.completed": _end(_responses_done(RESPONSES_EVENTS["response.completed"])),
    "response.incomplete": _end(_held(_responses_done(RESPONSES_EVENTS["response.incomplete"]))),
    "response.failed": _end(_held(_responses_done(RESPONSES_EVENTS["response.failed"]))),
    "error": _checked,
}

#: The event handlers of each shape told by its events' ``type``.
_EVENTS: Dict[str, Dict[str, _Handler]] = {"anthropic": _ANTHROPIC, "responses": _RESPONSES}
