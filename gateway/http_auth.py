"""HTTP identity: bearer API keys, checked against the SHA-256 hashes in config.

The key itself is never stored; a request without a valid key gets 401 from
the SDK's bearer middleware before it reaches the MCP layer.
"""

from __future__ import annotations

import hashlib

from mcp.server.auth.provider import AccessToken

from gateway.config import ApiKey


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyVerifier:
    """The SDK's `TokenVerifier` for API keys: the token's hash maps to a subject."""

    def __init__(self, keys: tuple[ApiKey, ...]) -> None:
        self._keys = {key.sha256: key for key in keys}

    async def verify_token(self, token: str) -> AccessToken | None:
        key = self._keys.get(hash_key(token))
        if key is None:
            return None
        claims = {"auth": "api_key", "tenant": key.tenant}
        return AccessToken(token=token, client_id=key.subject, scopes=[], subject=key.subject, claims=claims)
