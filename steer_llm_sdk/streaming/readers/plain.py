"""Chunks that are plain Python values: text, bytes, and decoded JSON.

Decoded JSON is what the client's own SSE streams yield (and what a user's own decoding of
any provider's stream gives): every shape arrives as a ``dict``, so it is told apart by its
keys, chunk by chunk.
"""

from typing import TYPE_CHECKING, Any, Dict

from .bedrock import _read_bedrock
from .events import _read_event
from .gemini import _read_gemini
from .openai_chat import _read_chat

if TYPE_CHECKING:
    from .stream_reader import StreamReader


def _read_str(reader: "StreamReader", chunk: str) -> str:
    return chunk


def _read_bytes(reader: "StreamReader", chunk: bytes) -> str:
    return chunk.decode("utf-8", "replace")


def _read_dict(reader: "StreamReader", chunk: Dict[str, Any]) -> str:
    """Decoded JSON: told apart by its keys (all dicts share one class)."""
    if "choices" in chunk:
        return _read_chat(reader, chunk)
    if "type" in chunk:
        return _read_event(reader, chunk)
    if "candidates" in chunk or "usageMetadata" in chunk:
        return _read_gemini(reader, chunk)
    if len(chunk) == 1 or "contentBlockDelta" in chunk or "metadata" in chunk:
        return _read_bedrock(reader, chunk)
    return ""
