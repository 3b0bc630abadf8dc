-- Plan runs (the planner) and their steps, as SQLite keeps them (audit/schema.py), shared by every replica.
--
-- They move only by changes the plan-run store builds (store/postgres/plan_runs.py), each committed with the
-- audit record of the transition; a run is held under its owner's lease until the owner finishes it or another
-- replica finds the lease run out. Times are timestamptz, read back in `utc_now`'s ISO form; JSON is text,
-- exactly as written.

CREATE TABLE IF NOT EXISTS plan_runs (
    id text PRIMARY KEY,
    created_at timestamptz NOT NULL,
    subject text NOT NULL,
    tenant text,
    session text,
    goal text NOT NULL,
    plan_hash text NOT NULL,
    plan text NOT NULL,
    status text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'paused', 'compensated',
                                           'compensation_failed', 'timed_out', 'interrupted')),
    approval_id text,
    finished_at timestamptz,
    result text,
    lease_owner text,
    lease_expires_at timestamptz
);
CREATE INDEX IF NOT EXISTS plan_runs_status ON plan_runs (status, created_at);

-- `n` keeps the steps in the plan's order (SQLite's rowid).
CREATE TABLE IF NOT EXISTS plan_steps (
    run_id text NOT NULL REFERENCES plan_runs (id),
    step_id text NOT NULL,
    tool text NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    started_at timestamptz,
    finished_at timestamptz,
    call_id text,
    audit_id bigint,
    outcome text,
    message text,
    n bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (run_id, step_id)
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_auditor') THEN
        GRANT SELECT ON plan_runs, plan_steps TO portcullis_auditor;
    END IF;
END
$$;
