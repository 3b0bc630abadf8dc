"""The approval queue's worker: expire stale requests, mark dead runs interrupted, run approved ones.

Only a serving gateway runs it; an administrative session (a CLI command) never does,
so a command never executes another user's approved call.
"""

from __future__ import annotations

import logging

from gateway.approvals.execution import ApprovalExecutor
from gateway.ports import Spawn

logger = logging.getLogger(__name__)


class ApprovalWorker:
    def __init__(self, executor: ApprovalExecutor) -> None:
        self._executor = executor

    async def run(self, spawn: Spawn) -> None:
        """Forever: a pass over the queue, then wait for a change made in this process, or
        `approvals.poll_seconds` (changes made by the CLI or another process are seen then).

        Each approved request runs in its own task (`spawn`), so one slow tool does not hold up
        the queue; the claim (a compare-and-swap with a lease) keeps each to exactly one run.
        """
        while True:
            changed = self._executor.queue_changed()  # before the pass: a decision during it is not missed
            try:
                await self._executor.sweep()
                await self._executor.run_approved(spawn=spawn)
            except Exception:  # the queue must outlive a bad request or a busy database
                logger.exception("approval queue pass failed")
            await self._executor.idle(changed)
