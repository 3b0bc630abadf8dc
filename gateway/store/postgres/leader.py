"""Which replica does the work one replica should do (signing checkpoints): the holder of an advisory lock.

A session-level `pg_try_advisory_lock` on a connection of this process's own: the first replica to
ask holds it for as long as its connection lives; when that replica dies, PostgreSQL ends its session
and frees the lock, and another replica takes over at its next turn. Nothing to configure, no clock.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio.to_thread
import psycopg

from gateway.store.postgres.connect import redact

logger = logging.getLogger(__name__)

CHECKPOINTS = 0x706F7274_63686B70  # "portchkp": the lock's key, the same in every replica
"""The advisory lock whose holder signs the periodic checkpoints."""


class PgLeader:
    """`await leader.is_mine()`: True while this process holds the lock `key` (taking it if it is free)."""

    def __init__(self, dsn: str, key: int = CHECKPOINTS, connect_timeout: float = 5.0) -> None:
        self._dsn = dsn
        self._key = key
        self._connect_timeout = connect_timeout
        self._connection: psycopg.Connection[Any] | None = None
        self._held = False

    async def is_mine(self) -> bool:
        return await anyio.to_thread.run_sync(self._take)

    async def release(self) -> None:
        await anyio.to_thread.run_sync(self._close)

    def _take(self) -> bool:
        try:
            if self._connection is not None and not self._connection.closed:
                self._connection.execute("SELECT 1")  # still alive, so still holding what it held
                return self._held
            self._connection = psycopg.connect(
                self._dsn,
                autocommit=True,
                connect_timeout=max(1, round(self._connect_timeout)),
                application_name="portcullis-leader",
            )
            row = self._connection.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
            self._held = bool(row and row[0])
            if not self._held:
                self._close()  # ask again next turn, on a fresh connection
            return self._held
        except psycopg.Error as exc:
            logger.warning("cannot tell whether this replica signs checkpoints (%s): %s", redact(self._dsn), exc)
            self._close()
            return False

    def _close(self) -> None:
        connection, self._connection, self._held = self._connection, None, False
        if connection is not None:
            connection.close()
