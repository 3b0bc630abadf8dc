"""The role a replica connects as may serve, and may not rewrite history: it owns nothing.

`db init` runs as the schema owner; the gateway connects as a member of `portcullis_gateway`
(migrations/0004_roles.sql). These run real statements as such a role against a real server.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from pg import PostgresServer

from gateway.audit import AuditRecord
from gateway.store.postgres.approvals import PgApprovalStore
from gateway.store.postgres.audit_log import PgAuditLog
from gateway.store.postgres.connect import open_pool
from gateway.store.postgres.flow_labels import PgFlowLabels
from gateway.store.postgres.migrate import migrate
from gateway.store.postgres.plan_runs import PgPlanRuns
from gateway.store.postgres.rate_buckets import PgRateBuckets
from gateway.store.protocols import Bucket
from gateway.approvals.requests import later, pending_request

pytestmark = pytest.mark.anyio


@pytest.fixture
def app_dsn(postgres: PostgresServer) -> str:
    """A fresh database migrated by its owner, and a login role in `portcullis_gateway` to connect as."""
    database = postgres.create_database()
    with psycopg.connect(postgres.dsn(database), autocommit=True) as owner:
        migrate(owner)
        role = f"app_{uuid.uuid4().hex[:10]}"
        owner.execute(f"CREATE ROLE {role} LOGIN IN ROLE portcullis_gateway")
    return postgres.dsn(database, user=role)


async def test_a_gateway_role_serves_every_store(app_dsn: str) -> None:
    with open_pool(app_dsn) as pool:
        log = PgAuditLog(pool)
        log.open("roles-test-salt")
        try:
            approvals, runs = PgApprovalStore(pool), PgPlanRuns(pool)
            request = pending_request(
                subject="bob", tool="payments.refund", arguments={"amount": 150}, definition_hash="d",
                policy_version="v", approver_role="role:manager", approvals_required=1, reasons=["over 100"],
                call_id="c1", expires_at=later(3600), tenant=None, roles=[],
            )  # fmt: skip
            await log.append(AuditRecord(event="tool.call", subject="bob"), [approvals.create(request)])
            await log.append(
                AuditRecord(event="approval.approve", subject="carol"),
                [approvals.decide(request.id, "carol", "approve", "ok", window_seconds=60)],
            )
            start = runs.start(
                "run1",
                owner="me",
                subject="alice",
                tenant=None,
                session=None,
                plan={"steps": []},
                plan_hash="h",
                approval_id=None,
            )
            await log.append(AuditRecord(event="plan.start"), [start])
            assert await PgRateBuckets(pool).take([Bucket("k", 1, 1)]) is None
            await PgFlowLabels(pool).record("s1", frozenset({"private_data"}), "c1")
            assert (await approvals.get(request.id)).status.value == "approved"  # type: ignore[union-attr]
            assert (await log.head())[0] == 3
        finally:
            await log.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET subject = 'mallory'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "ALTER TABLE audit_log DISABLE TRIGGER ALL",
        "DROP TABLE audit_log",
        "DROP TRIGGER audit_no_update ON audit_log",
    ],
)
def test_a_gateway_role_cannot_rewrite_history(app_dsn: str, statement: str) -> None:
    with psycopg.connect(app_dsn, autocommit=True) as app, pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute(statement)
