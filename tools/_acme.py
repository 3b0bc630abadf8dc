"""The Acme demo's data: a small SQLite database created (and seeded) on first use.

Not a tool module (the leading underscore): helpers shared by the demo tools.
The database lives where `settings.database` in portcullis.yaml points and is
never committed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from gateway import ToolContext

SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, tier TEXT NOT NULL, balance REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL,
    priority TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'open', created_by TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS refunds (
    id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id TEXT NOT NULL, amount REAL NOT NULL, reason TEXT NOT NULL,
    issued_by TEXT NOT NULL, created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, recipient TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL,
    sent_by TEXT NOT NULL, created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"""

CUSTOMERS = [
    ("C001", "Ada Lovelace", "ada@lovelace.example", "gold", 1250.00),
    ("C002", "Grace Hopper", "grace@hopper.example", "platinum", 8400.50),
    ("C003", "Alan Turing", "alan@turing.example", "silver", 310.25),
    ("C004", "Katherine Johnson", "katherine@johnson.example", "gold", 2045.00),
    ("C005", "Edsger Dijkstra", "edsger@dijkstra.example", "bronze", 75.10),
]


@contextmanager
def database(ctx: ToolContext) -> Iterator[sqlite3.Connection]:
    path = ctx.path(ctx.settings.get("database", "data/acme.db"))
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=10.0)
    connection.row_factory = sqlite3.Row
    try:
        connection.executescript(SCHEMA)
        connection.executemany("INSERT OR IGNORE INTO customers VALUES (?, ?, ?, ?, ?)", CUSTOMERS)
        with connection:
            yield connection
    finally:
        connection.close()
