"""Universal readers of stream chunks: every shape the official SDKs and the wire protocols
produce, as the SDKs' objects or as decoded JSON dicts.

A :class:`StreamReader` takes one stream's chunks. ``observe(chunk)`` returns the chunk's
content and keeps what the stream reports about itself (usage, model, finish reason);
``token_usage()`` gives the usage. The reader of a chunk is chosen by the chunk's class the
first time that class is seen and cached (:data:`READERS`), so a stream of SDK objects pays
no attribute look-up that can miss.

What ``observe`` returns:

* the text of the chunk, for the answer's first choice (a plain ``str``);
* otherwise, output that is not text (tool-call argument fragments, reasoning/thinking text,
  other choices of an ``n > 1`` stream) as a :class:`Content`, a ``str`` subclass: it counts
  for time to first token and characters, and is never text;
* ``""`` for a chunk with no content.

Content of a chunk beyond what it returns (a second choice in the same chunk) is added to
``extra_chars``. Usage follows the OpenTelemetry GenAI meaning: input tokens include cached
ones, cache reads are ``cached_tokens``, reasoning/thinking tokens are output.

One module per chunk shape: :mod:`.openai_chat` (chat-completion and legacy completion
chunks, LiteLLM's, the ``chat.completions.stream()`` helper's), :mod:`.openai_responses`,
:mod:`.anthropic` (message events, ``MessageStream`` helper events), :mod:`.gemini`,
:mod:`.bedrock` (ConverseStream), :mod:`.plain` (text, bytes, decoded JSON: the client's own
SSE events); :mod:`.events` dispatches events by their ``type``. :mod:`._base` holds what
they share, :mod:`.choose` the reader of each chunk class, :mod:`.stream_reader` the reader
of one stream.

Pure code: no I/O, no imports from the rest of the package beyond leaves.
"""

from ._base import Content, Reader
from .choose import READERS

# The readers that read a chunk in full: tests compare the short paths against them.
from .gemini import _read_gemini as _read_gemini
from .openai_chat import _read_chat as _read_chat
from .stream_reader import StreamReader

__all__ = ["READERS", "Content", "Reader", "StreamReader"]
