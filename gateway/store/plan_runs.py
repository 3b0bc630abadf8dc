"""Plan runs as every store returns them: a run, its steps, and who holds it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

RunStatus = Literal[
    "running", "succeeded", "failed", "paused", "compensated", "compensation_failed", "timed_out", "interrupted"
]
StepStatus = Literal[
    "pending",
    "running",
    "succeeded",
    "failed",
    "skipped",
    "paused",
    "compensated",
    "compensation_failed",
    "interrupted",
]


class StepRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    step_id: str
    tool: str
    status: StepStatus
    attempts: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    call_id: str | None = None
    audit_id: int | None = None
    outcome: str | None = None
    message: str | None = None


class RunRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    created_at: str
    subject: str
    tenant: str | None
    session: str | None
    goal: str
    plan_hash: str
    status: RunStatus
    approval_id: str | None
    finished_at: str | None
    steps: list[StepRecord]
    result: dict[str, Any] | None = None
    lease_owner: str | None = None
    """The gateway process running it (`host:pid:...`); a run nobody renews is interrupted when its lease runs out."""
    lease_expires_at: str | None = None


@dataclass(frozen=True)
class RunLease:
    """A running run and its lease, as the interruption pass sees it."""

    run_id: str
    owner: str | None
    expires_at: str | None
