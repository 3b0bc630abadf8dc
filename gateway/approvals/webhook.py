"""Tell an approvers' webhook of a new pending request: a signed JSON POST, retried with backoff."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import anyio
import httpx

from gateway.canonical import canonical_json
from gateway.config.models import WebhookConfig


async def post_pending(webhook: WebhookConfig, payload: dict[str, Any]) -> str | None:
    """POST `payload` signed `X-Portcullis-Signature: sha256=HMAC(secret, body)`; None once delivered,
    else what went wrong on the last of `retries + 1` attempts."""
    body = canonical_json(payload).encode()
    signature = "sha256=" + hmac.new(webhook.secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "content-type": "application/json",
        "x-portcullis-event": "approval.pending",
        "x-portcullis-signature": signature,
    }
    problem = ""
    async with httpx.AsyncClient(timeout=webhook.timeout_seconds) as client:
        for attempt in range(webhook.retries + 1):
            try:
                response = await client.post(webhook.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    return None
                problem = f"HTTP {response.status_code}"
            if attempt < webhook.retries:
                await anyio.sleep(webhook.backoff_seconds * 2**attempt)
    return problem
