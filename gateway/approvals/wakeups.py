"""Wake waiters in this process the moment something they wait for changed, by key.

Decisions made here (an MCP approver, the queue finishing a run) wake the request's
waiters and the queue worker at once. Changes made elsewhere (the CLI, another gateway
process) are still seen by polling: this only makes the common case fast.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import anyio


class Wakeups:
    """One event per watched key; `notify(key)` sets it and the next watcher gets a fresh one."""

    def __init__(self) -> None:
        self._events: dict[str, anyio.Event] = {}
        self._watchers: Counter[str] = Counter()

    @contextmanager
    def watching(self, key: str) -> Iterator[None]:
        """While inside, `key`'s event is kept for this watcher (and dropped when the last one leaves)."""
        self._watchers[key] += 1
        try:
            yield
        finally:
            self._watchers[key] -= 1
            if self._watchers[key] <= 0:
                del self._watchers[key]
                self._events.pop(key, None)

    def event(self, key: str) -> anyio.Event:
        """The event the next `notify(key)` sets. Take it *before* reading the state it guards, so a
        change between the read and the wait is not missed."""
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = anyio.Event()
        return event

    def notify(self, key: str) -> None:
        event = self._events.pop(key, None)
        if event is not None:
            event.set()

    def notify_all(self) -> None:
        """Wake every watcher: something may have changed that nobody was told of (a reconnect)."""
        events, self._events = self._events, {}
        for event in events.values():
            event.set()
