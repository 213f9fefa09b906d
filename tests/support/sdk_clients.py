"""Closing the official SDKs' clients that tests make, and finding the ones left open.

Each client keeps a pool of connections (httpx for openai, anthropic, google-genai, groq
and cohere, httpx2 for mistralai, urllib3 for boto3) open to the test's local server until
it is closed. The clients sit in
reference cycles, so one left open is freed only by a garbage collection, which closes its
sockets quietly or fails whatever test it happens to run in with ``ResourceWarning:
unclosed socket``, depending on the order in which it finalizes the cycle's objects.
conftest.py therefore looks for clients left open at the end of each module
(:func:`open_clients`) instead of waiting for that warning.

:func:`local_sdk_clients` makes one client of each SDK for a LocalLLMServer, and
:func:`vertex_client` a google-genai client of Vertex AI for one; :func:`official_sdks`
imports the four SDKs, or skips the calling module.
"""

import gc
import sys
from contextlib import contextmanager
from itertools import compress
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple


def official_sdks() -> Tuple[Any, Any, Any, Any]:
    """``(openai, anthropic, google.genai, boto3)``; at a module's top level, skips the
    module when one is not installed."""
    import pytest

    return (
        pytest.importorskip("openai"),
        pytest.importorskip("anthropic"),
        pytest.importorskip("google.genai"),
        pytest.importorskip("boto3"),
    )


def local_sdk_clients(
    url: str,
    *,
    openai_key: str = "test",
    anthropic_key: str = "test",
    gemini_key: str = "test",
    aws_access_key: str = "test",
    aws_secret_key: str = "test",
    aws_session_token: Optional[str] = None,
    azure_key: Optional[str] = None,
) -> Dict[str, Any]:
    """A client of each official SDK (``openai``, ``anthropic``, ``gemini``, ``bedrock``, and
    ``azure`` when ``azure_key`` is given) speaking to the LocalLLMServer at ``url``, none of
    them retrying; the caller closes them (``closing(*clients.values())``)."""
    import anthropic
    import boto3
    import openai
    from botocore.config import Config
    from google import genai
    from google.genai import types

    clients: Dict[str, Any] = {
        "openai": openai.OpenAI(base_url=url + "/v1", api_key=openai_key, max_retries=0),
        "anthropic": anthropic.Anthropic(base_url=url, api_key=anthropic_key, max_retries=0),
        "gemini": genai.Client(
            api_key=gemini_key,
            http_options=types.HttpOptions(base_url=url + "/", api_version="v1beta"),
        ),
        "bedrock": boto3.client(
            "bedrock-runtime",
            region_name="us-east-1",
            endpoint_url=url,
            aws_access_key_id=aws_access_key,
            aws_secret_access_key=aws_secret_key,
            aws_session_token=aws_session_token,
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        ),
    }
    if azure_key is not None:
        clients["azure"] = openai.AzureOpenAI(
            azure_endpoint=url, api_key=azure_key, api_version="2024-10-21", max_retries=0
        )
    return clients


#: The OAuth access token :func:`vertex_client` gives google-genai in place of Google's.
VERTEX_TOKEN = "stand-in"


def vertex_client(url: str, project: str, location: str, api_version: str = "v1beta1") -> Any:
    """A google-genai client of Vertex AI (``vertexai=True``) for ``project`` in
    ``location``, speaking ``api_version`` to the LocalLLMServer at ``url``, so that its
    requests go to ``/{api_version}/projects/{project}/locations/{location}/publishers/
    google/models/...``. Its Google credential is a stand-in: an access token
    (:data:`VERTEX_TOKEN`) without an expiry, which the SDK sends as a bearer token and
    never refreshes, so no request is made for a real one. The caller closes the client."""
    from google import genai
    from google.genai import types
    from google.oauth2.credentials import Credentials

    return genai.Client(
        vertexai=True,
        project=project,
        location=location,
        credentials=Credentials(token=VERTEX_TOKEN),
        http_options=types.HttpOptions(base_url=url + "/", api_version=api_version),
    )


