"""Pooled HTTP sessions per provider, and the one place requests are sent."""

import json
import threading
from typing import Any, Dict, Optional, Tuple

import requests
from requests.adapters import HTTPAdapter

from ..errors import ProviderError
from ..observability.lifecycle import CLIENTS, on_fork
from ..providers import PROTOCOLS
from ..providers._http import error_from_response, read_body, translate_requests_error


class Transport:
    """Sends requests for a client: one pooled ``requests.Session`` per provider.

    Args:
        keys: provider -> API key (or None).
        base_urls: provider -> base URL.
        timeout: seconds to connect and between bytes read.
        version: the ``anthropic-version`` header.
        pool_size: pooled connections per provider.

    Thread-safe. After ``os.fork()`` the child starts with empty pools (the parent's
    sockets must not be shared).
    """

    def __init__(
        self,
        keys: Dict[str, Optional[str]],
        base_urls: Dict[str, str],
        timeout: float,
        version: str,
        pool_size: int,
    ) -> None:
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
        """The configured keys, for redaction."""
        return tuple(k for k in self.keys.values() if k)

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

    def post(self, provider: str, body: Dict[str, Any], stream: bool) -> requests.Response:
        """POST to the provider.

        Raises:
            SteerLLMError: the mapped error of a failed request or of an error status.
        """
        protocol = PROTOCOLS[provider]
        try:
            response = self.session(provider).post(
                protocol.url(self.base_urls[provider]),
                data=json.dumps(body).encode("utf-8"),
                headers=protocol.headers(self.keys[provider], self.version),
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
            )
        return response

    def post_json(self, provider: str, body: Dict[str, Any]) -> Tuple[requests.Response, Any]:
        """POST and decode the JSON answer.

        Raises:
            SteerLLMError: as :meth:`post`; ``ProviderError`` for a body that is not JSON.
        """
        response = self.post(provider, body, stream=False)
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
