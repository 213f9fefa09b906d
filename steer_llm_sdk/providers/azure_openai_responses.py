"""Azure OpenAI's Responses API: :mod:`.openai_responses` at an Azure resource, for
``SteerLLMClient(azure_endpoint=..., openai_api="responses")``.

``POST {endpoint}/openai/v1/responses`` (``api_version="v1"``) or
``{endpoint}/openai/responses?api-version=...``; the deployment is named by the body's
``model``; credentials as in :mod:`.azure_openai`.
"""

from typing import Any, Callable
from urllib.parse import quote

from ..streaming.sse import ServerSentEvent
from . import azure_openai, openai_responses
from .base import Parsed

NAME = azure_openai.NAME
DEFAULT_BASE_URL = ""
STREAM_SHAPE = "responses"
headers = azure_openai.headers
describe_error = openai_responses.describe_error
request_body = openai_responses.request_body
parse_response: Callable[[Any], Parsed] = azure_openai.as_azure(openai_responses.parse_response)
decode_event: Callable[[ServerSentEvent], Any] = azure_openai.as_azure(
    openai_responses.decode_event
)
raise_for_chunk: Callable[[Any], None] = azure_openai.as_azure(openai_responses.raise_for_chunk)


def base_url(endpoint: str, api_version: str = azure_openai.DEFAULT_API_VERSION) -> str:
    if api_version == "v1":
        return f"{endpoint.rstrip('/')}/openai/v1/responses"
    return f"{endpoint.rstrip('/')}/openai/responses?api-version={quote(api_version)}"


def url(base_url: str, model: str = "") -> str:
    return base_url
