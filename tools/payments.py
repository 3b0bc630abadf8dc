"""Acme's payments: refunds to a customer's account."""

from __future__ import annotations

from pydantic import BaseModel, Field

from gateway import ToolContext, tool

from ._acme import database


class Refund(BaseModel):
    refund_id: int
    customer_id: str
    amount: float
    new_balance: float


@tool(destructive=False, idempotent=False, open_world=True)
def refund(
    customer_id: str = Field(pattern=r"^C\d{3,}$"),
    amount: float = Field(gt=0, le=1_000_000),
    reason: str = Field(min_length=1, max_length=500),
    *,
    ctx: ToolContext,
) -> Refund:
    """Refund an amount (in EUR) to a customer's account."""
    with database(ctx) as db:
        if db.execute("SELECT 1 FROM customers WHERE id = ?", (customer_id,)).fetchone() is None:
            raise LookupError(f"no customer {customer_id}")
        cursor = db.execute(
            "INSERT INTO refunds (customer_id, amount, reason, issued_by) VALUES (?, ?, ?, ?)",
            (customer_id, amount, reason, ctx.subject),
        )
        db.execute("UPDATE customers SET balance = balance + ? WHERE id = ?", (amount, customer_id))
        balance = db.execute("SELECT balance FROM customers WHERE id = ?", (customer_id,)).fetchone()[0]
    return Refund(refund_id=cursor.lastrowid or 0, customer_id=customer_id, amount=amount, new_balance=balance)
