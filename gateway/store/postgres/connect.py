"""Connections to the shared PostgreSQL database: one pool per process, opened from the configured DSN.

The DSN comes from the environment (`dsn: ${PORTCULLIS_DATABASE_URL}`), so it may hold a password:
`redact` is what messages and logs show. Every connection carries timeouts, so a locked row or a
stuck server makes a call fail (closed, `StoreBusy`/`StoreUnavailable`) rather than hang, and is
checked when taken from the pool, so a server restart costs one reconnect rather than one error.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import conninfo
from psycopg_pool import ConnectionPool

from gateway.store.errors import StoreUnavailable
from gateway.store.postgres.errors import pg_errors


@dataclass(frozen=True)
class PoolSettings:
    """How a process talks to the database; the defaults suit a replica serving agents."""

    min_size: int = 1
    max_size: int = 8
    connect_timeout: float = 5.0
    """Seconds to reach the server before it counts as unavailable."""
    wait_timeout: float = 5.0
    """Seconds a statement waits for a pool connection, or for a row lock, before the store is busy."""
    statement_timeout: float = 30.0
    """Seconds any one statement may run."""
    application_name: str = "portcullis"


def redact(dsn: str) -> str:
    """`dsn` with its password hidden, for messages and logs; the DSN itself if it cannot be parsed."""
    try:
        parts = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<a connection string that cannot be parsed>"
    if "password" in parts:
        parts["password"] = "***"
    return conninfo.make_conninfo(**{k: str(v) for k, v in parts.items() if v is not None})


def check_dsn(dsn: str) -> None:
    """Raise `StoreUnavailable` naming the fault if `dsn` is not a libpq connection string or URL."""
    try:
        conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise StoreUnavailable(f"the database DSN cannot be parsed: {exc}", str(exc)) from exc


def new_pool(dsn: str, settings: PoolSettings | None = None) -> ConnectionPool:
    """A pool on `dsn`, not yet connected (`start` connects it): stores are built before they are opened."""
    settings = settings or PoolSettings()
    check_dsn(dsn)
    options = (
        f"-c lock_timeout={int(settings.wait_timeout * 1000)}"
        f" -c statement_timeout={int(settings.statement_timeout * 1000)}"
        " -c idle_in_transaction_session_timeout=60000"
    )
    return ConnectionPool(
        dsn,
        min_size=settings.min_size,
        max_size=settings.max_size,
        timeout=settings.wait_timeout,
        open=False,
        check=ConnectionPool.check_connection,
        kwargs={
            "connect_timeout": max(1, round(settings.connect_timeout)),
            "application_name": settings.application_name,
            "options": options,
            "autocommit": True,
        },
        name="portcullis",
    )


def start(pool: ConnectionPool, dsn: str, timeout: float = 5.0) -> None:
    """Connect `pool` on `dsn` (its first connection made, so a wrong DSN or a server that is down fails here)."""
    try:
        with pg_errors(f"cannot connect to the database at {redact(dsn)}"):
            pool.open(wait=True, timeout=timeout)
    except BaseException:
        pool.close()  # else its threads keep trying to connect
        raise


def open_pool(dsn: str, settings: PoolSettings | None = None) -> ConnectionPool:
    """An open pool on `dsn`, its first connection made."""
    settings = settings or PoolSettings()
    pool = new_pool(dsn, settings)
    start(pool, dsn, settings.connect_timeout)
    return pool
