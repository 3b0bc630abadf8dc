"""The audit record: one pydantic model, one canonical JSON form, one chain hash."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.canonical import canonical_json


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class AuditRecord(BaseModel):
    """Who did what, what was decided and why, and what came of it.

    `seq`, `prev_hash` and `hash` are assigned by the writer when the record joins the chain.
    """

    model_config = ConfigDict(frozen=True)

    event: str
    """`tool.intent` (before execution), `tool.call` (the outcome), `gateway.start`, `gateway.stop`."""
    ts: str = Field(default_factory=utc_now)
    call_id: str | None = None
    subject: str | None = None
    tenant: str | None = None
    roles: tuple[str, ...] = ()
    auth: str | None = None
    """How the caller was identified: `stdio`, `api_key`, `cli`."""
    transport: str | None = None
    client_name: str | None = None
    client_version: str | None = None
    protocol_version: str | None = None
    session: str | None = None
    tool: str | None = None
    definition_hash: str | None = None
    arguments: Any = None
    arguments_digest: str | None = None
    decision: str | None = None
    rule: str | None = None
    policy_version: str | None = None
    findings: tuple[dict[str, Any], ...] = ()
    outcome: str | None = None
    message: str | None = None
    stage: str | None = None
    latency_ms: float | None = None
    result_digest: str | None = None
    result_bytes: int | None = None
    approval_id: str | None = None
    plan_run_id: str | None = None
    plan_step: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)

    def body(self, seq: int) -> str:
        """The canonical JSON that is hashed and stored; it includes the sequence number."""
        return canonical_json({"seq": seq, **self.model_dump(mode="json")})


def chain_hash(prev_hash: str, body: str) -> str:
    return sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def redact_arguments(value: Any, secret_keys: tuple[str, ...], salt: str, personal_keys: tuple[str, ...] = ()) -> Any:
    """Replace the values of secret-looking keys (substring match) and of personal-data keys (exact
    match) with a salted hash: comparable within one salt, not reversible. Forgetting the salt
    erases what the hashes could be linked to, while the chain still verifies."""
    lowered = tuple(key.lower() for key in secret_keys)
    personal = {key.lower() for key in personal_keys}

    def hidden(key: Any) -> bool:
        name = str(key).lower()
        return name in personal or any(s in name for s in lowered)

    def walk(item: Any) -> Any:
        if isinstance(item, dict):
            return {key: _salted(val, salt) if hidden(key) else walk(val) for key, val in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        return item

    return walk(value)


def _salted(value: Any, salt: str) -> str:
    return "hmac-sha256:" + hmac.new(salt.encode(), canonical_json(value).encode(), sha256).hexdigest()
