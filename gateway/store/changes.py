"""The state changes that commit in one transaction with an audit record.

A service never writes SQL: it asks a store for a change (`plan_runs.finish(...)`) and hands
it to the audit log with the record that tells of it (`audit.append(record, [change])`). The
change is opaque to the service; the audit log of the same backend runs it inside the
record's transaction, so a state and its history never disagree. A backend builds its own
SQL (SQLite's `?` placeholders here, PostgreSQL's `%s` there), and the log refuses a change
built for another backend rather than running SQL meant for a different database.

`Statement` is the low-level form: one SQL write, optionally a compare-and-swap. A store's
`Change` is a tuple of them; the audit log accepts bare statements too (the approval
service's, until it has a store of its own).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Statement:
    """A write that must commit in the same transaction as its audit record.

    With `expect_rows`, the statement is a compare-and-swap: if it changes another number
    of rows, the record and its statements are rolled back and the append raises `StaleState`.
    """

    sql: str
    params: Sequence[Any] = ()
    expect_rows: int | None = None


@dataclass(frozen=True)
class Change:
    """What a store wants written with an audit record; built by the store, run by the audit log."""

    statements: tuple[Statement, ...]
    dialect: str
    """The backend whose audit log may run it (`sqlite`, `postgresql`)."""
    what: str = ""
    """What it does, for error messages (`finish plan run 01J...`)."""

    @classmethod
    def of(cls, dialect: str, what: str, *statements: Statement) -> Change:
        return cls(tuple(statements), dialect, what)


def statements_of(changes: Iterable[Change | Statement], dialect: str) -> list[Statement]:
    """The statements to run, in order; a change built for another backend is a wiring fault."""
    flat: list[Statement] = []
    for change in changes:
        if isinstance(change, Statement):
            flat.append(change)
        elif change.dialect != dialect:
            raise TypeError(f"a {change.dialect} change ({change.what}) cannot commit with a {dialect} audit log")
        else:
            flat.extend(change.statements)
    return flat
