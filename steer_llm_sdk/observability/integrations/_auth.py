"""Checks shared by the web integrations' endpoints. No framework imports."""

import hmac
from typing import Optional


def bearer_matches(header: Optional[str], token: str) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <token>`` (compared in constant
    time, so a scrape cannot learn the token byte by byte)."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )
