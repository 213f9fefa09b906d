"""Stream readers on the SDKs' own chunk objects: the short paths read less of a chunk;
what they report must equal reading every chunk in full."""

import pytest

from steer_llm_sdk.streaming.readers import READERS, StreamReader, _read_chat, _read_gemini

genai = pytest.importorskip("google.genai.types")
chat = pytest.importorskip("openai.types.chat")


def gemini(text=None, usage=None, finish=None, parts=None):
    candidate = {"content": {"role": "model", "parts": parts or [{"text": text}]}}
    if finish:
        candidate["finish_reason"] = finish
    body = {"candidates": [candidate], "model_version": "gemini-2.5-flash"}
    if text is None and parts is None:
        body["candidates"] = []
    if usage is not None:
        body["usage_metadata"] = {
            "prompt_token_count": 7,
            "candidates_token_count": usage,
            "total_token_count": 7 + usage,
        }
    return genai.GenerateContentResponse.model_validate(body)


def read_all(chunks, full):
    reader = StreamReader()
    texts = [(full(reader, c) if full else reader.observe(c)) for c in chunks]
    return texts, reader.usage(), reader.finish_reason, reader.model


GEMINI_STREAMS = {
    "finish on the last text chunk": [
        gemini("Hel", usage=1),
        gemini("lo", usage=2),
        gemini(" there", usage=4, finish="STOP"),
    ],
    "finish, then a chunk read in full": [
        gemini("Hel", usage=1),
        gemini("lo", usage=2, finish="STOP"),
        gemini(usage=5),  # no candidate: the long path, after the unread chunk
    ],
    "a chunk read in full between short ones": [
        gemini("a", usage=1),
        gemini("b", usage=2),
        gemini(parts=[{"text": "c"}, {"text": "d"}], usage=3),
        gemini("e", usage=6, finish="MAX_TOKENS"),
    ],
    "the last chunk without usage": [
        gemini("a", usage=1),
        gemini("b", usage=3),
        gemini("c", finish="STOP"),
    ],
}


@pytest.mark.parametrize("name", list(GEMINI_STREAMS))
def test_gemini_short_path_reports_what_reading_in_full_does(name):
    chunks = GEMINI_STREAMS[name]
    assert READERS[type(chunks[0])].__name__ == "_read_gemini_object"
    short = read_all(chunks, None)
    full = read_all(chunks, _read_gemini)
    assert short == full
    assert short[1] is not None and short[2] is not None


def chat_chunk(content=None, index=0, finish=None, usage=None, choices=True):
    body = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": (
            [{"index": index, "delta": {"content": content}, "finish_reason": finish}]
            if choices
            else []
        ),
    }
    if usage is not None:
        body["usage"] = {"prompt_tokens": 3, "completion_tokens": usage, "total_tokens": 3 + usage}
    return chat.ChatCompletionChunk.model_validate(body)


def test_chat_short_path_reports_what_reading_in_full_does():
    chunks = [
        chat_chunk(""),
        chat_chunk("Hi"),
        chat_chunk(" there", index=1),  # another choice of an n=2 stream: not text
        chat_chunk("!", usage=3),  # usage on a text chunk, as some compatible servers send
        chat_chunk(None, finish="stop"),
    ]
    assert READERS[type(chunks[0])].__name__ == "_read_chat_object"
    short = read_all(chunks, None)
    assert short == read_all(chunks, _read_chat)
    texts = short[0]
    assert texts[1] == "Hi" and type(texts[2]) is not str and texts[3] == "!"
    assert short[1].completion_tokens == 3 and short[2] == "stop"
