"""Acme's outgoing email. Messages go to an outbox table: nothing leaves the machine."""

from __future__ import annotations

from pydantic import BaseModel, Field

from gateway import ToolContext, tool

from ._acme import database


class Queued(BaseModel):
    message_id: int
    to: str
    status: str


@tool(destructive=False, open_world=True)
def send(
    to: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320),
    subject: str = Field(min_length=1, max_length=200),
    body: str = Field(min_length=1, max_length=50_000),
    *,
    ctx: ToolContext,
) -> Queued:
    """Send an email (queued in the demo outbox)."""
    with database(ctx) as db:
        cursor = db.execute(
            "INSERT INTO outbox (recipient, subject, body, sent_by) VALUES (?, ?, ?, ?)",
            (to, subject, body, ctx.subject),
        )
    return Queued(message_id=cursor.lastrowid or 0, to=to, status="queued")
