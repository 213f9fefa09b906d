"""Views that call the LLM client (against a local server unless STEER_LLM_BASE_URL is set)."""

import os
from typing import Optional

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.observability import get_collector

_client: Optional[SteerLLMClient] = None


def client() -> SteerLLMClient:
    global _client
    if _client is None:
        base = os.environ.get("STEER_LLM_BASE_URL")
        if not base:
            from steer_llm_sdk.testing import LocalLLMServer

            base = LocalLLMServer(ttft_ms=20).start().url
        _client = SteerLLMClient(
            metrics_collector=get_collector(),
            openai_api_key="local",
            anthropic_api_key="local",
            openai_base_url=base + "/v1",
            anthropic_base_url=base,
        )
    return _client


@csrf_exempt
def chat(request: HttpRequest, model: str) -> JsonResponse:
    if model == "boom":
        raise RuntimeError("the view failed")
    response = client().generate("hello from django", model=model)
    return JsonResponse({"text": response.text, "tokens": response.usage.total_tokens})