def close_client(client: Any) -> None:
    """Close one client of openai (``AzureOpenAI`` too), anthropic (``AnthropicBedrock``
    too), google-genai, boto3, groq, mistralai or cohere: each has ``close()``, except
    mistralai's and cohere's, closed by leaving them as context managers, and google-genai
    releases from before it came, whose sync httpx client is closed instead. (google-genai's
    ``close()`` and mistralai's exit leave their async clients open; no test makes requests
    with them.)"""
    close = getattr(client, "close", None)
    if close is None and hasattr(type(client), "__exit__"):  # mistralai, cohere
        client.__exit__(None, None, None)
        return
    if close is None:
        close = client._api_client._httpx_client.close
    close()


def close_clients(*clients: Any) -> None:
    """Close every client, even when closing one of them fails (the first failure is
    raised once all are done)."""
    failures: List[BaseException] = []
    for client in clients:
        try:
            close_client(client)
        except Exception as failure:
            failures.append(failure)
    if failures:
        raise failures[0]


@contextmanager
def closing(*clients: Any) -> Iterator[None]:
    """``with closing(a, b):`` closes ``a`` and ``b`` when the block ends, however it ends
    (boto3's clients are not context managers, and a mapping of clients is closed with
    ``closing(*clients.values())``)."""
    try:
        yield
    finally:
        close_clients(*clients)


def _client_classes() -> Set[type]:
    """The SDKs' client classes, of the SDKs imported so far (a client of an SDK never
    imported cannot exist): their base classes and every subclass (boto3 makes one per
    service)."""
    bases: List[type] = []
    for name in ("openai", "anthropic", "groq"):
        if f"{name}._base_client" in sys.modules:
            bases.append(sys.modules[f"{name}._base_client"].SyncAPIClient)
    for module, name in (
        ("google.genai", "Client"),
        ("botocore.client", "BaseClient"),
        ("mistralai.client.sdk", "Mistral"),
        ("cohere.base_client", "BaseCohere"),  # Client, ClientV2 and the cloud ones
    ):
        if module in sys.modules:
            bases.append(getattr(sys.modules[module], name))
    classes: Set[type] = set()
    while bases:
        cls = bases.pop()
        if cls not in classes:
            classes.add(cls)
            bases.extend(cls.__subclasses__())
    return classes


def _is_open(client: Any) -> bool:
    is_closed = getattr(client, "is_closed", None)
    if is_closed is not None:  # openai, anthropic
        return not is_closed()
    api_client = getattr(client, "_api_client", None)
    if api_client is not None:  # google-genai
        httpx_client = getattr(api_client, "_httpx_client", None)
        return httpx_client is not None and not httpx_client.is_closed
    configuration = getattr(client, "sdk_configuration", None)
    if configuration is not None:  # mistralai: leaving the client drops its sync client
        return configuration.client is not None and not configuration.client.is_closed
    wrapper = getattr(client, "_client_wrapper", None)
    if wrapper is not None:  # cohere
        return not wrapper.httpx_client.httpx_client.is_closed
    # boto3: close() empties the pool manager, which holds a pool once a request was made
    manager = getattr(getattr(client._endpoint, "http_session", None), "_manager", None)
    return manager is not None and len(manager.pools) > 0


def open_clients() -> List[Any]:
    """The SDK clients that exist, reachable or not, and are not closed (a boto3 client
    counts once it has connected)."""
    classes = _client_classes()
    if not classes:
        return []
    everything = gc.get_objects()
    # By type(), not isinstance(), which would read __class__, which the openai module's
    # lazy proxies answer by making the module's default client; and in C, as this looks
    # through every object at the end of every module.
    found = list(compress(everything, map(classes.__contains__, map(type, everything))))
    del everything
    return [client for client in found if _is_open(client)]
