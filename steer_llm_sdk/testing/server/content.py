"""What the server says, whatever the protocol: the reply's words (a function of the
prompt), the tokens a request and a reply count, and the tool call a request gets."""

import json
import zlib
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple

from ...streaming.tokens import count_messages, count_text

# Common English words that are each one token (with their leading space) in o200k_base, so
# a reply of N words is N completion tokens.
WORDS = (
    "the",
    "model",
    "said",
    "that",
    "this",
    "answer",
    "is",
    "a",
    "good",
    "one",
    "for",
    "you",
    "and",
    "we",
    "will",
    "see",
    "what",
    "comes",
    "next",
    "in",
    "time",
    "it",
    "was",
    "not",
    "so",
    "bad",
    "to",
    "be",
    "here",
    "with",
    "all",
    "of",
    "them",
    "at",
    "home",
    "on",
    "day",
)

ToolCallPlan = Optional[Tuple[str, str, List[str]]]  # (name, call id, argument pieces)


class Replies(Protocol):
    """The server's settings the protocol modules answer with (``LocalLLMServer``)."""

    reply_words: int
    report_usage: bool
    azure_model: str

    def reply_text(self, prompt: str, words: Optional[int] = None) -> List[str]: ...


def reply_text(prompt: str, count: int) -> List[str]:
    """``count`` words picked by ``prompt``, as pieces of one token each."""
    seed = zlib.crc32(prompt.encode("utf-8"))
    picked = [WORDS[(seed + i * 7919) % len(WORDS)] for i in range(count)]
    return [picked[0]] + [" " + w for w in picked[1:]] if picked else []


def prompt_of(body: Dict[str, Any]) -> str:
    return "\n".join(str(m.get("content", "")) for m in body["messages"] if isinstance(m, dict))


def prompt_tokens(body: Dict[str, Any]) -> int:
    """The request's tokens, counted as the client counts them locally."""
    messages = list(body["messages"])
    if isinstance(body.get("system"), str):
        messages.insert(0, {"role": "system", "content": body["system"]})
    return count_messages(messages, body.get("model")).tokens


def completion_tokens(body: Dict[str, Any], pieces: Sequence[str]) -> int:
    """The reply's tokens, counted as the client counts them locally."""
    return count_text("".join(pieces), body.get("model")).tokens


def pieces(body: Dict[str, Any], replies: Replies) -> List[str]:
    """The text reply to ``body``, as the pieces it streams in."""
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    most = replies.reply_words
    words = most if not isinstance(limit, int) else min(limit, most)
    text = replies.reply_text(prompt_of(body), words)
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        return ['{"answer": "', *text, '"}']  # one JSON object, streamed in pieces
    return text


def tool_call(body: Dict[str, Any], replies: Replies, id_prefix: str) -> ToolCallPlan:
    """(name, call id, argument JSON pieces) when the answer is a tool call, else None."""
    if not _calls_a_tool(body):
        return None
    name, schema = _chosen_tool(body["tools"], body.get("tool_choice"))
    words = replies.reply_text(prompt_of(body), 4)
    text = json.dumps(_arguments(schema, words))
    third = max(1, len(text) // 3)
    fragments = [text[:third], text[third : 2 * third], text[2 * third :]]
    return str(name), f"{id_prefix}local{zlib.crc32(text.encode()):x}", fragments


def _calls_a_tool(body: Dict[str, Any]) -> bool:
    """Tools offered, not refused, and the last message not a tool result."""
    if not body.get("tools") or body.get("tool_choice") in ("none", {"type": "none"}):
        return False
    last = body["messages"][-1] if body["messages"] else {}
    if last.get("role") == "tool":
        return False
    content = last.get("content")
    return not (
        isinstance(content, list)
        and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
    )


def _chosen_tool(tools: List[Any], choice: Any) -> Tuple[Any, Dict[str, Any]]:
    """(name, JSON schema) of the tool ``choice`` names, else of the first tool; OpenAI's
    and Anthropic's tool shapes alike."""
    wanted = None
    if isinstance(choice, dict):
        wanted = choice.get("name") or (choice.get("function") or {}).get("name")
    specs = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool.get("function"), dict) else tool
        schema = function.get("parameters") or function.get("input_schema") or {}
        specs.append((function.get("name"), schema))
    return next((spec for spec in specs if spec[0] == wanted), specs[0])


def _arguments(schema: Dict[str, Any], words: List[str]) -> Dict[str, Any]:
    """Arguments for a tool's schema: numbers and booleans by type, else reply words."""
    arguments: Dict[str, Any] = {}
    for i, (key, prop) in enumerate(sorted((schema.get("properties") or {}).items())):
        kind = prop.get("type") if isinstance(prop, dict) else None
        value: Any = {"integer": i + 1, "number": i + 0.5, "boolean": True}.get(
            str(kind), words[i % len(words)].strip() if words else "x"
        )
        arguments[key] = value
    return arguments
