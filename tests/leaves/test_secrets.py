"""Credential redaction."""

from steer_llm_sdk._secrets import mask_key, redact


def test_known_key_shapes_are_redacted():
    text = (
        "sk-proj-AbCdEfGhIjKlMnOp sk-ant-api03-abcdefghijkl Bearer abcdefghijklmnop "
        "api_key=supersecretvalue123 x-api-key: 'anothersecret99'"
    )
    out = redact(text)
    for secret in ("AbCdEfGh", "api03", "abcdefghijklmnop", "supersecret", "anothersecret"):
        assert secret not in out
    assert "api_key=[REDACTED]" in out and "Bearer [REDACTED]" in out


def test_literal_secrets_and_harmless_text():
    assert redact("token zz-9999-weird", secrets=["zz-9999-weird"]) == "token [REDACTED]"
    assert redact("model gpt-4o-mini not found") == "model gpt-4o-mini not found"
    assert mask_key("sk-abc") == "<set>" and mask_key(None) == "<unset>"
