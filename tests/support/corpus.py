"""The recorded corpus (``../shared/fixtures/recorded/``, see its NOTICE.md) replayed to the
official SDKs, with what each recorded exchange says the records must hold.

Each interaction of a covered API shape is classified by its path; the expected usage and
content are read from the recorded response body here, straight from the wire format, as an
oracle independent of the library's readers. Every field a provider bills by counts: Groq's
``x_groq.usage``, DeepSeek's ``prompt_cache_hit_tokens`` (its cache reads), Gemini's
``toolUsePromptTokenCount`` (input). Where a body reports a count twice, the two must agree
(checked here, on the corpus itself).
"""

import json
import os
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import unquote, urlsplit

import pytest

from support.cassettes import load
from support.paths import SHARED_RECORDED

#: Recorded models include deprecated ones, and boto3 warns about Python 3.9's end of
#: support: the SDKs' own warnings are not ours to fail on.
SDK_WARNINGS = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Boto3 will no longer support"),
]

CORPUS = SHARED_RECORDED / "pydantic-ai"

#: path suffix -> API shape (streamed shapes are decided by the request or the path)
_SHAPES = (
    ("/chat/completions", "chat"),
    ("/responses", "responses"),
    ("/v1/messages", "messages"),
    (":streamGenerateContent", "gemini"),
    (":generateContent", "gemini"),
    ("/converse-stream", "converse"),
    ("/converse", "converse"),
    ("/embeddings", "embeddings"),
    ("/completions", "completions"),
)
#: Bedrock's InvokeModel paths (the body in the model family's own format): not among the
#: shapes :func:`exchanges` yields by default, whose callers speak the other APIs; see
#: :func:`invoke_exchanges`, and :data:`WITH_INVOKE` for callers that speak InvokeModel too.
INVOKE_SHAPES = (("/invoke-with-response-stream", "invoke"), ("/invoke", "invoke"))
WITH_INVOKE = _SHAPES + INVOKE_SHAPES


