"""Flow labels per client session: what a session has read decides what it may send out.

A session that has read private data and untrusted content is where a prompt
injection can turn into a leak: the untrusted text asks, the private data is at
hand, and an external sink carries it out. The tracker remembers, per session,
which labelled tools returned results (with their call ids, which the audit
log links to); the guardrail stage asks it before a call to a sink.

`FlowTracker` is the in-memory `FlowLabels` store (store/protocols.py): one process's
sessions, bounded in sessions and in links per label. A store shared by every process
(issue 15) answers the same two questions; one that cannot answer raises a `StoreError`,
and the stages refuse the call (fail closed). It is owned by the wiring, so it survives
policy reloads.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol


class _Caller(Protocol):
    session: str | None
    subject: str | None


def flow_key(caller: _Caller) -> str | None:
    """Whose reads count together: the client session, or for callers without one (a stateless
    2026-07-28 HTTP client) the subject, which is stricter: all their calls count as one session."""
    if caller.session is not None:
        return caller.session
    return f"subject:{caller.subject}" if caller.subject else None


class FlowTracker:
    """`FlowLabels` in this process's memory; the least recently used session goes first when full."""

    def __init__(self, max_sessions: int = 10_000, max_links: int = 20) -> None:
        self._sessions: OrderedDict[str, dict[str, list[str]]] = OrderedDict()
        self._max_sessions = max_sessions
        self._max_links = max_links

    async def record(self, session: str, labels: frozenset[str], call_id: str) -> None:
        seen = self._sessions.get(session)
        if seen is None:
            seen = self._sessions[session] = {}
            if len(self._sessions) > self._max_sessions:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(session)
        for label in labels:
            calls = seen.setdefault(label, [])
            calls.append(call_id)
            del calls[: -self._max_links]

    async def reads(self, session: str, labels: tuple[str, ...]) -> list[str] | None:
        """The call ids that gave this session every one of `labels`, or None if some label is missing."""
        seen = self._sessions.get(session)
        if seen is None or any(label not in seen for label in labels):
            return None
        return [call for label in labels for call in seen[label]]
