-- The hash-chained audit log, append-only, and the meta table that names the salt hashing it.
--
-- The same columns as SQLite's (audit/schema.py), the same text in them: `ts` is the record's own text and
-- `body` the exact canonical JSON that was hashed, so a chain read from either backend verifies the same way.
-- The body stays text, never json/jsonb: jsonb reorders it, and neither turns \u0000 (which a tool's arguments
-- may hold) into text, so fields are read through `audit_field`, which never fails on such a record.

CREATE TABLE IF NOT EXISTS meta (
    key text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE IF NOT EXISTS audit_log (
    seq bigint PRIMARY KEY,
    ts text NOT NULL,
    event text NOT NULL,
    call_id text,
    subject text,
    tool text,
    decision text,
    outcome text,
    body text NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL
);

-- A top-level field of a record's body as text (NULL when absent or null). A \u0000 anywhere in the body is
-- read as U+FFFD first: PostgreSQL cannot turn it into text, and one such record must not break every query.
-- Filter with `audit_field(body, 'tenant') = %s` to use the indexes below.
CREATE OR REPLACE FUNCTION audit_field(body text, key text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT replace(body, '\u0000', '\ufffd')::json ->> key $$;

CREATE INDEX IF NOT EXISTS audit_subject ON audit_log (subject, seq);
CREATE INDEX IF NOT EXISTS audit_tool ON audit_log (tool, seq);
CREATE INDEX IF NOT EXISTS audit_decision ON audit_log (decision, seq);
CREATE INDEX IF NOT EXISTS audit_ts ON audit_log (ts);
CREATE INDEX IF NOT EXISTS audit_call ON audit_log (call_id);
CREATE INDEX IF NOT EXISTS audit_tenant ON audit_log (audit_field(body, 'tenant'), seq);
CREATE INDEX IF NOT EXISTS audit_approval ON audit_log (audit_field(body, 'approval_id'), seq);
CREATE INDEX IF NOT EXISTS audit_plan_run ON audit_log (audit_field(body, 'plan_run_id'), seq);

-- Append-only: no UPDATE, DELETE or TRUNCATE, and every INSERT extends the chain (the next number, linked to
-- the last hash). The gateway's writers serialize their appends (store/postgres/audit_log.py); these
-- triggers stop anyone else, short of the table's owner disabling them, which an auditor sees in pg_trigger.
CREATE OR REPLACE FUNCTION audit_log_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE OR REPLACE FUNCTION audit_log_extends_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_seq bigint;
    last_hash text;
BEGIN
    SELECT seq, hash INTO last_seq, last_hash FROM audit_log ORDER BY seq DESC LIMIT 1;
    IF NEW.seq IS DISTINCT FROM COALESCE(last_seq, 0) + 1
       OR NEW.prev_hash IS DISTINCT FROM COALESCE(last_hash, repeat('0', 64)) THEN
        RAISE EXCEPTION 'audit_log insert must extend the hash chain (record %, after %)', NEW.seq, COALESCE(last_seq, 0)
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS audit_no_update ON audit_log;
CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse();
DROP TRIGGER IF EXISTS audit_no_truncate ON audit_log;
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse();
DROP TRIGGER IF EXISTS audit_extends_chain ON audit_log;
CREATE TRIGGER audit_extends_chain BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_extends_chain();

-- The same views as SQLite's, for auditors' own SQL (columns documented in the README). The refusals are
-- audit/schema.py's REFUSALS (tests/unit/store/test_postgres_migrate.py keeps the two lists equal).
CREATE OR REPLACE VIEW calls AS
    SELECT seq, ts, call_id, subject, audit_field(body, 'tenant') AS tenant, tool, decision, outcome,
           audit_field(body, 'rule') AS rule, audit_field(body, 'latency_ms')::double precision AS latency_ms,
           audit_field(body, 'approval_id') AS approval_id, audit_field(body, 'auth') AS auth
    FROM audit_log WHERE event = 'tool.call';
CREATE OR REPLACE VIEW denials AS
    SELECT * FROM calls WHERE decision = 'deny' OR outcome IN (
        'denied', 'unknown_tool', 'approval_denied', 'consent_required', 'guardrail_blocked', 'invalid_arguments',
        'arguments_too_large', 'rate_limited', 'tool_definition_changed', 'output_too_large'
    );

-- Nobody but the owner may rewrite history; an auditor's role reads it. The role is the cluster's, so it is
-- made once (by whoever may make roles: without that right the grant is left to the operator).
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_auditor') THEN
        IF NOT (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
            RAISE NOTICE 'role portcullis_auditor not created: % may not create roles', current_user;
            RETURN;
        END IF;
        BEGIN
            CREATE ROLE portcullis_auditor NOLOGIN;
        EXCEPTION WHEN duplicate_object THEN
            NULL;  -- another database of this cluster made it just now
        END;
    END IF;
    GRANT SELECT ON audit_log, meta, calls, denials TO portcullis_auditor;
END
$$;