class Exchange:
    """One recorded interaction of a covered shape."""

    def __init__(self, cassette: Path, index: int, interaction: Dict[str, Any], shape: str):
        self.cassette = cassette
        self.index = index
        self.shape = shape
        request = interaction["request"]
        self.request_body = request.get("parsed_body")
        if self.request_body is None:
            raw = (request.get("body") or {}) if isinstance(request.get("body"), dict) else {}
            try:
                self.request_body = json.loads(raw.get("string") or "null")
            except (TypeError, ValueError):
                self.request_body = None
        self.url = request.get("uri") or request.get("url") or ""
        self.path = unquote(urlsplit(self.url).path)
        self.host = urlsplit(self.url).hostname or ""
        response = interaction["response"]
        self.status = int(response.get("status", {}).get("code", 200))
        self.response_headers = {
            str(k).lower(): v[0] if isinstance(v, list) else v
            for k, v in (response.get("headers") or {}).items()
        }
        self.response_body = response.get("parsed_body")
        raw_body = (
            (response.get("body") or {}).get("string")
            if isinstance(response.get("body"), dict)
            else None
        )
        self.raw: Any = raw_body
        self.streamed = (
            self.path.endswith(
                (":streamGenerateContent", "/converse-stream", "/invoke-with-response-stream")
            )
            or (isinstance(self.request_body, dict) and self.request_body.get("stream") is True)
            or (isinstance(raw_body, str) and raw_body.lstrip().startswith(("data:", "event:")))
            or isinstance(raw_body, bytes)
        )
        if self.response_body is None and isinstance(raw_body, str) and not self.streamed:
            try:
                self.response_body = json.loads(raw_body)
            except ValueError:
                pass

    @property
    def fails(self) -> bool:
        """Whether the provider answered with an error: a status >= 400, or an error event
        inside a streamed 200."""
        if self.status >= 400:
            return True
        if isinstance(self.raw, str) and self.streamed:
            return any(event.get("error") for event in self.events()) or (
                "event: error" in self.raw
            )
        return False

    @property
    def name(self) -> str:
        return f"{self.cassette.parent.name}/{self.cassette.stem}#{self.index}"

    @property
    def model(self) -> Optional[str]:
        body = self.request_body if isinstance(self.request_body, dict) else {}
        model = body.get("model") or body.get("modelId")
        if model is None and "/models/" in self.path:
            model = self.path.split("/models/", 1)[1].split(":", 1)[0]
        if model is None and "/model/" in self.path:
            model = self.path.split("/model/", 1)[1].rsplit("/", 1)[0]
        return model

    # ------------------------------------------------------------------ the oracle
    def events(self) -> List[Dict[str, Any]]:
        """The JSON of every SSE event (``[DONE]`` and non-JSON data left out)."""
        out = []
        text = self.raw if isinstance(self.raw, str) else ""
        for line in text.replace("\r\n", "\n").split("\n"):
            if line.startswith("data:"):
                data = line[5:].strip()
                if data and data != "[DONE]":
                    try:
                        out.append(json.loads(data))
                    except ValueError:
                        pass
        return out

    def expected(self) -> Tuple[Optional[Tuple[Any, Any, Any]], Optional[int]]:
        """((prompt, completion, cached) tokens or None, content characters or None when
        not checked)."""
        reader = getattr(self, f"_expect_{self.shape}")
        return reader()  # type: ignore[no-any-return]

    def _expect_chat(self) -> Any:
        return self._expect_openai(lambda choice: _content_chars(choice.get("delta") or {}))

    def _expect_completions(self) -> Any:
        return self._expect_openai(lambda choice: len(choice.get("text") or ""))

    def _expect_openai(self, chars_of: Any) -> Any:
        """Usage and (for streams) content characters of an OpenAI-shaped exchange, the
        characters of each streamed choice read by ``chars_of``."""
        if not self.streamed:
            return _openai_usage((self.response_body or {}).get("usage")), None
        usage, chars = None, 0
        for event in self.events():
            reported = _groq_usage(event, self.name) or event.get("usage")
            if reported:
                usage = _openai_usage(reported)
            for choice in event.get("choices") or ():
                chars += chars_of(choice)
        return usage, chars

    def _expect_embeddings(self) -> Any:
        usage = (self.response_body or {}).get("usage") or {}
        return (usage.get("prompt_tokens"), None, None), None

    def _expect_responses(self) -> Any:
        if not self.streamed:
            return _responses_usage((self.response_body or {}).get("usage")), None
        usage, chars = None, 0
        for event in self.events():
            kind = event.get("type", "")
            if kind in ("response.completed", "response.incomplete", "response.failed"):
                usage = _responses_usage((event.get("response") or {}).get("usage"))
            elif kind in _RESPONSES_CONTENT and isinstance(event.get("delta"), str):
                chars += len(event["delta"])
        return usage, chars

    def _expect_messages(self) -> Any:
        if not self.streamed:
            return _anthropic_usage((self.response_body or {}).get("usage")), None
        prompt = cached = output = None
        chars = 0
        for event in self.events():
            kind = event.get("type")
            if kind == "message_start":
                prompt, _, cached = _anthropic_usage(event["message"].get("usage")) or (
                    None,
                    None,
                    None,
                )
            elif kind == "message_delta":
                usage = event.get("usage") or {}
                if usage.get("output_tokens") is not None:
                    output = usage["output_tokens"]
                if usage.get("input_tokens") is not None:
                    prompt, _, cached = _anthropic_usage(usage)
            elif kind == "content_block_delta":
                delta = event.get("delta") or {}
                for key in ("text", "partial_json", "thinking"):
                    if isinstance(delta.get(key), str):
                        chars += len(delta[key])
        if prompt is None and output is None:
            return None, chars
        return (prompt, output, cached), chars

    def _expect_gemini(self) -> Any:
        chunks = self.events() if self.streamed else [self.response_body or {}]
        usage, chars = None, 0
        for chunk in chunks:
            if chunk.get("usageMetadata"):
                usage = _gemini_usage(chunk["usageMetadata"])
            for candidate in (chunk.get("candidates") or ())[:1]:
                for part in (candidate.get("content") or {}).get("parts") or ():
                    if isinstance(part.get("text"), str):
                        chars += len(part["text"])
                    elif part.get("functionCall") is not None:
                        args = part["functionCall"].get("args")
                        if args is not None:
                            chars += len(json.dumps(args, separators=(",", ":")))
        return usage, (chars if self.streamed else None)

    def _expect_invoke(self) -> Any:
        """Bedrock InvokeModel: the counts of the ``x-amzn-bedrock-*`` headers, else of the
        body in its family's format; of a stream, its ``amazon-bedrock-invocationMetrics``.
        Where both headers and body report counts they must agree (checked here, on the
        corpus itself). Content characters are not checked."""
        if self.streamed:
            return _invocation_metrics(self.raw if isinstance(self.raw, bytes) else b""), None
        headers = _invoke_header_usage(self.response_headers)
        body = _invoke_body_usage(self.response_body)
        if headers is not None and body is not None:
            prompt, completion, cached = body
            assert (prompt, completion) == headers[:2], (self.name, headers, body)
            assert cached in (None, headers[2]), (self.name, headers, body)
        return (headers or body), None

    def _expect_converse(self) -> Any:
        if not self.streamed:
            return _bedrock_usage((self.response_body or {}).get("usage")), None
        raw = self.raw if isinstance(self.raw, bytes) else b""
        found = re.findall(rb'"usage":(\{(?:[^{}]|\{[^{}]*\})*\})', raw)
        usage = _bedrock_usage(json.loads(found[-1])) if found else None
        return usage, None


