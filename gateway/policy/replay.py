"""Replay recorded calls against a candidate policy: which decisions would change?

A replay compares like with like. The recorded decision is the one the policy engine
gave, except where the pipeline raised it afterwards: a guardrail, a flow rule or the
plan review (a plan whose steps need approval) turns an `allow` into `approval_required`
and leaves a `require_approval` finding; the candidate's `allow` is raised the same way.
(Those escalations are taken as recorded: a plan's steps are replayed as their own records.)

Calls stopped before policy was asked (admission, identity, rate limits, a name no source
lists) are not replayed. A condition that reads an argument the audit log does not hold
as the caller sent it (stored as a salted hash under `audit.personal_keys` or
`audit.secret_keys`, masked by a guardrail, or absent because a schema default filled it)
cannot be evaluated; when it could change the decision, the call is reported as not
replayable, with the reason, never as a change. Roles are recomputed from the candidate
policy, except for callers whose roles came from a token (JWT), whose recorded roles are used.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from gateway.audit.query import parse_since
from gateway.outcomes import Decision
from gateway.policy.engine import UNLISTED_REASON, PolicyEngine, rule_id
from gateway.policy.rules import Rule

if TYPE_CHECKING:
    from gateway.audit.reader import AuditReader

HASHED = "hmac-sha256:"
"""How the audit log stores a salted hash in place of a value (see audit/records.py)."""
ESCALATION = "require_approval"
"""The finding action of a guardrail, flow rule or plan review that raised an allow to an approval."""


class ReplayChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq: int
    ts: str
    subject: str | None
    tool: str | None
    old: str
    new: str
    old_rule: str | None
    new_rule: str | None


class NotReplayable(BaseModel):
    """A recorded call whose decision the candidate cannot recompute, and why."""

    model_config = ConfigDict(frozen=True)

    seq: int
    ts: str
    subject: str | None
    tool: str | None
    old: str
    possible: list[str]
    """The decisions the candidate could give, depending on the values that were not recorded."""
    reasons: list[str]


class ReplayReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    replayed: int
    """Calls decided again by the candidate (the changes among them), not counting the not replayable."""
    changes: list[ReplayChange]
    not_replayable: list[NotReplayable] = []


def replay(
    reader: AuditReader,
    candidate: PolicyEngine,
    since: str | None,
    progress: Callable[[int], None] | None = None,
    personal_keys: Collection[str] = (),
) -> ReplayReport:
    """Decide every recorded tool call since `since` again with `candidate`, and report the differences.

    `personal_keys` (the deployment's `audit.personal_keys`) only names which setting hashed a value.
    """
    personal = {key.lower() for key in personal_keys}
    replayed, changes, unreplayable = 0, [], []
    entries = reader.entries(event="tool.call", since=parse_since(since) if since is not None else None)
    for count, entry in enumerate(entries, 1):
        if progress is not None and count % 10_000 == 0:
            progress(10_000)
        seq, record = entry.seq, json.loads(entry.body)
        subject, tool, old = record.get("subject"), record.get("tool"), record.get("decision")
        if not subject or not tool or old is None or not _policy_decided(record):
            continue
        arguments = record.get("arguments") if isinstance(record.get("arguments"), dict) else {}
        granted = tuple(record.get("roles") or ()) if record.get("auth") == "jwt" else ()
        roles = candidate.roles_for(subject, granted)
        context = {"args": arguments, "subject": {"id": subject, "tenant": record.get("tenant"), "roles": list(roles)}}
        unknowable = _Unrecorded(arguments, _masked_paths(record), personal)
        explained = candidate.explain(subject, tool, "call", context, granted, unknowable)
        escalated = old == Decision.APPROVAL_REQUIRED.value and _escalated(record)
        if explained.decided is None:
            possible = dict.fromkeys(_raised(d, escalated).value for d in explained.decisions)
            unreplayable.append(
                NotReplayable(
                    seq=seq,
                    ts=record["ts"],
                    subject=subject,
                    tool=tool,
                    old=old,
                    possible=list(possible),
                    reasons=list(dict.fromkeys(explained.unknown)),
                )
            )
            continue
        replayed += 1
        new = _raised(explained.decided.decision, escalated)
        if new.value != old:
            changes.append(
                ReplayChange(
                    seq=seq,
                    ts=record["ts"],
                    subject=subject,
                    tool=tool,
                    old=old,
                    new=new.value,
                    old_rule=record.get("rule"),
                    new_rule=explained.decided.reason,
                )
            )
    return ReplayReport(replayed=replayed, changes=changes, not_replayable=unreplayable)


def _policy_decided(record: dict[str, Any]) -> bool:
    """Whether policy decided this call: not refused before authorization, nor a name no source lists."""
    rule = record.get("rule")
    arguments = record.get("arguments")
    omitted = isinstance(arguments, dict) and "omitted" in arguments  # refused before admission
    return rule is not None and rule != UNLISTED_REASON and not omitted


def _escalated(record: dict[str, Any]) -> bool:
    return any(isinstance(f, dict) and f.get("action") == ESCALATION for f in record.get("findings") or ())


def _raised(decision: Decision, escalated: bool) -> Decision:
    """The pipeline raises an allow to an approval when a recorded finding required one."""
    return Decision.APPROVAL_REQUIRED if escalated and decision is Decision.ALLOW else decision


def _masked_paths(record: dict[str, Any]) -> dict[str, str]:
    """JSON paths (`$.note`) of arguments a guardrail masked or redacted before the record was written."""
    masked: dict[str, str] = {}
    for finding in record.get("findings") or ():
        if isinstance(finding, dict) and finding.get("action") in ("redact", "block") and finding.get("path"):
            masked.setdefault(str(finding["path"]), str(finding.get("rule")))
    return masked


class _Unrecorded:
    """Why a rule's condition cannot be evaluated on the recorded arguments (None: it can)."""

    def __init__(self, arguments: dict[str, Any], masked: dict[str, str], personal: set[str]) -> None:
        self._arguments = arguments
        self._masked = masked
        self._personal = personal

    def __call__(self, rule: Rule) -> str | None:
        if rule.condition is None:
            return None
        for reference in rule.condition.references:
            if reference[0] != "args":
                continue
            why = self._unrecorded(reference[1:])
            if why is not None:
                return f"{rule.describe()} ({rule_id(rule.source)}) reads {why}"
        return None

    def _unrecorded(self, path: Iterable[str | int]) -> str | None:
        value: Any = self._arguments
        walked: list[str | int] = []
        for part in path:
            walked.append(part)
            name = _dotted(walked)
            rule = next((r for p, r in self._masked.items() if _overlaps(p, _json_path(walked))), None)
            if rule is not None:
                return f"{name}, which guardrail rule {rule} masked before it was recorded"
            try:
                value = value[part]
            except (KeyError, IndexError, TypeError):
                return f"{name}, which is not in the recorded arguments (a schema default is not recorded)"
            if isinstance(value, str) and value.startswith(HASHED):
                setting = "audit.personal_keys" if str(part).lower() in self._personal else "audit.secret_keys"
                return f"{name}, which the audit log holds only as a salted hash ({setting})"
        return None


def _dotted(path: list[str | int]) -> str:
    return "args" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _json_path(path: list[str | int]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _overlaps(masked: str, read: str) -> bool:
    """Whether the masked path is the read path or inside it (a condition reads the masked part)."""
    return masked == read or masked.startswith((read + ".", read + "["))
