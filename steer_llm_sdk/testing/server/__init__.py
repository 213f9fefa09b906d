"""LocalLLMServer: a real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions and
Anthropic messages wire protocols, for tests, demos and benchmarks without a provider.

    with LocalLLMServer(ttft_ms=50, tokens_per_second=200) as server:
        client = SteerLLMClient(openai_base_url=server.openai_base_url,
                                anthropic_base_url=server.anthropic_base_url,
                                openai_api_key="test", anthropic_api_key="test")

What it serves:

* deterministic text (a function of the prompt) and usage that matches it exactly: tokens
  are counted with the same tokenizer the client uses locally, and every word of a plain
  reply is one ``o200k_base`` token;
* a latency profile: time to first token and tokens per second;
* tool calls: a request with ``tools`` (and a ``tool_choice`` other than none) whose last
  message is not a tool result is answered with a call of the chosen (else the first) tool,
  its arguments made from the tool's JSON schema, streamed in fragments; the answer to tool
  results is text;
* several choices (OpenAI's ``n``), kept apart by ``index`` in streams;
* scripted faults, one per request in order (:meth:`script`): an HTTP status with the
  provider's error body (429 with ``Retry-After``, 500, 502, 503, 529, 401, 400), a
  connection dropped mid-stream, a malformed event, a stall, a content filter (Azure
  OpenAI's shapes: the prompt refused with a 400, or the answer withheld with
  ``finish_reason: content_filter``), an error that echoes the request (its messages in
  the error message, as validation errors quote their input, or the whole request beside
  the error) or its headers (as AWS signature errors quote the canonical request); error
  statuses are answered on Gemini (``:generateContent``) and Bedrock (``/converse``) paths
  too, in their shapes;
* a request log (:attr:`requests`) for assertions;
* replay of recorded exchanges (vcrpy cassettes, see :meth:`replay`; needs PyYAML).

Run it on its own with ``python -m steer_llm_sdk.testing.server --port 8000``.

Its modules, one job each: ``core`` (the server, its handler, the routing), one per
protocol (``openai_chat``, ``openai_responses``, ``anthropic``, ``gemini``, ``bedrock``,
and ``azure`` for what Azure OpenAI's paths answer differently), ``faults``, ``replay``,
``content`` (reply text, token counts, tool calls), ``errors`` (error answers in each
protocol's shape) and ``wire`` (what they all write through).
"""

from .content import WORDS, ToolCallPlan
from .core import LocalLLMServer, RecordedRequest, main
from .faults import Fault

__all__ = ["WORDS", "Fault", "LocalLLMServer", "RecordedRequest", "ToolCallPlan", "main"]
