"""DDL of the gateway database: the chained audit log and the approval requests.

Approval requests live beside the audit log so that a request and the audit
record that created it commit in one transaction.
"""

from gateway.outcomes import OutcomeCode

GENESIS_HASH = "0" * 64

REFUSALS = (
    OutcomeCode.DENIED,
    OutcomeCode.UNKNOWN_TOOL,
    OutcomeCode.APPROVAL_DENIED,
    OutcomeCode.CONSENT_REQUIRED,
    OutcomeCode.GUARDRAIL_BLOCKED,
    OutcomeCode.INVALID_ARGUMENTS,
    OutcomeCode.ARGUMENTS_TOO_LARGE,
    OutcomeCode.RATE_LIMITED,
    OutcomeCode.TOOL_DEFINITION_CHANGED,
    OutcomeCode.OUTPUT_TOO_LARGE,
)
"""The outcomes by which the gateway refused a call (the `denials` view, with every `deny` decision).

Failures are not refusals: `tool_failed`, `timeout`, `upstream_unavailable`, `internal_error`."""
_REFUSALS_SQL = ", ".join(f"'{code.value}'" for code in REFUSALS)

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    event TEXT NOT NULL,
    call_id TEXT,
    subject TEXT,
    tool TEXT,
    decision TEXT,
    outcome TEXT,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_subject ON audit_log (subject, seq);
CREATE INDEX IF NOT EXISTS audit_tool ON audit_log (tool, seq);
CREATE INDEX IF NOT EXISTS audit_decision ON audit_log (decision, seq);
CREATE INDEX IF NOT EXISTS audit_ts ON audit_log (ts);
CREATE INDEX IF NOT EXISTS audit_call ON audit_log (call_id);
CREATE INDEX IF NOT EXISTS audit_tenant ON audit_log (json_extract(body, '$.tenant'), seq);
CREATE INDEX IF NOT EXISTS audit_approval ON audit_log (json_extract(body, '$.approval_id'), seq);
CREATE INDEX IF NOT EXISTS audit_plan_run ON audit_log (json_extract(body, '$.plan_run_id'), seq);

-- Append-only: no UPDATE, no DELETE, and every INSERT must extend the chain
-- (this also stops INSERT OR REPLACE, which would not fire the DELETE trigger).
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END;
CREATE TRIGGER IF NOT EXISTS audit_extends_chain BEFORE INSERT ON audit_log
WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_log)
  OR NEW.prev_hash IS NOT COALESCE(
       (SELECT hash FROM audit_log WHERE seq = NEW.seq - 1), '{GENESIS_HASH}')
BEGIN SELECT RAISE(ABORT, 'audit_log insert must extend the hash chain'); END;

-- Stable views for sqlite-utils, Datasette and auditors' own SQL (columns documented in the README).
-- Replaced on every open, in one transaction (two processes may open at once), so a database made by
-- an older release gets today's views.
BEGIN IMMEDIATE;
DROP VIEW IF EXISTS denials;
DROP VIEW IF EXISTS calls;
DROP VIEW IF EXISTS approvals;
CREATE VIEW calls AS
    SELECT seq, ts, call_id, subject, json_extract(body, '$.tenant') AS tenant, tool, decision, outcome,
           json_extract(body, '$.rule') AS rule, json_extract(body, '$.latency_ms') AS latency_ms,
           json_extract(body, '$.approval_id') AS approval_id, json_extract(body, '$.auth') AS auth
    FROM audit_log WHERE event = 'tool.call';
CREATE VIEW denials AS
    SELECT * FROM calls WHERE decision = 'deny' OR outcome IN ({_REFUSALS_SQL});
CREATE VIEW approvals AS
    SELECT id, status, subject, tool, approver_role, approvals_required, created_at, expires_at, approved_at,
           finished_at, json_extract(result, '$.code') AS result_code
    FROM approval_requests;
COMMIT;

CREATE TABLE IF NOT EXISTS approval_requests (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,
    subject TEXT NOT NULL,
    tool TEXT NOT NULL,
    arguments TEXT NOT NULL,
    arguments_digest TEXT NOT NULL,
    definition_hash TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    approver_role TEXT,
    approvals_required INTEGER NOT NULL DEFAULT 1,
    reasons TEXT NOT NULL,
    call_id TEXT NOT NULL,
    expires_at TEXT,
    approved_at TEXT,
    execute_by TEXT,
    finished_at TEXT,
    result TEXT,
    tenant TEXT,
    roles TEXT NOT NULL DEFAULT '[]',
    revisions TEXT NOT NULL DEFAULT '[]',
    status_reason TEXT,
    lease_owner TEXT,
    lease_expires_at TEXT
);
CREATE INDEX IF NOT EXISTS approvals_status ON approval_requests (status, created_at);

-- Plan runs (the planner): one row per run and per step, written with the audit records of their transitions.
CREATE TABLE IF NOT EXISTS plan_runs (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    subject TEXT NOT NULL,
    tenant TEXT,
    session TEXT,
    goal TEXT NOT NULL,
    plan_hash TEXT NOT NULL,
    plan TEXT NOT NULL,
    status TEXT NOT NULL,
    approval_id TEXT,
    finished_at TEXT,
    result TEXT,
    lease_owner TEXT,
    lease_expires_at TEXT
);
CREATE INDEX IF NOT EXISTS plan_runs_status ON plan_runs (status, created_at);
CREATE TABLE IF NOT EXISTS plan_steps (
    run_id TEXT NOT NULL REFERENCES plan_runs (id),
    step_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at TEXT,
    finished_at TEXT,
    call_id TEXT,
    audit_id INTEGER,
    outcome TEXT,
    message TEXT,
    PRIMARY KEY (run_id, step_id)
);

CREATE TABLE IF NOT EXISTS approval_decisions (
    request_id TEXT NOT NULL REFERENCES approval_requests (id),
    approver TEXT NOT NULL,
    decision TEXT NOT NULL,
    comment TEXT,
    ts TEXT NOT NULL,
    PRIMARY KEY (request_id, approver)
);
"""

APPROVAL_COLUMNS = {
    "expires_at": "TEXT",
    "approved_at": "TEXT",
    "execute_by": "TEXT",
    "finished_at": "TEXT",
    "result": "TEXT",
    "tenant": "TEXT",
    "roles": "TEXT NOT NULL DEFAULT '[]'",
    "revisions": "TEXT NOT NULL DEFAULT '[]'",
    "status_reason": "TEXT",
    "lease_owner": "TEXT",
    "lease_expires_at": "TEXT",
}
"""Columns added after the first release: databases created before them get them on open."""

PLAN_RUN_COLUMNS = {
    "lease_owner": "TEXT",
    "lease_expires_at": "TEXT",
}
"""Plan-run columns added after the first release (the run's owner and lease); added on open like the above."""
