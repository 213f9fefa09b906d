"""Bedrock ConverseStream events as boto3 yields them: dicts with one key each.

Text in ``contentBlockDelta``; tool input and reasoning are :class:`Content`; usage in the
``metadata`` event, the finish reason in ``messageStop``.
"""

from typing import TYPE_CHECKING, Any, Dict

from ..usage import bedrock_usage
from ._base import Content

if TYPE_CHECKING:
    from .stream_reader import StreamReader


def _read_bedrock(reader: "StreamReader", event: Dict[str, Any]) -> str:
    """A Bedrock ConverseStream event as boto3 yields it: a dict with one key."""
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
