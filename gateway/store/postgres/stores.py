"""Every store on one PostgreSQL database, for `store: {backend: postgresql}`: what N replicas share.

One connection pool per process serves them all. Opening connects it (a server that is down stops
`serve` with the DSN, its password hidden, and the driver's reason), checks the schema version (a
database `portcullis db init` has not brought to this release's version is refused, never
migrated behind an operator's back), then settles the audit salt.
"""

from __future__ import annotations

import anyio.to_thread

from gateway.approvals.store import ApprovalStore
from gateway.config import GatewayConfig
from gateway.store.postgres.approvals import PgApprovalStore
from gateway.store.postgres.audit_log import PgAuditLog
from gateway.store.postgres.audit_reads import PgAuditReads
from gateway.store.postgres.connect import PoolSettings, new_pool, redact, start
from gateway.store.postgres.flow_labels import PgFlowLabels
from gateway.store.postgres.leader import PgLeader
from gateway.store.postgres.migrate import require_current
from gateway.store.postgres.notices import PgNotices
from gateway.store.postgres.plan_runs import PgPlanRuns
from gateway.store.postgres.rate_buckets import PgRateBuckets
from gateway.store.stores import Stores


def postgres_stores(config: GatewayConfig) -> Stores:
    """The stores on `store.dsn`, not yet connected."""
    dsn = config.store.dsn or ""
    settings = PoolSettings(
        max_size=config.store.pool_size,
        connect_timeout=config.store.connect_timeout_seconds,
        wait_timeout=config.store.lock_timeout_seconds,
    )
    pool = new_pool(dsn, settings)
    audit = PgAuditLog(pool, config.resolve(config.audit.salt_file), config.audit.write_timeout_seconds)
    approvals: ApprovalStore = PgApprovalStore(pool)

    async def opener(salt: str | None) -> None:
        def connect() -> None:
            start(pool, dsn, settings.connect_timeout)
            try:
                with pool.connection() as connection:
                    require_current(connection)
            except BaseException:
                pool.close()
                raise

        await anyio.to_thread.run_sync(connect)
        try:
            await anyio.to_thread.run_sync(audit.open, salt)
        except BaseException:
            await anyio.to_thread.run_sync(pool.close)
            raise

    leader = PgLeader(dsn, connect_timeout=settings.connect_timeout)

    async def closer() -> None:
        try:
            await audit.close()
        finally:
            await leader.release()
            await anyio.to_thread.run_sync(pool.close)

    return Stores(
        backend="postgresql",
        audit=audit,
        approvals=approvals,
        plan_runs=PgPlanRuns(pool),
        rate_buckets=PgRateBuckets(pool),
        flow_labels=PgFlowLabels(pool),
        reads=PgAuditReads(pool),
        opener=opener,
        closer=closer,
        where=redact(dsn),
        watch=PgNotices(dsn, settings.connect_timeout).watch,
        checkpoint_turn=leader.is_mine,
    )
