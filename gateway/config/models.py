"""Pydantic models of `portcullis.yaml`.

Every model forbids unknown keys (a typo is an error, not a silently ignored
setting) and is frozen (a snapshot never changes under a running call).
Relative paths are resolved against the config file's folder by the loader.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=0, le=65535)
    path: str = "/mcp"
    public_url: str | None = None
    """The URL clients use, when it differs from http://host:port (behind a proxy)."""


class ApiKey(_Model):
    """An HTTP bearer key, stored as the SHA-256 of the key, never the key itself."""

    subject: str = Field(min_length=1)
    sha256: str
    description: str = ""

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        value = value.strip().lower()
        if not _SHA256_HEX.match(value):
            raise ValueError("must be the 64-character hex SHA-256 of the key, not the key itself")
        return value


class IdentityConfig(_Model):
    default_subject: str | None = None
    """The stdio caller when neither --as nor PORTCULLIS_SUBJECT is given."""
    api_keys: tuple[ApiKey, ...] = ()


class PolicyConfig(_Model):
    model: Path = Path("policies/model.conf")
    rules: Path = Path("policies/policy.csv")


class PythonToolsConfig(_Model):
    path: Path = Path("tools")
    settings: dict[str, Any] = Field(default_factory=dict)
    """Free-form settings handed to tools through `ToolContext.settings`."""


class ToolOverride(_Model):
    timeout_seconds: float | None = Field(default=None, gt=0)


class ToolsConfig(_Model):
    python: tuple[PythonToolsConfig, ...] = (PythonToolsConfig(),)
    timeout_seconds: float = Field(default=30.0, gt=0)
    overrides: dict[str, ToolOverride] = Field(default_factory=dict)
    """Per-tool settings by full tool name (`crm.find_customer`)."""


class LimitsConfig(_Model):
    max_argument_bytes: int = Field(default=1024 * 1024, gt=0)
    max_argument_depth: int = Field(default=32, gt=0, le=1000)
    max_result_bytes: int = Field(default=1024 * 1024, gt=0)


_DEFAULT_SECRET_KEYS = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "credential",
    "private_key",
    "access_key",
    "client_secret",
)


class AuditConfig(_Model):
    path: Path = Path("audit/audit.db")
    salt: str | None = None
    """Salt for hashing secret argument values; generated and kept in the database if unset."""
    secret_keys: tuple[str, ...] = _DEFAULT_SECRET_KEYS
    """Argument keys whose values are replaced by a salted hash (substring, case-insensitive)."""


class GatewayConfig(_Model):
    """The whole deployment. `root` is the folder of the config file."""

    name: str = "portcullis"
    root: Path = Path(".")
    server: ServerConfig = ServerConfig()
    identity: IdentityConfig = IdentityConfig()
    policy: PolicyConfig = PolicyConfig()
    tools: ToolsConfig = ToolsConfig()
    limits: LimitsConfig = LimitsConfig()
    audit: AuditConfig = AuditConfig()

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else (self.root / path).resolve()

    def tool_timeout(self, tool: str, declared: float | None) -> float:
        override = self.tools.overrides.get(tool)
        if override is not None and override.timeout_seconds is not None:
            return override.timeout_seconds
        return declared if declared is not None else self.tools.timeout_seconds
