"""Local token counting: the real BPE tokenizer offline, and the heuristic when none loads."""

import subprocess
import sys
import textwrap

from support.paths import ROOT

from steer_llm_sdk.streaming.tokens import (
    STAND_IN_CONFIDENCE,
    TOKENIZER_CONFIDENCE,
    count_messages,
    count_text,
    encoding_name,
)


def test_encodings_by_model():
    assert encoding_name("gpt-4o-mini") == "o200k_base"
    assert encoding_name("o3-mini") == "o200k_base"
    assert encoding_name("gpt-4") == "cl100k_base"
    assert encoding_name("claude-3-5-haiku") is None


def test_real_tokenizer_counts_offline():
    counted = count_text("Hello world, this is a test.", "gpt-4o")
    assert counted.method == "tokenizer" and counted.confidence == TOKENIZER_CONFIDENCE
    assert counted.tokens == 8  # o200k_base: Hello| world|,| this| is| a| test|.
    stand_in = count_text("Hello world", "claude-3-5-haiku")
    assert stand_in.method == "tokenizer" and stand_in.confidence == STAND_IN_CONFIDENCE


def test_messages_include_chat_framing():
    one = count_messages([{"role": "user", "content": "hi"}], "gpt-4o")
    # 3 per message + 3 for the reply + "user" + "hi"
    assert one.tokens == 3 + 3 + 1 + 1


def test_heuristic_when_no_tokenizer_can_load():
    script = textwrap.dedent("""
        import sys
        sys.modules["bpe_openai"] = None   # not installed
        sys.modules["tiktoken"] = None
        from steer_llm_sdk.streaming.tokens import count_text
        print(tuple(count_text("x" * 41, "gpt-4o")))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    ).stdout
    assert out.strip() == "(11, 'heuristic', 0.5)"
