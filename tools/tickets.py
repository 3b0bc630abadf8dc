"""Acme's support tickets."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from gateway import ToolContext, tool

from ._acme import database

Priority = Literal["low", "normal", "high", "urgent"]
Status = Literal["open", "pending", "closed"]


class Ticket(BaseModel):
    id: int
    customer_id: str
    subject: str
    body: str
    priority: Priority
    status: Status
    created_by: str
    created_at: str


class Tickets(BaseModel):
    tickets: list[Ticket]


@tool(destructive=False, open_world=False)
def create(
    customer_id: str = Field(pattern=r"^C\d{3,}$"),
    subject: str = Field(min_length=1, max_length=200),
    body: str = Field(min_length=1, max_length=20_000),
    priority: Priority = "normal",
    *,
    ctx: ToolContext,
) -> Ticket:
    """Open a support ticket for a customer."""
    with database(ctx) as db:
        if db.execute("SELECT 1 FROM customers WHERE id = ?", (customer_id,)).fetchone() is None:
            raise LookupError(f"no customer {customer_id}")
        cursor = db.execute(
            "INSERT INTO tickets (customer_id, subject, body, priority, created_by) VALUES (?, ?, ?, ?, ?)",
            (customer_id, subject, body, priority, ctx.subject),
        )
        row = db.execute("SELECT * FROM tickets WHERE id = ?", (cursor.lastrowid,)).fetchone()
    return Ticket(**dict(row))


@tool(name="list", read_only=True, open_world=False)
def list_tickets(customer_id: str | None = None, status: Status | None = None, *, ctx: ToolContext) -> Tickets:
    """List tickets, optionally for one customer and/or in one status (newest first)."""
    clauses, params = [], []
    if customer_id is not None:
        clauses.append("customer_id = ?")
        params.append(customer_id)
    if status is not None:
        clauses.append("status = ?")
        params.append(status)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    with database(ctx) as db:
        rows = db.execute(f"SELECT * FROM tickets {where} ORDER BY id DESC LIMIT 100", params).fetchall()
    return Tickets(tickets=[Ticket(**dict(row)) for row in rows])
