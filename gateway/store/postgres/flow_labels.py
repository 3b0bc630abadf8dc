"""Flow labels on PostgreSQL, shared by every replica: every line of their SQL lives here.

A private read on one replica and an external send on another are one flow: each replica
records what a session read here, and asks here before a call to a sink. Bounded like the
in-memory `FlowTracker`: the latest `max_links` calls per label, and the `max_sessions`
sessions recorded most recently (older ones are forgotten when a new one arrives).

A record is one short transaction that first upserts the session's row, which locks it:
records for one session queue, so trimming its links never races another record. Commits
are not waited on to reach the disk (`synchronous_commit = off`): another replica sees a
record as soon as it commits, and a database crash forgets at most the last moment's
labels, as a restart of the in-memory tracker forgets them all. A database that cannot
answer raises a `StoreError`, and the stages refuse the call (fail closed).
"""

from __future__ import annotations

import anyio.to_thread
from psycopg_pool import ConnectionPool

from gateway.store.postgres.errors import pg_errors

_TOUCH = (
    "INSERT INTO flow_sessions (session, touched) VALUES (%(session)s, nextval('flow_touch'))"
    " ON CONFLICT (session) DO UPDATE SET touched = EXCLUDED.touched RETURNING xmax = 0"
)
"""Make `session` the most recent, locking its row; True when it is new."""
_LINK = (
    "INSERT INTO flow_links (session, label, call_id)"
    " SELECT %(session)s, label, %(call_id)s FROM unnest(%(labels)s::text[]) AS label ORDER BY label"
)
_TRIM_LINKS = (
    "DELETE FROM flow_links WHERE session = %(session)s AND (label, n) IN (SELECT label, n FROM"
    " (SELECT label, n, row_number() OVER (PARTITION BY label ORDER BY n DESC) AS newer FROM flow_links"
    "  WHERE session = %(session)s AND label = ANY(%(labels)s)) AS ranked WHERE newer > %(max_links)s)"
)
_TRIM_SESSIONS = (
    "DELETE FROM flow_sessions WHERE session IN (SELECT session FROM flow_sessions ORDER BY touched DESC"
    " OFFSET %(max_sessions)s FOR UPDATE SKIP LOCKED)"
)
"""Forget the least recent sessions beyond the bound (their links go with them). One being recorded right
now is recent, so its locked row is skipped rather than waited for: two records cannot deadlock here."""
_READS = "SELECT label, call_id FROM flow_links WHERE session = %(session)s AND label = ANY(%(labels)s) ORDER BY n"
_KNOWN = "SELECT 1 FROM flow_sessions WHERE session = %(session)s"


class PgFlowLabels:
    """`FlowLabels` in one PostgreSQL database: every process with a handle on it sees every session's reads."""

    def __init__(self, pool: ConnectionPool, max_sessions: int = 10_000, max_links: int = 20) -> None:
        self._pool = pool
        self._max_sessions = max_sessions
        self._max_links = max_links

    async def record(self, session: str, labels: frozenset[str], call_id: str) -> None:
        await anyio.to_thread.run_sync(self._record, session, sorted(labels), call_id)

    async def reads(self, session: str, labels: tuple[str, ...]) -> list[str] | None:
        """The call ids that gave `session` every one of `labels`, or None if some label is missing."""
        found = await anyio.to_thread.run_sync(self._reads, session, sorted(set(labels)))
        if found is None or any(label not in found for label in labels):
            return None
        return [call for label in labels for call in found[label]]

    def _record(self, session: str, labels: list[str], call_id: str) -> None:
        params = {
            "session": session,
            "labels": labels,
            "call_id": call_id,
            "max_links": self._max_links,
            "max_sessions": self._max_sessions,
        }
        with pg_errors("cannot record what the session read"), self._pool.connection() as conn, conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = off")
            touched = conn.execute(_TOUCH, params).fetchone()
            conn.execute(_LINK, params)
            conn.execute(_TRIM_LINKS, params)
            if touched is not None and touched[0]:
                conn.execute(_TRIM_SESSIONS, params)

    def _reads(self, session: str, labels: list[str]) -> dict[str, list[str]] | None:
        """Each label's call ids, oldest first; None for a session never recorded (asked for no label)."""
        found: dict[str, list[str]] = {}
        with pg_errors("cannot read what the session read"), self._pool.connection() as conn:
            if not labels:
                return {} if conn.execute(_KNOWN, {"session": session}).fetchone() else None
            for label, call_id in conn.execute(_READS, {"session": session, "labels": labels}):
                found.setdefault(label, []).append(call_id)
        return found
