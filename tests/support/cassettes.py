"""Reading the recorded provider exchanges in tests/fixtures/recorded (see its NOTICE.md)."""

import json
from typing import Any, Dict, List

import yaml

from steer_llm_sdk.streaming import SSEDecoder
from support.paths import RECORDED


def interaction(name: str) -> Dict[str, Any]:
    """The first request/response pair of a cassette."""
    data = yaml.safe_load((RECORDED / name).read_text(encoding="utf-8"))
    return data["interactions"][0]  # type: ignore[no-any-return]


def response_body(name: str) -> str:
    return interaction(name)["response"]["body"]["string"]  # type: ignore[no-any-return]


def stream_chunks(name: str) -> List[Dict[str, Any]]:
    """The decoded JSON of every SSE event of a streamed response, ``[DONE]`` excluded."""
    decoder = SSEDecoder()
    events = decoder.feed(response_body(name))
    decoder.close()
    return [json.loads(e.data) for e in events if e.data != "[DONE]"]
