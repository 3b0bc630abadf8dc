-- The two roles replicas and auditors are given, and what each may do. The tables belong to the role
-- that ran `portcullis db init` (the schema owner): a gateway connecting as the owner could disable the
-- audit log's triggers, so it connects as a role of its own that is a member of `portcullis_gateway`
-- (CREATE ROLE portcullis_app LOGIN IN ROLE portcullis_gateway): it may append to the audit log and
-- read it, and change the state tables, but never update, delete or truncate history, and, owning
-- nothing, never alter a table or a trigger. `portcullis_auditor` reads everything and changes nothing.
-- Roles are the cluster's: each is made once, by whoever may make roles (else the operator makes it,
-- and `db init` again grants to it).

DO $$
DECLARE
    may_create boolean := (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user);
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['portcullis_gateway', 'portcullis_auditor'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name) THEN
            IF NOT may_create THEN
                RAISE NOTICE 'role % not created: % may not create roles', name, current_user;
                CONTINUE;
            END IF;
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', name);
            EXCEPTION WHEN duplicate_object THEN
                NULL;  -- another database of this cluster made it just now
            END;
        END IF;
    END LOOP;

    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_gateway') THEN
        GRANT SELECT, INSERT ON audit_log TO portcullis_gateway;
        GRANT SELECT, INSERT, UPDATE ON meta TO portcullis_gateway;
        GRANT SELECT ON schema_migrations, calls, denials, approvals TO portcullis_gateway;
        GRANT SELECT, INSERT, UPDATE, DELETE ON plan_runs, plan_steps, approval_requests, approval_decisions,
            rate_buckets, flow_sessions, flow_links TO portcullis_gateway;
        GRANT USAGE ON SEQUENCE flow_touch TO portcullis_gateway;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_auditor') THEN
        GRANT SELECT ON audit_log, meta, schema_migrations, calls, denials, approvals, plan_runs, plan_steps,
            approval_requests, approval_decisions TO portcullis_auditor;
    END IF;
END
$$;
