"""Acme's CRM: find, read and delete customers."""

from __future__ import annotations

from pydantic import BaseModel, Field

from gateway import ToolContext, tool

from ._acme import database


class Customer(BaseModel):
    id: str
    name: str
    email: str
    tier: str
    balance: float


class Customers(BaseModel):
    customers: list[Customer]


class Deleted(BaseModel):
    deleted: bool
    customer_id: str


@tool(read_only=True, open_world=False)
def find_customer(query: str = Field(min_length=1, max_length=200), *, ctx: ToolContext) -> Customers:
    """Find customers whose name or email contains the query (case-insensitive)."""
    pattern = f"%{query}%"
    with database(ctx) as db:
        rows = db.execute(
            "SELECT * FROM customers WHERE name LIKE ? OR email LIKE ? ORDER BY id", (pattern, pattern)
        ).fetchall()
    return Customers(customers=[Customer(**dict(row)) for row in rows])


@tool(read_only=True, open_world=False)
def get_customer(customer_id: str = Field(pattern=r"^C\d{3,}$"), *, ctx: ToolContext) -> Customer:
    """Read one customer by id (C001)."""
    with database(ctx) as db:
        row = db.execute("SELECT * FROM customers WHERE id = ?", (customer_id,)).fetchone()
    if row is None:
        raise LookupError(f"no customer {customer_id}")
    return Customer(**dict(row))


@tool(destructive=True, idempotent=True, open_world=False)
def delete_customer(customer_id: str = Field(pattern=r"^C\d{3,}$"), *, ctx: ToolContext) -> Deleted:
    """Delete a customer and everything filed under them. Irreversible."""
    with database(ctx) as db:
        deleted = db.execute("DELETE FROM customers WHERE id = ?", (customer_id,)).rowcount > 0
        db.execute("DELETE FROM tickets WHERE customer_id = ?", (customer_id,))
    return Deleted(deleted=deleted, customer_id=customer_id)
