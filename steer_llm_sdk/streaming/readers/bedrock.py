"""Bedrock's stream events as boto3 yields them: dicts with one key each.

ConverseStream: text in ``contentBlockDelta``; tool input and reasoning are
:class:`Content`; usage in the ``metadata`` event, the finish reason in ``messageStop``.

InvokeModelWithResponseStream: ``{"chunk": {"bytes": b"<JSON>"}}``, the JSON in the format
of the model's family: Anthropic's message events (read as Anthropic's), Amazon Nova's
(shaped like Converse's events), and the others of :mod:`.bedrock_invoke`. The last chunk
carries ``amazon-bedrock-invocationMetrics``, whose counts win.
"""

import json
from typing import TYPE_CHECKING, Any, Dict

from ..usage import INVOCATION_METRICS, bedrock_usage
from ._base import Content
from .bedrock_invoke import apply_invocation_metrics, read_invoke_body
from .events import _read_event

if TYPE_CHECKING:
    from .stream_reader import StreamReader

#: The keys of Converse's events, which Amazon Nova's InvokeModel chunks share.
_CONVERSE_EVENTS = frozenset(
    ("messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop")
    + ("messageStop", "metadata")
)


def _read_bedrock(reader: "StreamReader", event: Dict[str, Any]) -> str:
    """A Bedrock stream event as boto3 yields it: a dict with one key."""
    chunk = event.get("chunk")
    if chunk is not None:
        return _read_invoke_chunk(reader, chunk)
    delta = event.get("contentBlockDelta")
    if delta is not None:
        delta = delta.get("delta") or {}
        text = delta.get("text")
        if type(text) is str:
            return text
        tool = delta.get("toolUse")
        if tool is not None:
            return Content(tool.get("input") or "")
        reasoning = delta.get("reasoningContent")
        if reasoning is not None:
            return Content(reasoning.get("text") or "")
        return ""
    metadata = event.get("metadata")
    if metadata is not None:
        reader.apply(bedrock_usage(metadata.get("usage")))
        return ""
    stop = event.get("messageStop")
    if stop is not None:
        reader.finish_reason = stop.get("stopReason")
    return ""


def _read_invoke_chunk(reader: "StreamReader", chunk: Dict[str, Any]) -> str:
    """One ``chunk`` event of an InvokeModel stream: its JSON decoded and read by its
    family's reader, then the invocation metrics it ends with. Raises on bytes that are no
    JSON object (the caller counts the chunk as unread)."""
    body = json.loads(chunk["bytes"])
    if "type" in body:
        text = _read_event(reader, body)
    elif not _CONVERSE_EVENTS.isdisjoint(body):
        text = _read_bedrock(reader, body)
    else:
        text = read_invoke_body(reader, body)
    metrics = body.get(INVOCATION_METRICS)
    if metrics is not None:
        apply_invocation_metrics(reader, metrics)
    return text
