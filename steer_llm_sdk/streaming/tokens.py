"""Counting tokens locally, for streams whose provider reported no usage.

Tried in order, each once per process and encoding:

1. ``bpe-openai`` (the ``[tokenizer]`` extra), which bundles ``o200k_base`` and
   ``cl100k_base`` with tiktoken's token ids and needs no network;
2. ``tiktoken``, when its encoding loads (it downloads its BPE files on first use, so it
   fails without internet unless they are cached). It comes second so that counting never
   reaches for the network when the offline tokenizer is there: a blocked download could
   stall the thread that asked;
3. a heuristic: characters / 4.

Each count says how it was made and how much to trust it (``confidence``):

============  ==========  ========================================================
method        confidence  meaning
============  ==========  ========================================================
provider      1.0         the provider reported the count (not produced here)
tokenizer     0.95        the model's own BPE encoding (OpenAI models); chat framing
                          tokens are estimated
tokenizer     0.7         ``o200k_base`` as a stand-in for a model whose tokenizer is
                          not public (Anthropic)
heuristic     0.5         characters / 4
============  ==========  ========================================================
"""

import math
import threading
import warnings
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence

TOKENIZER_CONFIDENCE = 0.95
STAND_IN_CONFIDENCE = 0.7
HEURISTIC_CONFIDENCE = 0.5

# Chat framing per message and per reply, as OpenAI documents for its chat models.
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_REPLY = 3

_lock = threading.Lock()
_encoders: Dict[str, Optional[Callable[[str], Sequence[int]]]] = {}


class TokenCount(NamedTuple):
    tokens: int
    method: str
    confidence: float


def encoding_name(model: Optional[str]) -> Optional[str]:
    """The BPE encoding of an OpenAI model, or None when it is not an OpenAI model."""
    if not model:
        return None
    name = model.split(":", 1)[-1].lower()
    if name.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-", "gpt-oss")):
        return "o200k_base"
    if name.startswith(("gpt-4", "gpt-3.5", "text-embedding")):
        return "cl100k_base"
    return None


def _load(encoding: str) -> Optional[Callable[[str], Sequence[int]]]:
    # A dependency's deprecation warning must not cost us the tokenizer (nor turn into an
    # error where warnings are errors, as in test suites).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import bpe_openai

            return bpe_openai.get_encoding(encoding).encode_ordinary
        except Exception:  # not installed
            pass
        try:
            import tiktoken

            return tiktoken.get_encoding(encoding).encode_ordinary
        except Exception:  # not installed, or no network for its first download
            return None


def encoder(encoding: str) -> Optional[Callable[[str], Sequence[int]]]:
    """A cached ``encode`` function for ``encoding``, or None if no tokenizer can load it."""
    with _lock:
        if encoding not in _encoders:
            _encoders[encoding] = _load(encoding)
        return _encoders[encoding]


def count_text(text: str, model: Optional[str]) -> TokenCount:
    """Tokens in ``text`` as ``model`` would count them (best available method)."""
    name = encoding_name(model)
    confidence = TOKENIZER_CONFIDENCE if name else STAND_IN_CONFIDENCE
    encode = encoder(name or "o200k_base")
    if encode is not None:
        return TokenCount(len(encode(text)), "tokenizer", confidence)
    return TokenCount(math.ceil(len(text) / 4), "heuristic", HEURISTIC_CONFIDENCE)


def count_messages(messages: Sequence[Any], model: Optional[str]) -> TokenCount:
    """Prompt tokens of chat ``messages`` (dicts with ``role`` and string ``content``),
    including the per-message framing of chat models."""
    tokens = _TOKENS_PER_MESSAGE * len(messages) + _TOKENS_PER_REPLY
    counted = TokenCount(0, "heuristic", HEURISTIC_CONFIDENCE)
    for message in messages:
        fields = message if isinstance(message, dict) else {}
        for value in (fields.get("role"), fields.get("content")):
            text = value if isinstance(value, str) else str(value or "")
            counted = count_text(text, model)
            tokens += counted.tokens
    return TokenCount(tokens, counted.method, counted.confidence)
