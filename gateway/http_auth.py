"""HTTP identity: bearer API keys (SHA-256 hashes in config) and JWTs from an identity provider.

The key itself is never stored; a request without a valid credential gets 401
(with `WWW-Authenticate` and the protected-resource metadata) from the SDK's
bearer middleware before it reaches the MCP layer. A JWT's signature, `exp`,
`nbf`, `iss` and `aud` are all checked: a token for another audience is refused.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from mcp.server.auth.provider import AccessToken

from gateway.config import ApiKey, IdentityConfig, JwtConfig

logger = logging.getLogger(__name__)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class BearerVerifier:
    """The SDK's `TokenVerifier`: API keys first, then JWTs when configured. Reads config on every request."""

    def __init__(
        self,
        identity: Callable[[], IdentityConfig],
        root: Path,
        on_failure: Callable[[str, str], None] | None = None,
    ) -> None:
        self._keys = ApiKeyVerifier(lambda: identity().api_keys)
        self._identity = identity
        self._root = root
        self._jwt: tuple[JwtConfig, JwtVerifier] | None = None
        self._on_failure = on_failure
        """Told (method, reason) of every refused credential, to audit it; never the credential itself."""

    async def verify_token(self, token: str) -> AccessToken | None:
        found = await self._keys.verify_token(token)
        if found is not None:
            return found
        config = self._identity().jwt
        if config is None or token.count(".") != 2:
            self._failed("api_key", "unknown key")
            return None
        if self._jwt is None or self._jwt[0] is not config:
            self._jwt = (config, JwtVerifier(config, self._root))
        verified = self._jwt[1].verify(token)
        if verified is None:
            self._failed("jwt", self._jwt[1].last_problem)
        return verified

    def _failed(self, method: str, reason: str) -> None:
        if self._on_failure is not None:
            self._on_failure(method, reason)


class JwtVerifier:
    def __init__(self, config: JwtConfig, root: Path) -> None:
        self._config = config
        self._key: Any = None
        self._jwks: jwt.PyJWKSet | None = None
        if config.public_key_file is not None:
            self._key = (root / config.public_key_file).read_text()
        elif config.jwks_file is not None:
            self._jwks = jwt.PyJWKSet.from_json((root / config.jwks_file).read_text())
        else:
            self._key = config.secret

    last_problem = ""

    def verify(self, token: str) -> AccessToken | None:
        config = self._config
        try:
            key = self._key
            if self._jwks is not None:
                kid = jwt.get_unverified_header(token).get("kid")
                key = next((k.key for k in self._jwks.keys if k.key_id == kid), None)
                if key is None:
                    self.last_problem = f"unknown key id {kid!r}"
                    logger.info("JWT refused: %s", self.last_problem)
                    return None
            claims = jwt.decode(
                token,
                key,
                algorithms=list(config.algorithms),
                audience=config.audience,
                issuer=config.issuer,
                leeway=config.leeway_seconds,
                options={"require": ["exp", "iss", "aud", config.subject_claim]},
            )
        except jwt.PyJWTError as exc:
            self.last_problem = f"{type(exc).__name__}: {exc}"
            logger.info("JWT refused: %s", self.last_problem)
            return None
        subject = claims.get(config.subject_claim)
        if not isinstance(subject, str) or not subject:
            self.last_problem = "no subject claim"
            return None
        roles = claims.get(config.roles_claim) if config.roles_claim else None
        granted = [f"{config.role_prefix}{r}" for r in roles if isinstance(r, str)] if isinstance(roles, list) else []
        tenant = claims.get(config.tenant_claim) if config.tenant_claim else None
        return AccessToken(
            token=token,
            client_id=str(claims.get("azp") or claims.get("client_id") or subject),
            scopes=str(claims.get("scope", "")).split(),
            expires_at=int(claims["exp"]),
            subject=subject,
            claims={"auth": "jwt", "tenant": tenant if isinstance(tenant, str) else None, "roles": granted},
        )


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
