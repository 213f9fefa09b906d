"""The reader of one stream: :class:`StreamReader` reads each chunk with the reader of the
chunk's class (:data:`.choose.READERS`) and keeps what the stream reports about itself.
"""

from typing import Any, Optional

from ..usage import TokenUsage, gemini_usage
from .choose import READERS


class StreamReader:
    """Accumulates what one stream reports about itself. Not thread-safe: one per stream.

    Attributes:
        prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens,
            cache_creation_tokens: as reported so far (see ``TokenUsage``).
        model: the model the stream says answered.
        finish_reason: the last finish/stop reason seen.
        reported: whether the stream reported any usage.
        extra_chars: content characters not returned by :meth:`observe`.
        errors: chunks that could not be read (passed through, not counted).
    """

    __slots__ = (
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "cache_creation_tokens",
        "model",
        "finish_reason",
        "reported",
        "extra_chars",
        "errors",
        "last_usage",
    )

    def __init__(self) -> None:
        self.prompt_tokens: Optional[int] = None
        self.completion_tokens: Optional[int] = None
        self.total_tokens: Optional[int] = None
        self.cached_tokens: Optional[int] = None
        self.reasoning_tokens: Optional[int] = None
        self.cache_creation_tokens: Optional[int] = None
        self.model: Optional[str] = None
        self.finish_reason: Optional[str] = None
        self.reported = False
        self.extra_chars = 0
        self.errors = 0
        self.last_usage: Any = None  # a Gemini usage report, normalised when asked for

    def observe(self, chunk: Any) -> str:
        """Take note of one chunk; return its content (see the package docstring).

        Never raises: a chunk of an unexpected shape is passed over and counted in
        ``errors``."""
        try:
            return READERS[type(chunk)](self, chunk)
        except Exception:
            self.errors += 1
            return ""

    def token_usage(self) -> Optional[TokenUsage]:
        """The token usage the stream reported so far, or None if it reported none."""
        if self.last_usage is not None:
            self.apply(gemini_usage(self.last_usage))
            self.last_usage = None
        if not self.reported:
            return None
        return TokenUsage(
            self.prompt_tokens,
            self.completion_tokens,
            self.total_tokens,
            self.cached_tokens,
            self.reasoning_tokens,
            self.cache_creation_tokens,
        )

    #: The earlier name of :meth:`token_usage`.
    usage = token_usage

    # ------------------------------------------------------------------ helpers for readers
    def apply(self, usage: Optional[TokenUsage]) -> None:
        """Take a usage report (later reports replace earlier counts)."""
        if usage is None:
            return
        self.reported = True
        if usage.prompt_tokens is not None:
            self.prompt_tokens = usage.prompt_tokens
        if usage.completion_tokens is not None:
            self.completion_tokens = usage.completion_tokens
        if usage.cached_tokens is not None:
            self.cached_tokens = usage.cached_tokens
        if usage.reasoning_tokens is not None:
            self.reasoning_tokens = usage.reasoning_tokens
        if usage.cache_creation_tokens is not None:
            self.cache_creation_tokens = usage.cache_creation_tokens
        if usage.total_tokens is not None:
            self.total_tokens = usage.total_tokens
        elif self.prompt_tokens is not None and self.completion_tokens is not None:
            self.total_tokens = self.prompt_tokens + self.completion_tokens
