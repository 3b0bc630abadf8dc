"""HTTP identity: bearer API keys, checked against the SHA-256 hashes in config.

The key itself is never stored; a request without a valid key gets 401 from
the SDK's bearer middleware before it reaches the MCP layer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from mcp.server.auth.provider import AccessToken

from gateway.config import ApiKey


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyVerifier:
    """The SDK's `TokenVerifier` for API keys: the token's hash maps to a subject.

    `keys` is asked on every request, so keys added or revoked by a config reload apply at once.
    """

    def __init__(self, keys: Callable[[], tuple[ApiKey, ...]]) -> None:
        self._keys = keys

    async def verify_token(self, token: str) -> AccessToken | None:
        digest = hash_key(token)
        key = next((key for key in self._keys() if key.sha256 == digest), None)
        if key is None:
            return None
        claims = {"auth": "api_key", "tenant": key.tenant}
        return AccessToken(token=token, client_id=key.subject, scopes=[], subject=key.subject, claims=claims)
