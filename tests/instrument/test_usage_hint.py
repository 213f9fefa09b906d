"""A stream that ends without the provider's usage (an OpenAI chat stream without
``stream_options.include_usage``) says once, in the library's log, which option fixes it.
Each case runs in a fresh interpreter: the hint is once per process."""

import os
import sys
import textwrap

from support import spawn

SCRIPT = textwrap.dedent("""
    import logging, sys
    import openai
    from steer_llm_sdk.observability import MetricsConfig, instrument
    from steer_llm_sdk.testing import LocalLLMServer, capture_metrics

    lines = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    logging.getLogger("steer_llm_sdk").addHandler(Keep())
    include = sys.argv[1] == "with-usage"
    instrument("openai")
    with LocalLLMServer() as server, capture_metrics(MetricsConfig(flush_on_exit=False)) as sink:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0)
        for _ in range(3):
            options = {"stream_options": {"include_usage": True}} if include else {}
            for _chunk in client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True,
                **options,
            ):
                pass
        client.close()
    hints = [line for line in lines if "include_usage" in line]
    print(len(hints), len([r for r in sink.get_metrics() if r.metric_type == "request"]))
""")


def _run(mode: str) -> str:
    proc = spawn.run(
        [sys.executable, "-c", SCRIPT, mode],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_a_stream_without_usage_names_the_option_once():
    assert _run("without-usage") == "1 3"  # three streams, one hint


def test_a_stream_with_usage_says_nothing():
    assert _run("with-usage") == "0 3"
