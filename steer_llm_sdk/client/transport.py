"""Pooled HTTP sessions per provider, and the one place requests are sent."""

import json
import threading
from typing import Any, Callable, Dict, Optional, Tuple, Union

import requests
from requests.adapters import HTTPAdapter

from .._secrets import request_texts, url_secrets
from ..errors import ProviderError
from ..observability.runtime import CLIENTS, on_fork
from ..providers import PROTOCOLS, WireProtocol
from ..providers.http import error_from_response, read_body, translate_requests_error


class Transport:
    """Sends requests for a client: one pooled ``requests.Session`` per provider.

    Args:
        keys: provider -> API key (or None), or a callable returning a bearer token (Azure
            OpenAI with Microsoft Entra ID), called for each request.
        base_urls: provider -> base URL.
        timeout: seconds to connect and between bytes read.
        version: the ``anthropic-version`` header.
        pool_size: pooled connections per provider.
        protocols: provider -> wire protocol (default: each provider's own).

    Thread-safe. After ``os.fork()`` the child starts with empty pools (the parent's
    sockets must not be shared).
    """

    def __init__(
        self,
        keys: Dict[str, Union[None, str, Callable[[], str]]],
        base_urls: Dict[str, str],
        timeout: float,
        version: str,
        pool_size: int,
        protocols: Optional[Dict[str, WireProtocol]] = None,
    ) -> None:
        self.protocols = dict(PROTOCOLS if protocols is None else protocols)
        self.keys = keys
        self.base_urls = base_urls
        self.timeout = timeout
        self.version = version
        self.pool_size = pool_size
        self._lock = threading.Lock()
        self._sessions: Dict[str, requests.Session] = {}
        self._closed = False
        on_fork(self, "_after_fork", CLIENTS)

    def secrets(self) -> Tuple[str, ...]:
        """The configured keys and the userinfo of the base URLs, for redaction (tokens
        from a provider are redacted by pattern: they travel as ``Bearer`` values)."""
        keys = tuple(k for k in self.keys.values() if isinstance(k, str) and k)
        return keys + tuple(s for url in self.base_urls.values() for s in url_secrets(url))

    def _credential(self, provider: str) -> Optional[str]:
        key = self.keys.get(provider)
        if callable(key):
            try:
                token = key()
            except Exception as exc:
                raise ProviderError(
                    f"the token provider for {provider} failed: {type(exc).__name__}",
                    provider=provider,
                ) from None
            return f"Bearer {token}"
        return key

    def session(self, provider: str) -> requests.Session:
        session = self._sessions.get(provider)
        if session is None:
            with self._lock:
                if self._closed:
                    raise ProviderError("client is closed", provider=provider)
                session = self._sessions.get(provider)
                if session is None:
                    session = requests.Session()
                    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self.pool_size)
                    session.mount("http://", adapter)
                    session.mount("https://", adapter)
                    self._sessions[provider] = session
        return session

    def post(
        self, provider: str, body: Dict[str, Any], stream: bool, model: str = ""
    ) -> requests.Response:
        """POST to the provider (``model`` names the deployment where the URL needs it).

        Raises:
            SteerLLMError: the mapped error of a failed request or of an error status.
        """
        protocol = self.protocols[provider]
        base_url = self.base_urls.get(provider)
        if not base_url:
            raise ProviderError(
                f"{provider} is not configured (no endpoint)", provider=provider, retryable=False
            )
        try:
            response = self.session(provider).post(
                protocol.url(base_url, model),
                data=json.dumps(body).encode("utf-8"),
                headers=protocol.headers(self._credential(provider), self.version),
                timeout=self.timeout,
                stream=stream,
            )
        except requests.RequestException as exc:
            raise translate_requests_error(exc, provider, self.secrets()) from exc
        if response.status_code >= 400:
            try:
                text = read_body(response)
            finally:
                response.close()
            raise error_from_response(
                response.status_code,
                text,
                response.headers,
                provider,
                protocol.describe_error,
                self.secrets(),
                request_texts(body),
            )
        return response

    def post_json(
        self, provider: str, body: Dict[str, Any], model: str = ""
    ) -> Tuple[requests.Response, Any]:
        """POST and decode the JSON answer.

        Raises:
            SteerLLMError: as :meth:`post`; ``ProviderError`` for a body that is not JSON.
        """
        response = self.post(provider, body, stream=False, model=model)
        try:
            return response, response.json()
        except ValueError as exc:
            raise ProviderError(
                f"{provider} returned a body that is not JSON",
                provider=provider,
                status_code=response.status_code,
            ) from exc
        finally:
            response.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._sessions = {}
