"""The approval queue's worker: expire stale requests and run approved ones, polling the store.

Only a serving gateway runs it; an administrative session (a CLI command) never does,
so a command never executes another user's approved call.
"""

from __future__ import annotations

import logging

import anyio

from gateway.approvals.service import ApprovalService
from gateway.ports import CurrentSnapshot, Spawn

logger = logging.getLogger(__name__)


class ApprovalWorker:
    def __init__(self, service: ApprovalService, current: CurrentSnapshot) -> None:
        self._service = service
        self._current = current

    async def run(self, spawn: Spawn) -> None:
        """Forever: a pass over the queue, then `approvals.poll_seconds` of sleep.

        Each approved request runs in its own task (`spawn`), so one slow tool does not hold up
        the queue; the claim (a compare-and-swap) keeps each to exactly one run.
        """
        while True:
            try:
                await self._service.sweep()
                await self._service.run_approved(spawn=spawn)
            except Exception:  # the queue must outlive a bad request or a busy database
                logger.exception("approval queue pass failed")
            await anyio.sleep(self._current.snapshot.config.approvals.poll_seconds)