_RESPONSES_CONTENT = {
    "response.output_text.delta",
    "response.refusal.delta",
    "response.function_call_arguments.delta",
    "response.custom_tool_call_input.delta",
    "response.reasoning_summary_text.delta",
    "response.reasoning_text.delta",
}


def _content_chars(delta: Dict[str, Any]) -> int:
    chars = 0
    content = delta.get("content")
    if isinstance(content, str) and content:
        return len(content)
    for call in delta.get("tool_calls") or ():
        args = (call.get("function") or {}).get("arguments")
        if isinstance(args, str):
            chars += len(args)
    if chars:
        return chars
    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        return len(reasoning)
    refusal = delta.get("refusal")
    return len(refusal) if isinstance(refusal, str) else 0


def _groq_usage(event: Dict[str, Any], name: str) -> Any:
    """Groq's ``x_groq.usage`` of a streamed chunk (its streams' only usage without
    ``include_usage``), or None; where the chunk has ``usage`` too, they must agree."""
    groq = (event.get("x_groq") or {}).get("usage")
    if groq and event.get("usage"):
        assert groq == event["usage"], (name, groq, event["usage"])
    return groq


def _openai_usage(usage: Any) -> Optional[Tuple[Any, Any, Any]]:
    """(prompt, completion, cached) of a chat usage: cached from
    ``prompt_tokens_details.cached_tokens``, else DeepSeek's ``prompt_cache_hit_tokens``
    (where both are reported they must agree)."""
    if not usage:
        return None
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    hits = usage.get("prompt_cache_hit_tokens")
    if cached is not None and hits is not None:
        assert cached == hits, usage
    return (
        usage.get("prompt_tokens"),
        usage.get("completion_tokens"),
        cached if cached is not None else hits,
    )


def _responses_usage(usage: Any) -> Optional[Tuple[Any, Any, Any]]:
    if not usage:
        return None
    details = usage.get("input_tokens_details") or {}
    return usage.get("input_tokens"), usage.get("output_tokens"), details.get("cached_tokens")


def _anthropic_usage(usage: Any) -> Optional[Tuple[Any, Any, Any]]:
    if not usage:
        return None
    read = usage.get("cache_read_input_tokens")
    prompt = usage.get("input_tokens")
    if prompt is not None:
        prompt += (read or 0) + (usage.get("cache_creation_input_tokens") or 0)
    return prompt, usage.get("output_tokens"), read


def _gemini_usage(usage: Dict[str, Any]) -> Tuple[Any, Any, Any]:
    """(prompt, completion, cached): the prompt of tool use (search, code execution) is
    billed as input, thoughts as output."""
    completion = None
    if "candidatesTokenCount" in usage or "thoughtsTokenCount" in usage:
        completion = usage.get("candidatesTokenCount", 0) + usage.get("thoughtsTokenCount", 0)
    prompt = usage.get("promptTokenCount")
    if usage.get("toolUsePromptTokenCount"):
        prompt = (prompt or 0) + usage["toolUsePromptTokenCount"]
    return prompt, completion, usage.get("cachedContentTokenCount")


def _bedrock_usage(usage: Any) -> Optional[Tuple[Any, Any, Any]]:
    if not usage:
        return None
    read = usage.get("cacheReadInputTokens")
    prompt = usage["inputTokens"] + (read or 0) + (usage.get("cacheWriteInputTokens") or 0)
    return prompt, usage.get("outputTokens"), read


