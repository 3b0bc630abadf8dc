"""Signed checkpoints of the audit chain, on demand and on a timer (see audit/checkpoints.py).

A serving gateway signs one every `audit.checkpoint_seconds` and at shutdown; an
administrative session (a CLI command) only at its end, never on a timer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio

from gateway.audit.checkpoints import Checkpoint, load_or_create_key, write_checkpoint
from gateway.outcomes import AuditWriteError
from gateway.ports import CurrentSnapshot
from gateway.store.protocols import AuditLog

logger = logging.getLogger(__name__)


class Checkpointer:
    def __init__(
        self,
        current: CurrentSnapshot,
        store: AuditLog,
        my_turn: Callable[[], Awaitable[bool]] | None = None,
        create_key: bool = True,
    ) -> None:
        self._current = current
        self._store = store
        self._my_turn = my_turn
        """Whether this process signs the periodic checkpoints (one replica of several); None: it always does."""
        self._create_key = create_key
        """Make the signing key on first use (one process); replicas must be given one shared key instead."""

    async def checkpoint(self) -> Checkpoint | None:
        """Sign the chain's head into the log and the checkpoint file; a failure is logged, never raised."""
        config = self._current.snapshot.config
        try:
            key = load_or_create_key(config.resolve(config.audit.checkpoint_key), self._create_key)
            return await write_checkpoint(self._store, key, config.resolve(config.audit.checkpoint_file))
        except (OSError, ValueError, AuditWriteError):
            logger.exception("could not write an audit checkpoint")
            return None

    async def run(self) -> None:
        """Forever: sleep `audit.checkpoint_seconds`, then sign if it is this process's turn."""
        while True:
            await anyio.sleep(self._current.snapshot.config.audit.checkpoint_seconds)
            if self._my_turn is None or await self._my_turn():
                await self.checkpoint()
