"""What Azure OpenAI answers differently on its ``/openai/...`` paths (the OpenAI protocols
otherwise): the model behind the deployment, and its content filter's shapes."""

from typing import Any, Dict

#: Azure OpenAI's content-filter results (every category checked, one filtered).
FILTER_RESULTS = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": True, "severity": "high"},
}
#: Azure OpenAI's answer to a prompt its filter refuses.
FILTERED_PROMPT = {
    "error": {
        "message": "The response was filtered due to the prompt triggering the content "
        "management policy.",
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": FILTER_RESULTS,
        },
    }
}


def answering_model(path: str, body: Dict[str, Any], azure_model: str) -> str:
    """The model an answer names: a deployment answers with the model behind it, not its own
    name (nor the request's)."""
    if path.startswith("/openai/"):
        return azure_model
    return str(body.get("model") or "unknown")