def _count(value: Any) -> Optional[int]:
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _without_cache(
    input_tokens: Any, output: Any, read: Any, write: Any
) -> Optional[Tuple[Any, Any, Any]]:
    """(prompt, completion, cached) of counts whose input leaves the cache out (Bedrock)."""
    input_tokens, output, read, write = map(_count, (input_tokens, output, read, write))
    if input_tokens is None and output is None:
        return None
    prompt = None if input_tokens is None else input_tokens + (read or 0) + (write or 0)
    return prompt, output, read


def _invoke_header_usage(headers: Dict[str, Any]) -> Optional[Tuple[Any, Any, Any]]:
    return _without_cache(
        headers.get("x-amzn-bedrock-input-token-count"),
        headers.get("x-amzn-bedrock-output-token-count"),
        headers.get("x-amzn-bedrock-cache-read-input-token-count"),
        headers.get("x-amzn-bedrock-cache-write-input-token-count"),
    )


def _invoke_body_usage(body: Any) -> Optional[Tuple[Any, Any, Any]]:
    """The counts an InvokeModel body reports, by its family's fields."""
    if not isinstance(body, dict):
        return None
    usage = body.get("usage")
    if isinstance(usage, dict) and "input_tokens" in usage:  # Anthropic
        return _anthropic_usage(usage)
    if isinstance(usage, dict) and "inputTokens" in usage:  # Amazon Nova
        return _without_cache(
            usage["inputTokens"],
            usage.get("outputTokens"),
            usage.get("cacheReadInputTokenCount"),
            usage.get("cacheWriteInputTokenCount"),
        )
    if isinstance(usage, dict):  # OpenAI-shaped (AI21 Jamba, Mistral chat)
        return _openai_usage(usage)
    if "inputTextTokenCount" in body:  # Amazon Titan
        results = body.get("results") or []
        output = sum(r["tokenCount"] for r in results) if results else None
        return body["inputTextTokenCount"], output, None
    if "prompt_token_count" in body:  # Meta Llama
        return body["prompt_token_count"], body.get("generation_token_count"), None
    return None


def _invocation_metrics(raw: bytes) -> Optional[Tuple[Any, Any, Any]]:
    """The ``amazon-bedrock-invocationMetrics`` of an InvokeModel stream's last chunk,
    decoded with botocore's event-stream parser."""
    import base64

    from botocore.eventstream import EventStreamBuffer

    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    found = None
    for message in buffer:
        if message.headers.get(":event-type") != "chunk":
            continue
        chunk = json.loads(base64.b64decode(json.loads(message.payload)["bytes"]))
        metrics = chunk.get("amazon-bedrock-invocationMetrics")
        if metrics:
            found = _without_cache(
                metrics.get("inputTokenCount"),
                metrics.get("outputTokenCount"),
                metrics.get("cacheReadInputTokenCount"),
                metrics.get("cacheWriteInputTokenCount"),
            )
    return found


def shape_of(path: str, shapes: Any = _SHAPES) -> Optional[str]:
    for suffix, shape in shapes:
        if path.endswith(suffix):
            return shape
    return None


def cassettes() -> List[Path]:
    """Every cassette of the corpus (the wider pydantic-ai one and the five beside it)."""
    if not SHARED_RECORDED.is_dir():
        return []
    return sorted(SHARED_RECORDED.glob("*.yaml")) + sorted(CORPUS.glob("*/*.yaml"))


def exchanges(cassette: Path, shapes: Any = _SHAPES) -> Iterator[Exchange]:
    """The interactions of ``cassette`` whose path is of one of ``shapes``, in order. The
    cassette is parsed once per process (:func:`support.cassettes.load`)."""
    data = load(cassette)
    for index, interaction in enumerate(data.get("interactions") or ()):
        request = interaction["request"]
        path = unquote(urlsplit(request.get("uri") or request.get("url") or "").path)
        shape = shape_of(path, shapes)
        if shape is not None:
            yield Exchange(cassette, index, interaction, shape)


def invoke_exchanges() -> List[Exchange]:
    """Every Bedrock InvokeModel exchange of the corpus (shape ``invoke``), in order."""
    found: List[Exchange] = []
    for cassette in cassettes():
        if "/invoke" in cassette.read_text(encoding="utf-8"):  # before parsing the YAML
            found.extend(exchanges(cassette, INVOKE_SHAPES))
    return found


def corpus_required() -> bool:
    """In CI the corpus must be there; elsewhere its absence skips these tests."""
    return os.environ.get("CI") == "true"
