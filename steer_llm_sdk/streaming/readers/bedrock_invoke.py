"""The chunks of a Bedrock ``InvokeModelWithResponseStream`` body, decoded: each model
family streams in a format of its own (:mod:`.bedrock` decodes the ``chunk`` events boto3
yields and hands each JSON object here; Anthropic's events and Amazon Nova's, shaped like
Converse's, are read by their own readers).

* Amazon Titan text: ``outputText``; ``inputTextTokenCount`` (first chunk) and
  ``totalOutputTextTokenCount`` (a running total);
* Meta Llama: ``generation``; ``prompt_token_count`` (first chunk) and
  ``generation_token_count`` (a running total);
* Mistral: ``outputs[].text``, no usage;
* OpenAI-shaped chunks (AI21 Jamba, Mistral's chat models, OpenAI's and DeepSeek's models on
  Bedrock): ``choices`` with a ``delta`` or, for Mistral's chat models, a ``message``;
* Anthropic's text completions (Claude 2): ``completion``;
* Cohere Command: ``text``; Command R's ``stream-end`` event carries ``response.meta``.

Whatever the family, the last chunk carries ``amazon-bedrock-invocationMetrics``, the
counts Bedrock bills: :func:`apply_invocation_metrics` takes them over what the chunks said.
"""

from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

from ..usage import TokenUsage, bedrock_body_usage, invocation_metrics_usage
from ._base import Content
from .openai_chat import _read_chat

if TYPE_CHECKING:
    from .stream_reader import StreamReader


def _int(value: Any) -> Optional[int]:
    if type(value) is int:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _counts(reader: "StreamReader", prompt: Any, completion: Any) -> None:
    """Take the counts a chunk reports (either may be absent; running totals replace)."""
    prompt, completion = _int(prompt), _int(completion)
    if prompt is not None or completion is not None:
        reader.apply(TokenUsage(prompt, completion))


def _reason(reader: "StreamReader", reason: Any) -> None:
    if type(reason) is str and reason:
        reader.finish_reason = reason


def _text(value: Any) -> str:
    return value if type(value) is str else ""


def _titan(reader: "StreamReader", body: Dict[str, Any]) -> str:
    _counts(reader, body.get("inputTextTokenCount"), body.get("totalOutputTextTokenCount"))
    _reason(reader, body.get("completionReason"))
    return _text(body.get("outputText"))


def _llama(reader: "StreamReader", body: Dict[str, Any]) -> str:
    _counts(reader, body.get("prompt_token_count"), body.get("generation_token_count"))
    _reason(reader, body.get("stop_reason"))
    return _text(body.get("generation"))


def _mistral(reader: "StreamReader", body: Dict[str, Any]) -> str:
    outputs = body.get("outputs")
    if not isinstance(outputs, list):
        return ""
    first = ""
    for index, output in enumerate(outputs):
        if not isinstance(output, dict):
            continue
        if index == 0:
            _reason(reader, output.get("stop_reason"))
            first = _text(output.get("text"))
        else:  # another output of the same answer: content, not its text
            reader.extra_chars += len(_text(output.get("text")))
    return first


def _choices(reader: "StreamReader", body: Dict[str, Any]) -> str:
    """OpenAI-shaped chunks; Mistral's chat models put each piece in a ``message``."""
    text = _read_chat(reader, body)
    if text:
        return text
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    if isinstance(choice, dict) and "delta" not in choice:
        message = choice.get("message")
        _reason(reader, choice.get("stop_reason"))
        if isinstance(message, dict):
            content = message.get("content")
            if type(content) is str:
                return content
            reasoning = message.get("reasoning_content")
            if type(reasoning) is str and reasoning:
                return Content(reasoning)
    return ""


def _claude_text(reader: "StreamReader", body: Dict[str, Any]) -> str:
    _reason(reader, body.get("stop_reason"))
    return _text(body.get("completion"))


def _cohere(reader: "StreamReader", body: Dict[str, Any]) -> str:
    _reason(reader, body.get("finish_reason"))
    response = body.get("response")
    if isinstance(response, dict):  # Command R's stream-end: the whole answer again
        reader.apply(bedrock_body_usage(response))
    kind = body.get("event_type")
    if kind is not None and kind != "text-generation":
        return ""
    return _text(body.get("text"))


#: (a key only that family's chunks have, its reader), in the order they are tried.
FAMILIES: Tuple[Tuple[str, Callable[["StreamReader", Dict[str, Any]], str]], ...] = (
    ("outputText", _titan),
    ("generation", _llama),
    ("outputs", _mistral),
    ("choices", _choices),
    ("completion", _claude_text),
    ("text", _cohere),
    ("event_type", _cohere),
    ("is_finished", _cohere),
)


def read_invoke_body(reader: "StreamReader", body: Dict[str, Any]) -> str:
    """One decoded chunk of a family of :data:`FAMILIES`; ``""`` for any other."""
    for key, read in FAMILIES:
        if key in body:
            return read(reader, body)
    return ""


def apply_invocation_metrics(reader: "StreamReader", metrics: Any) -> None:
    """Take Bedrock's ``amazon-bedrock-invocationMetrics`` over what the chunks reported.
    Without cache counts of its own, those the chunks reported (Anthropic's
    ``message_start``) are kept and added to its input, as Bedrock's input count leaves the
    cache out."""
    usage = invocation_metrics_usage(metrics)
    if usage is None:
        return
    if usage.cached_tokens is None and usage.cache_creation_tokens is None:
        read, write = reader.cached_tokens, reader.cache_creation_tokens
        if (read or write) and usage.prompt_tokens is not None:
            prompt = usage.prompt_tokens + (read or 0) + (write or 0)
            total = None if usage.completion_tokens is None else prompt + usage.completion_tokens
            usage = TokenUsage(prompt, usage.completion_tokens, total, read, None, write)
    reader.apply(usage)
