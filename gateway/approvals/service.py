"""The approval queue: people decide, an approved call runs exactly once, waiters are told.

States: pending -> approved | denied | expired | cancelled; approved -> executing |
expired | cancelled; executing -> succeeded | failed | interrupted. Every transition is
a compare-and-swap in the approval store, committed with its audit record, so two
approvers, two waiters or two gateway processes sharing the store can never move a
request twice. Running approved requests, under a lease, is the executor's
(approvals/execution.py).

Waiters and the queue worker in this process are woken at once by changes made here
(`Wakeups`); changes made elsewhere (the CLI, another process) are seen by polling
(`approvals.poll_seconds`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import anyio

from gateway.approvals.execution import DRAIN_SECONDS, ApprovalExecutor
from gateway.approvals.journal import Journal
from gateway.approvals.requests import ApprovalRequest, ApprovalStatus, describe
from gateway.approvals.store import ApprovalStore, Ballot, Revision
from gateway.approvals.wakeups import Wakeups
from gateway.approvals.webhook import post_pending
from gateway.audit import redact_arguments, utc_now
from gateway.calls import Caller
from gateway.canonical import digest
from gateway.config import GatewayConfig
from gateway.outcomes import Decision, Outcome, OutcomeCode, PortcullisError
from gateway.policy import PolicyEngine
from gateway.ports import CurrentSnapshot, Door, Spawn
from gateway.store.owner import Owner
from gateway.store.protocols import AuditLog

logger = logging.getLogger(__name__)

Progress = Callable[[float, float | None, str | None], Awaitable[None]]
_NOT_RUN = frozenset({ApprovalStatus.PENDING, ApprovalStatus.APPROVED})


class ApprovalError(Exception):
    """A decision that cannot be accepted; `reason` is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class ApprovalService:
    """Deciding, notifying, executing and waiting, for every channel (MCP tools, CLI) alike.

    It decides with the policy of the `current` snapshot and moves requests with the `store`'s
    changes, each committed by the `audit` log with the record of it; its `executor` runs approved
    calls through the `door`, claiming them as `owner` (this process).
    """

    def __init__(
        self, current: CurrentSnapshot, door: Door, audit: AuditLog, store: ApprovalStore, owner: str | None = None
    ) -> None:
        self._current = current
        self._door = door
        self._audit = audit
        self._store = store
        self._wakeups = Wakeups()
        self._journal = Journal(current, audit, self._wakeups)
        self.executor = ApprovalExecutor(current, door, store, self._journal, owner or str(Owner.new()))

    @property
    def owner(self) -> str:
        """Whose leases this process's claims are."""
        return self.executor.owner

    def changed_elsewhere(self, request_id: str) -> None:
        """Another process committed a change of `request_id` (`*`: of any): wake its waiters and the worker now."""
        if request_id == "*":
            self._wakeups.notify_all()
        else:
            self._journal.changed(request_id, queue=True)

    @property
    def _policy(self) -> PolicyEngine:
        return self._current.snapshot.policy

    @property
    def _config(self) -> GatewayConfig:
        return self._current.snapshot.config

    # --- reading --------------------------------------------------------

    async def get(self, request_id: str) -> ApprovalRequest | None:
        return await self._store.get(request_id)

    async def by_status(self, status: ApprovalStatus | None) -> list[ApprovalRequest]:
        return await self._store.find(status)

    async def ballots(self, request_id: str) -> list[Ballot]:
        return await self._store.ballots(request_id)

    def may_see(self, caller: Caller, request: ApprovalRequest) -> bool:
        """The requester, its approvers, and whoever policy lets `read` the queue (`gateway.approvals`): auditors."""
        if caller.subject == request.subject or self.may_approve(caller, request):
            return True
        seeing = self._policy.decide(caller.subject or "", "gateway.approvals", "read", granted=caller.granted_roles)
        return seeing.decision is Decision.ALLOW

    def may_approve(self, approver: Caller, request: ApprovalRequest) -> bool:
        policy = self._policy
        roles = policy.roles_for(approver.subject or "", approver.granted_roles)
        permitted = policy.decide(approver.subject or "", request.tool, "approve", granted=approver.granted_roles)
        return request.approver_role in roles and permitted.decision is not Decision.DENY

    def may_cancel(self, actor: Caller, request: ApprovalRequest) -> bool:
        """Its requester (withdrawing it), or one who may decide it (the demo's second admin, a manager)."""
        return actor.subject == request.subject or self.may_approve(actor, request)

    # --- deciding ---------------------------------------------------------

    async def approve(
        self,
        request_id: str,
        approver: Caller,
        comment: str | None = None,
        edited_arguments: dict[str, Any] | None = None,
    ) -> ApprovalRequest:
        """Approve; with `edited_arguments`, approve a new revision of the call instead (checked again first)."""
        return await self._decide(request_id, approver, "approve", comment, edited_arguments)

    async def deny(self, request_id: str, approver: Caller, reason: str) -> ApprovalRequest:
        """Deny, with a reason the requester is shown (`approval_status`, `approval_wait`, the refusal)."""
        return await self._decide(request_id, approver, "deny", reason)

    async def cancel(self, request_id: str, actor: Caller, reason: str | None = None) -> ApprovalRequest:
        """Withdraw a request that has not started running (pending or approved): it never runs."""
        request = await self._found(request_id)
        if not self.may_cancel(actor, request):
            raise ApprovalError(
                "not_allowed",
                f"{actor.subject} may not cancel request {request_id}: only its requester or its approvers",
            )
        if request.status not in _NOT_RUN:
            raise ApprovalError("not_pending", f"{describe(request)}: it can no longer be cancelled")
        because = f"{reason} (cancelled by {actor.subject})" if reason else f"cancelled by {actor.subject}"
        record = self._journal.record("approval.cancelled", request, actor, reason, {"reason": because})
        if not await self._journal.commit(
            record, self._store.close(request_id, _NOT_RUN, ApprovalStatus.CANCELLED, because)
        ):
            raise ApprovalError("not_pending", f"request {request_id} started running or ended meanwhile")
        self._journal.changed(request_id)
        return await self._found(request_id)

    async def _found(self, request_id: str) -> ApprovalRequest:
        request = await self.get(request_id)
        if request is None:
            raise ApprovalError("not_found", f"no approval request {request_id}")
        return request

    async def _decide(
        self,
        request_id: str,
        approver: Caller,
        decision: str,
        comment: str | None,
        edited_arguments: dict[str, Any] | None = None,
    ) -> ApprovalRequest:
        request = await self._found(request_id)
        if request.status is not ApprovalStatus.PENDING:
            raise ApprovalError("not_pending", f"request {request_id} is {request.status.value}, not pending")
        if approver.subject == request.subject:
            raise ApprovalError("self_approval", "a requester may not decide on their own request")
        if not self.may_approve(approver, request):
            raise ApprovalError(
                "not_an_approver", f"{approver.subject} may not decide requests that need {request.approver_role}"
            )
        verdict: Literal["approve", "deny"] = "deny" if decision == "deny" else "approve"
        revision = None
        if edited_arguments is not None:
            revision = await self._revision(request, approver, edited_arguments)
        change = self._store.decide(
            request_id,
            approver.subject or "",
            verdict,
            comment,
            window_seconds=self._config.approvals.execution_window_seconds,
            revision=revision,
        )
        if not await self._journal.commit(
            self._journal.record(f"approval.{decision}", request, approver, comment), change
        ):
            current = await self.get(request_id)
            if current is not None and current.status is ApprovalStatus.PENDING:
                raise ApprovalError("already_decided", f"{approver.subject} already decided on {request_id}")
            raise ApprovalError("not_pending", f"request {request_id} was decided or expired meanwhile")
        self._journal.changed(request_id, queue=True)
        return await self.get(request_id) or request

    async def _revision(self, request: ApprovalRequest, approver: Caller, arguments: dict[str, Any]) -> Revision:
        """The request's new arguments, after policy and guardrails accept them for the requester."""
        report = await self._door.check(request.subject, request.tool, arguments, granted=tuple(request.roles))
        if report.outcome not in (OutcomeCode.OK.value, OutcomeCode.APPROVAL_REQUIRED.value):
            raise ApprovalError("edit_refused", f"the edited call would be refused: {report.outcome}: {report.message}")
        previous = {
            "revision": len(request.revisions) + 1,
            "arguments": request.arguments,
            "edited_by": approver.subject,
            "ts": utc_now(),
        }
        return Revision(
            arguments=arguments, arguments_digest=digest(arguments), revisions=[*request.revisions, previous]
        )

    # --- notifying ------------------------------------------------------------

    async def notify(self, request_id: str) -> None:
        """POST the new pending request to the webhook, signed, with retries; a failure is audited, never raised."""
        config = self._config
        webhook = config.approvals.webhook
        request = await self.get(request_id)
        if webhook is None or request is None:
            return
        secret_keys = config.audit.secret_keys
        payload = {
            "event": "approval.pending",
            "approval_id": request.id,
            "tool": request.tool,
            "requester": request.subject,
            "arguments": redact_arguments(request.arguments, secret_keys, self._audit.salt, config.audit.personal_keys),
            "reasons": request.reasons,
            "approver_role": request.approver_role,
            "approvals_required": request.approvals_required,
            "expires_at": request.expires_at,
        }
        problem = await post_pending(webhook, payload)
        if problem is None:
            return
        detail = {"problem": problem, "attempts": webhook.retries + 1}
        record = self._journal.record("approval.webhook_failed", request, detail=detail)
        try:
            await self._audit.append(record)
        except PortcullisError:
            logger.exception("could not record the failed webhook for %s", request.id)

    # --- executing (the executor's) -----------------------------------------

    async def run_approved(self, spawn: Spawn | None = None) -> None:
        """Claim and run every approved request whose window is open (see `ApprovalExecutor`)."""
        await self.executor.run_approved(spawn)

    async def sweep(self) -> None:
        """Expire requests not decided or not run in time; interrupt those whose executor died."""
        await self.executor.sweep()

    async def drain(self, seconds: float = DRAIN_SECONDS) -> None:
        """Before stopping: claim nothing more, and let running approved calls finish (up to `seconds`)."""
        await self.executor.drain(seconds)

    # --- waiting ----------------------------------------------------------------

    async def wait(self, request_id: str, timeout: float, progress: Progress | None = None) -> ApprovalRequest | None:
        """Wait until the request is finished (or `timeout`), telling `progress` what it waits for about once a second.

        A change made in this process wakes the waiter at once; one made elsewhere is seen at the next poll.
        """
        poll = self._config.approvals.poll_seconds
        started = anyio.current_time()
        told: float | None = None
        with self._wakeups.watching(request_id):
            changed = self._wakeups.event(request_id)
            request = await self.get(request_id)
            with anyio.move_on_after(timeout):
                while request is not None and not request.terminal:
                    now = anyio.current_time()
                    if progress is not None and (told is None or now - told >= 1):
                        told = now
                        waiting = "execution" if request.status is not ApprovalStatus.PENDING else "approval"
                        who = request.approver_role or "an approver"
                        await progress(now - started, timeout, f"waiting for {waiting} by {who}, request {request.id}")
                    with anyio.move_on_after(poll):
                        await changed.wait()
                    changed = self._wakeups.event(request_id)
                    request = await self.get(request_id)
        return request

    async def quick_answer(
        self, outcome: Outcome, progress: Progress | None, spawn: Spawn | None, wait: float | None = None
    ) -> Outcome:
        """Wait a little (`wait`, else `approvals.wait_seconds`) for the decision and the run, so an approved call
        answers in the same call; the webhook is told of the new request in the background (`spawn`), never on
        the path."""
        approval_id = outcome.data.get("approval_id")
        if outcome.code is not OutcomeCode.APPROVAL_REQUIRED or not approval_id:
            return outcome
        config = self._config.approvals
        if spawn is not None and config.webhook is not None:
            spawn(self.notify, approval_id)
        request = await self.wait(approval_id, config.wait_seconds if wait is None else wait, progress)
        if request is None:
            return outcome
        return self.outcome_of(request).model_copy(update={"audit_id": outcome.audit_id})

    def outcome_of(self, request: ApprovalRequest) -> Outcome:
        """What a waiter gets: the executed call's real result, the refusal with its reason, or 'still pending'."""
        if request.status in (ApprovalStatus.SUCCEEDED, ApprovalStatus.FAILED) and request.result is not None:
            result = request.result
            return Outcome(
                code=OutcomeCode(result["code"]),
                message=result["message"],
                stage="execution",
                audit_id=result.get("audit_id"),
                content=result.get("content") or [],
                structured=result.get("structured"),
                data={"approval_id": request.id},
            )
        if request.terminal:
            code = (
                OutcomeCode.TOOL_FAILED if request.status is ApprovalStatus.INTERRUPTED else OutcomeCode.APPROVAL_DENIED
            )
            return Outcome.refuse(
                code,
                describe(request),
                stage="approval",
                approval_id=request.id,
                status=request.status.value,
                reason=request.status_reason,
            )
        if request.status is ApprovalStatus.PENDING:
            who = request.approver_role or "an approver"
            now = f"approval by {who} is required; request {request.id} is pending. Tell the user it awaits approval"
        else:
            stage = "running" if request.status is ApprovalStatus.EXECUTING else "about to run"
            now = f"request {request.id} is approved and {stage}. Tell the user it was approved"
        return Outcome.refuse(
            OutcomeCode.APPROVAL_REQUIRED,
            f"{now}; call gateway.approval_wait with the approval_id to get the result once it has run.",
            stage="approval",
            approval_id=request.id,
            status="pending_approval",
            expires_at=request.expires_at,
            approver_role=request.approver_role,
            approvals_required=request.approvals_required,
            approvers={"role": request.approver_role, "required": request.approvals_required},
        )


def request_json(request: ApprovalRequest) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(request.model_dump_json())
    return shown
