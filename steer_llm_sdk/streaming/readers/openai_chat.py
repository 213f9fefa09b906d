"""OpenAI chat-completion chunks: the openai SDK's ``ChatCompletionChunk`` objects, LiteLLM's
OpenAI-shaped objects, their decoded JSON, legacy completion chunks (``choices[].text``), and
the events of the openai SDK's ``chat.completions.stream()`` helper.

Choices are kept apart by ``index``: the first choice's text is the answer, the content of
any other choice is :class:`Content`. Usage comes in a last chunk with empty ``choices``
(``stream_options.include_usage``), or on a text chunk from some compatible servers; Groq
puts it in ``x_groq.usage`` of its last chunk, where it is the only usage of a stream that
did not ask for ``include_usage``.
"""

from typing import TYPE_CHECKING, Any

from ..usage import usage_from_usage_object
from ._base import Content, _fields_of, _g

if TYPE_CHECKING:
    from .stream_reader import StreamReader


def _read_chat(reader: "StreamReader", chunk: Any) -> str:
    """An OpenAI chat-completion chunk (object or dict), or a legacy completion chunk."""
    usage = _g(chunk, "usage")
    if usage is not None:
        reader.apply(usage_from_usage_object(usage))
    if reader.model is None:
        model = _g(chunk, "model")
        if type(model) is str and model:
            reader.model = model
    choices = _g(chunk, "choices")
    if not choices:
        if usage is None:
            read_groq_usage(reader, chunk)
        return ""
    if len(choices) == 1:
        first = _read_choice(reader, choices[0])
    else:
        first, extra = "", 0
        for choice in choices:
            content = _read_choice(reader, choice)
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


def groq_usage(chunk: Any) -> Any:
    """The usage in Groq's ``x_groq`` of a chunk (a dict, or an SDK model that keeps it
    among its extra fields: no attribute look-up that can miss), or None. Chunks of a class
    that declares ``x_groq`` (the groq SDK's) are read by :func:`_read_groq_object`."""
    if type(chunk) is dict:
        extra = chunk.get("x_groq")
    else:
        fields = getattr(chunk, "__pydantic_extra__", None)
        extra = fields.get("x_groq") if type(fields) is dict else None
    return None if extra is None else _g(extra, "usage")


def read_groq_usage(reader: "StreamReader", chunk: Any) -> None:
    """Take the usage in Groq's ``x_groq`` of a chunk, if any (see :func:`groq_usage`)."""
    usage = groq_usage(chunk)
    if usage is not None:
        reader.apply(usage_from_usage_object(usage))


def _read_groq_object(reader: "StreamReader", chunk: Any) -> str:
    """A chunk of a class that declares ``x_groq`` (the groq SDK's): read as any chat
    chunk, then the usage in ``x_groq`` when ``usage`` has none (Groq sends ``x_groq`` in
    a stream's first and last chunks only)."""
    text = _read_chat_object(reader, chunk)
    extra = chunk.x_groq
    if extra is not None and chunk.usage is None:
        usage = extra.usage
        if usage is not None:
            reader.apply(usage_from_usage_object(usage))
    return text


def _read_choice(reader: "StreamReader", choice: Any) -> str:
    reason = _g(choice, "finish_reason")
    index = _g(choice, "index") or 0
    if reason and index == 0:
        reader.finish_reason = reason
    delta = _g(choice, "delta")
    if delta is None:  # a legacy completion chunk: the text is on the choice
        text = _g(choice, "text")
        content = text if type(text) is str else ""
    else:
        content = _delta_content(delta)
    if not content or (index == 0 and type(content) is str):
        return content
    return Content(content)


def _delta_content(delta: Any) -> str:
    text = _g(delta, "content")
    if type(text) is str and text:
        return text
    calls = _g(delta, "tool_calls")
    if calls:
        total = "".join(
            args
            for args in (_g(_g(call, "function"), "arguments") for call in calls)
            if type(args) is str
        )
        return Content(total) if total else ""
    reasoning = _g(delta, "reasoning_content") or _g(delta, "reasoning")
    if type(reasoning) is str and reasoning:
        return Content(reasoning)
    refusal = _g(delta, "refusal")
    return refusal if type(refusal) is str else ""


def _read_chat_object(reader: "StreamReader", chunk: Any) -> str:
    """An SDK chat-completion chunk object whose choices have a ``delta`` (openai, LiteLLM):
    the common chunk (first choice's text, no usage, model known) on a short path of
    attribute reads, anything else read in full. On a pydantic model every attribute read
    has a cost (its class defines ``__getattr__``), so the short path reads five."""
    if chunk.usage is None and reader.model is not None:
        choices = chunk.choices
        if len(choices) == 1:
            choice = choices[0]
            if not choice.index:
                text = choice.delta.content
                # A finish reason comes in a chunk without text: nothing else to read.
                if type(text) is str and text:
                    return text
    return _read_chat(reader, chunk)


def _has_delta(fields: Any) -> bool:
    """Whether the ``choices`` field of a pydantic model holds items with a ``delta``: only
    then may its chunks take :func:`_read_chat_object`'s short path (a legacy completion's
    choices have none)."""
    annotation = getattr(fields.get("choices"), "annotation", None)
    for item in getattr(annotation, "__args__", ()):
        item_fields = _fields_of(item) if isinstance(item, type) else None
        if item_fields is not None and not callable(item_fields) and "delta" in item_fields:
            return True
    return False


def _openai_helper_chunk(reader: "StreamReader", event: Any) -> str:
    """A ``chunk`` event of ``chat.completions.stream()``: it carries the raw chunk, read as
    any other; the helper's other events repeat what the chunks say."""
    return reader.observe(_g(event, "chunk"))
