-- The state every replica decides by: approval requests and their ballots, rate-limit buckets, flow labels.
--
-- Approval requests move only by changes the approval store builds (store/postgres/approvals.py), each
-- committed with its audit record. Times are timestamptz; JSON is kept as canonical text, exactly as
-- written (jsonb would reorder it and refuses \u0000, which a tool's result may hold).

CREATE TABLE IF NOT EXISTS approval_requests (
    id text PRIMARY KEY,
    created_at timestamptz NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'cancelled',
                                           'executing', 'succeeded', 'failed', 'interrupted')),
    subject text NOT NULL,
    tool text NOT NULL,
    arguments text NOT NULL,
    arguments_digest text NOT NULL,
    definition_hash text NOT NULL,
    policy_version text NOT NULL,
    approver_role text,
    approvals_required integer NOT NULL DEFAULT 1,
    reasons text NOT NULL,
    call_id text NOT NULL,
    expires_at timestamptz,
    approved_at timestamptz,
    execute_by timestamptz,
    finished_at timestamptz,
    result text,
    tenant text,
    roles text NOT NULL DEFAULT '[]',
    revisions text NOT NULL DEFAULT '[]',
    status_reason text,
    lease_owner text,
    lease_expires_at timestamptz
);
CREATE INDEX IF NOT EXISTS approvals_status ON approval_requests (status, created_at);

-- One ballot per approver and request; `n` keeps the order they were cast in when two share a time.
CREATE TABLE IF NOT EXISTS approval_decisions (
    request_id text NOT NULL REFERENCES approval_requests (id),
    approver text NOT NULL,
    decision text NOT NULL CHECK (decision IN ('approve', 'deny')),
    comment text,
    ts timestamptz NOT NULL,
    n bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (request_id, approver)
);

-- The same view as SQLite's, for auditors' own SQL.
CREATE OR REPLACE VIEW approvals AS
    SELECT id, status, subject, tool, approver_role, approvals_required, created_at, expires_at, approved_at,
           finished_at, result::json ->> 'code' AS result_code
    FROM approval_requests;

-- Token buckets shared by every replica (store/postgres/rate_buckets.py). UNLOGGED: no WAL per call; a crash
-- or a fail-over empties the table, and an absent bucket is a full one, so the worst loss is one refill.
-- `updated_at` is seconds since the epoch on the clock that last took from the bucket (the database's).
CREATE UNLOGGED TABLE IF NOT EXISTS rate_buckets (
    key text PRIMARY KEY,
    level double precision NOT NULL,
    updated_at double precision NOT NULL,
    capacity double precision NOT NULL,
    per_second double precision NOT NULL
);

-- What each session has read (store/postgres/flow_labels.py): the calls that gave it each label, the latest
-- few per label, for the most recently active sessions. `touched` orders sessions by their last record.
CREATE SEQUENCE IF NOT EXISTS flow_touch;
CREATE TABLE IF NOT EXISTS flow_sessions (
    session text PRIMARY KEY,
    touched bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS flow_sessions_touched ON flow_sessions (touched);
CREATE TABLE IF NOT EXISTS flow_links (
    session text NOT NULL REFERENCES flow_sessions (session) ON DELETE CASCADE,
    label text NOT NULL,
    n bigint GENERATED ALWAYS AS IDENTITY,
    call_id text NOT NULL,
    PRIMARY KEY (session, label, n)
);
