"""Closing the official SDKs' clients that tests make, and finding the ones left open.

Each client keeps a pool of connections (httpx for openai, anthropic and google-genai,
urllib3 for boto3) open to the test's local server until it is closed. The clients sit in
reference cycles, so one left open is freed only by a garbage collection, which closes its
sockets quietly or fails whatever test it happens to run in with ``ResourceWarning:
unclosed socket``, depending on the order in which it finalizes the cycle's objects.
conftest.py therefore looks for clients left open at the end of each module
(:func:`open_clients`) instead of waiting for that warning.
"""

import gc
import sys
from contextlib import contextmanager
from itertools import compress
from typing import Any, Iterator, List, Set


def close_client(client: Any) -> None:
    """Close one client of openai (``AzureOpenAI`` too), anthropic (``AnthropicBedrock``
    too), google-genai or boto3: each has ``close()``, except google-genai releases from
    before it came, whose sync httpx client is closed instead. (google-genai's ``close()``
    leaves the async client of ``client.aio`` open; no test makes requests with it.)"""
    close = getattr(client, "close", None)
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
    for name in ("openai", "anthropic"):
        if name in sys.modules:
            bases.append(sys.modules[f"{name}._base_client"].SyncAPIClient)
    if "google.genai" in sys.modules:
        bases.append(sys.modules["google.genai"].Client)
    if "botocore.client" in sys.modules:
        bases.append(sys.modules["botocore.client"].BaseClient)
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
