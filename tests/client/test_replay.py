"""LocalLLMServer.replay's reading of cassettes: parsed once per contents, never stale."""

import json

import requests
import yaml

from steer_llm_sdk.testing import LocalLLMServer
from steer_llm_sdk.testing.server import replay


def _cassette(path, text):
    interaction = {
        "request": {"method": "POST", "uri": "https://api.example.com/v1/answer"},
        "response": {
            "status": {"code": 200},
            "headers": {"content-type": ["application/json"]},
            "body": {"string": json.dumps({"text": text})},
        },
    }
    path.write_text(yaml.safe_dump({"interactions": [interaction]}), encoding="utf-8")
    return str(path)


def test_the_same_contents_are_parsed_once(tmp_path):
    first = replay.read(_cassette(tmp_path / "a.yaml", "one"))
    again = replay.read(_cassette(tmp_path / "b.yaml", "one"))  # another file, same bytes
    assert again is first


def test_a_cassette_rewritten_in_place_is_read_again(tmp_path):
    # Same path, same size, written within the file system's timestamp granularity: only
    # the contents tell the two versions apart.
    path = tmp_path / "c.yaml"
    with LocalLLMServer() as server:
        answers = []
        for text in ("one", "two"):
            server.replay(_cassette(path, text))
            answers.append(requests.post(server.url + "/v1/answer", timeout=5).json()["text"])
    assert answers == ["one", "two"]
