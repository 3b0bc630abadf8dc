"""Changes other replicas commit, heard as they commit: `LISTEN` on a connection of this process's own.

Every change of an approval request carries a `pg_notify` (postgres/approvals.py), which PostgreSQL
delivers to every listener only once the deciding transaction commits. A replica hears it here and
wakes the request's waiters and its queue worker at once, instead of at their next poll. The polls
stay as the backstop: a notice lost while the connection was down is made up for by the next poll,
and on every (re)connect this wakes everyone once, so nothing waits for a notice it missed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import psycopg

from gateway.store.postgres.connect import redact

logger = logging.getLogger(__name__)

NOTICES = "portcullis_approvals"
"""The channel a committed change of an approval request is announced on, its id as the payload."""
EVERYTHING = "*"
"""What `changed` is given after a (re)connect: anything may have moved meanwhile."""


class PgNotices:
    """Listens for approval changes on `dsn`; `watch` runs until cancelled, reconnecting as needed."""

    def __init__(self, dsn: str, connect_timeout: float = 5.0, retry_seconds: float = 1.0) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._retry_seconds = retry_seconds

    async def watch(self, changed: Callable[[str], None]) -> None:
        """Call `changed(request_id)` for each change committed by any process (this one too)."""
        while True:
            try:
                connection = await psycopg.AsyncConnection.connect(
                    self._dsn,
                    autocommit=True,
                    connect_timeout=max(1, round(self._connect_timeout)),
                    application_name="portcullis-notices",
                )
                async with connection:
                    await connection.execute(f"LISTEN {NOTICES}")
                    changed(EVERYTHING)
                    async for notice in connection.notifies():
                        changed(notice.payload)
            except (psycopg.Error, OSError) as exc:
                logger.warning(
                    "not hearing approval changes from %s (%s); polling until reconnected", redact(self._dsn), exc
                )
            await anyio.sleep(self._retry_seconds)
