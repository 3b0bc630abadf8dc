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
        self._subjects = {key.sha256: key.subject for key in keys}

    async def verify_token(self, token: str) -> AccessToken | None:
        subject = self._subjects.get(hash_key(token))
        if subject is None:
            return None
        return AccessToken(token=token, client_id=subject, scopes=[], subject=subject, claims={"auth": "api_key"})
