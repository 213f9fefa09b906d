"""Reading recorded provider exchanges: any cassette file, parsed once per process
(:func:`load`), and those in tests/fixtures/recorded (see its NOTICE.md)."""

import functools
import json
from pathlib import Path
from typing import Any, Dict, List

import yaml

from steer_llm_sdk.streaming import SSEDecoder
from support.paths import RECORDED

#: PyYAML's C loader where PyYAML was built with libyaml: about ten times faster than the
#: pure-Python one, with the same result on every recorded cassette.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def load(path: Path) -> Any:
    """The parsed YAML of ``path``, read once per process (the recorded files do not change
    while tests run, and parsing them was most of the corpus tests' time). The object is
    shared by every caller: read it, never change it."""
    with open(path, "rb") as handle:
        return yaml.load(handle, Loader=_LOADER)


def interaction(name: str) -> Dict[str, Any]:
    """The first request/response pair of a cassette."""
    return load(RECORDED / name)["interactions"][0]  # type: ignore[no-any-return]


def response_body(name: str) -> str:
    return interaction(name)["response"]["body"]["string"]  # type: ignore[no-any-return]


def stream_chunks(name: str) -> List[Dict[str, Any]]:
    """The decoded JSON of every SSE event of a streamed response, ``[DONE]`` excluded."""
    decoder = SSEDecoder()
    events = decoder.feed(response_body(name))
    decoder.close()
    return [json.loads(e.data) for e in events if e.data != "[DONE]"]
