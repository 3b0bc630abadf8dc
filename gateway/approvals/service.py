"""The approval queue: people decide, an approved call runs exactly once, waiters are told.

States: pending -> approved | denied | expired | cancelled; approved -> executing |
expired | cancelled; executing -> succeeded | failed. Every transition is a
compare-and-swap `UPDATE ... WHERE status = <expected>` committed in the same
transaction as its audit record, so two approvers, two waiters or two gateway
processes sharing the database can never move a request twice, and an approved
call is claimed (approved -> executing) by exactly one executor.

The queue lives in SQLite and is polled (`approvals.poll_seconds`): decisions
made from the CLI, another process, or before a restart are seen the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx

from gateway.approvals.requests import ApprovalRequest, ApprovalStatus, later
from gateway.audit import AuditRecord, StaleState, Statement, redact_arguments, utc_now
from gateway.calls import Caller
from gateway.canonical import canonical_json, digest
from gateway.config import GatewayConfig
from gateway.outcomes import AuditWriteError, Decision, Outcome, OutcomeCode
from gateway.policy import PolicyEngine
from gateway.ports import ApprovalReads, AuditSink, CurrentSnapshot, Door, Spawn

logger = logging.getLogger(__name__)

Progress = Callable[[float, float | None, str | None], Awaitable[None]]


class ApprovalError(Exception):
    """A decision that cannot be accepted; `reason` is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class ApprovalService:
    """Deciding, notifying, executing and waiting, for every channel (MCP tools, CLI) alike.

    It runs an approved call through the `door` it is given, decides with the policy of the
    `current` snapshot, and writes every transition with its record through `audit`.
    """

    def __init__(self, current: CurrentSnapshot, door: Door, audit: AuditSink, reads: ApprovalReads) -> None:
        self._current = current
        self._door = door
        self._audit = audit
        self._reads = reads

    @property
    def _policy(self) -> PolicyEngine:
        return self._current.snapshot.policy

    @property
    def _config(self) -> GatewayConfig:
        return self._current.snapshot.config

    # --- reading --------------------------------------------------------

    async def get(self, request_id: str) -> ApprovalRequest | None:
        return await self._reads.approval(request_id)

    async def by_status(self, status: ApprovalStatus | None) -> list[ApprovalRequest]:
        return await self._reads.approvals(status)

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
        return await self._decide(request_id, approver, "deny", reason)

    async def _decide(
        self,
        request_id: str,
        approver: Caller,
        decision: str,
        comment: str | None,
        edited_arguments: dict[str, Any] | None = None,
    ) -> ApprovalRequest:
        request = await self.get(request_id)
        if request is None:
            raise ApprovalError("not_found", f"no approval request {request_id}")
        if request.status is not ApprovalStatus.PENDING:
            raise ApprovalError("not_pending", f"request {request_id} is {request.status.value}, not pending")
        if approver.subject == request.subject:
            raise ApprovalError("self_approval", "a requester may not decide on their own request")
        if not self.may_approve(approver, request):
            raise ApprovalError(
                "not_an_approver", f"{approver.subject} may not decide requests that need {request.approver_role}"
            )
        now = utc_now()
        statements = [
            # Compare-and-swap guard: the request must still be pending inside this transaction.
            Statement(
                "UPDATE approval_requests SET status = status WHERE id = ? AND status = 'pending'",
                (request_id,),
                expect_rows=1,
            ),
            *(await self._revision(request, approver, edited_arguments, now) if edited_arguments is not None else []),
            Statement(
                "INSERT INTO approval_decisions (request_id, approver, decision, comment, ts) VALUES (?, ?, ?, ?, ?)",
                (request_id, approver.subject, decision, comment, now),
            ),
        ]
        if decision == "deny":
            statements.append(
                Statement(
                    "UPDATE approval_requests SET status = 'denied', finished_at = ?"
                    " WHERE id = ? AND status = 'pending'",
                    (now, request_id),
                    expect_rows=1,
                )
            )
        else:
            window = self._config.approvals.execution_window_seconds
            # Quorum in SQL, in the same transaction: two last approvals at once cannot both miss it.
            statements.append(
                Statement(
                    "UPDATE approval_requests SET status = 'approved', approved_at = ?, execute_by = ?"
                    " WHERE id = ? AND status = 'pending' AND approvals_required <= (SELECT COUNT(*)"
                    " FROM approval_decisions WHERE request_id = ? AND decision = 'approve')",
                    (now, later(window), request_id, request_id),
                )
            )
        record = self._record(f"approval.{decision}", request, approver, comment)
        try:
            await self._audit.append(record, statements)
        except AuditWriteError as exc:
            if "UNIQUE" in str(exc) or "PRIMARY KEY" in str(exc):
                raise ApprovalError("already_decided", f"{approver.subject} already decided on {request_id}") from exc
            raise
        except StaleState as exc:
            raise ApprovalError("not_pending", f"request {request_id} was decided or expired meanwhile") from exc
        updated = await self.get(request_id)
        return updated or request

    async def _revision(
        self, request: ApprovalRequest, approver: Caller, arguments: dict[str, Any], now: str
    ) -> list[Statement]:
        """Statements replacing the request's arguments, after policy and guardrails accept them for the requester."""
        report = await self._door.check(request.subject, request.tool, arguments, granted=tuple(request.roles))
        if report.outcome not in (OutcomeCode.OK.value, OutcomeCode.APPROVAL_REQUIRED.value):
            raise ApprovalError("edit_refused", f"the edited call would be refused: {report.outcome}: {report.message}")
        previous = {
            "revision": len(request.revisions) + 1,
            "arguments": request.arguments,
            "edited_by": approver.subject,
            "ts": now,
        }
        return [
            Statement(
                "UPDATE approval_requests SET arguments = ?, arguments_digest = ?, revisions = ? WHERE id = ?",
                (
                    canonical_json(arguments),
                    digest(arguments),
                    canonical_json([*request.revisions, previous]),
                    request.id,
                ),
            ),
            # Approvals given to the earlier arguments do not cover the new ones.
            Statement("DELETE FROM approval_decisions WHERE request_id = ?", (request.id,)),
        ]

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
        body = canonical_json(payload).encode()
        signature = "sha256=" + hmac.new(webhook.secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "content-type": "application/json",
            "x-portcullis-event": "approval.pending",
            "x-portcullis-signature": signature,
        }
        problem = ""
        async with httpx.AsyncClient(timeout=webhook.timeout_seconds) as client:
            for attempt in range(webhook.retries + 1):
                try:
                    response = await client.post(webhook.url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                else:
                    if response.is_success:
                        return
                    problem = f"HTTP {response.status_code}"
                if attempt < webhook.retries:
                    await anyio.sleep(webhook.backoff_seconds * 2**attempt)
        record = self._record(
            "approval.webhook_failed", request, None, None, {"problem": problem, "attempts": webhook.retries + 1}
        )
        try:
            await self._audit.append(record)
        except AuditWriteError:
            logger.exception("could not record the failed webhook for %s", request.id)

    # --- executing ----------------------------------------------------------

    async def run_approved(self, spawn: Spawn | None = None) -> None:
        """Claim and run every approved request whose window is open; with `spawn`, each in its own task
        (so one slow tool does not hold up the queue; the claim keeps each to one run)."""
        for request in await self.by_status(ApprovalStatus.APPROVED):
            if spawn is None:
                await self._execute(request)
            else:
                spawn(self._execute_guarded, request)

    async def _execute_guarded(self, request: ApprovalRequest) -> None:
        """In a background task a failure must not take the gateway down: it is logged, the request stays."""
        try:
            await self._execute(request)
        except Exception:
            logger.exception("running approved request %s failed", request.id)

    async def _execute(self, request: ApprovalRequest) -> None:
        live = self._current.snapshot.catalog.get(request.tool)
        if live is None or live[0].definition_hash != request.definition_hash:
            await self._transition(
                request, "approved", "cancelled", "approval.cancelled", {"reason": "the tool's definition changed"}
            )
            return
        claimed = await self._transition(request, "approved", "executing", "approval.executing", {}, open_window=True)
        if not claimed:
            return
        outcome = await self._door.run_approved(request)
        result = {
            "code": outcome.code.value,
            "message": outcome.message,
            "content": outcome.content,
            "structured": outcome.structured,
            "audit_id": outcome.audit_id,
        }
        status = "succeeded" if outcome.ok else "failed"
        await self._transition(
            request, "executing", status, f"approval.{status}", {"outcome": outcome.code.value}, result
        )

    async def sweep(self) -> None:
        """Expire pending requests past their expiry and approved ones past their window (once each)."""
        now = utc_now()
        for request in await self.by_status(ApprovalStatus.PENDING):
            if request.expires_at and request.expires_at < now:
                await self._transition(
                    request, "pending", "expired", "approval.expired", {"reason": "not decided in time"}
                )
        for request in await self.by_status(ApprovalStatus.APPROVED):
            if request.execute_by and request.execute_by < now:
                await self._transition(
                    request, "approved", "expired", "approval.expired", {"reason": "not run in time"}
                )

    async def _transition(
        self,
        request: ApprovalRequest,
        expected: str,
        status: str,
        event: str,
        detail: dict[str, Any],
        result: dict[str, Any] | None = None,
        *,
        open_window: bool = False,
    ) -> bool:
        now = utc_now()
        sql = "UPDATE approval_requests SET status = ?"
        params: list[Any] = [status]
        if status in ("succeeded", "failed", "expired", "cancelled"):
            sql += ", finished_at = ?"
            params.append(now)
        if result is not None:
            sql += ", result = ?"
            params.append(canonical_json(result))
        sql += " WHERE id = ? AND status = ?"
        params += [request.id, expected]
        if open_window:
            sql += " AND execute_by >= ?"
            params.append(now)
        record = self._record(event, request, None, None, detail)
        try:
            await self._audit.append(record, [Statement(sql, params, expect_rows=1)])
        except StaleState:
            return False
        return True

    # --- waiting ----------------------------------------------------------------

    async def wait(self, request_id: str, timeout: float, progress: Progress | None = None) -> ApprovalRequest | None:
        """Wait until the request is finished (or `timeout`), telling `progress` what it waits for."""
        poll = self._config.approvals.poll_seconds
        request = await self.get(request_id)
        with anyio.move_on_after(timeout):
            ticks = 0
            while request is not None and not request.terminal:
                if progress is not None and ticks % max(1, int(1 / poll)) == 0:
                    waiting = "execution" if request.status is not ApprovalStatus.PENDING else "approval"
                    who = request.approver_role or "an approver"
                    await progress(ticks * poll, timeout, f"waiting for {waiting} by {who}, request {request.id}")
                await anyio.sleep(poll)
                ticks += 1
                request = await self.get(request_id)
        return request

    async def quick_answer(self, outcome: Outcome, progress: Progress | None, spawn: Spawn | None) -> Outcome:
        """Wait a little (`approvals.wait_seconds`) for the decision and the run, so an approved call answers
        in the same call; the webhook is told of the new request in the background (`spawn`), never on the path."""
        approval_id = outcome.data.get("approval_id")
        if outcome.code is not OutcomeCode.APPROVAL_REQUIRED or not approval_id:
            return outcome
        config = self._config.approvals
        if spawn is not None and config.webhook is not None:
            spawn(self.notify, approval_id)
        request = await self.wait(approval_id, config.wait_seconds, progress)
        if request is None:
            return outcome
        return self.outcome_of(request).model_copy(update={"audit_id": outcome.audit_id})

    def outcome_of(self, request: ApprovalRequest) -> Outcome:
        """What a waiter gets: the executed call's real result, the denial, or 'still pending'."""
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
            return Outcome.refuse(
                OutcomeCode.APPROVAL_DENIED,
                f"approval request {request.id} was {request.status.value}",
                stage="approval",
                approval_id=request.id,
                status=request.status.value,
            )
        return Outcome.refuse(
            OutcomeCode.APPROVAL_REQUIRED,
            f"approval by {request.approver_role or 'an approver'} is required; request {request.id} is"
            f" {request.status.value}. Tell the user it awaits approval; call gateway.approval_wait with the"
            " approval_id to get the result once it has run.",
            stage="approval",
            approval_id=request.id,
            status="pending_approval",
            expires_at=request.expires_at,
            approver_role=request.approver_role,
            approvals_required=request.approvals_required,
            approvers={"role": request.approver_role, "required": request.approvals_required},
        )

    def _record(
        self,
        event: str,
        request: ApprovalRequest,
        actor: Caller | None,
        comment: str | None,
        detail: dict[str, Any] | None = None,
    ) -> AuditRecord:
        return AuditRecord(
            event=event,
            call_id=request.call_id,
            subject=actor.subject if actor else None,
            roles=tuple(self._policy.roles_for(actor.subject or "", actor.granted_roles)) if actor else (),
            auth=actor.auth if actor else "gateway",
            tool=request.tool,
            definition_hash=request.definition_hash,
            arguments_digest=request.arguments_digest,
            policy_version=self._policy.version,
            approval_id=request.id,
            outcome=event.split(".", 1)[1],
            message=comment,
            detail={"requester": request.subject, **(detail or {})},
        )


def request_json(request: ApprovalRequest) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(request.model_dump_json())
    return shown
