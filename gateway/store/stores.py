"""The stores of one deployment, built from `store:` in `portcullis.yaml`: SQLite by default, or PostgreSQL.

The gateway wires what this returns and never names a backend: every service depends only on
the protocols (store/protocols.py, approvals/store.py, ports.py). With SQLite, rate limits and
flow labels stay in this process's memory (one process owns the file's calls); with PostgreSQL,
every store is in the shared database, so N replicas give a caller one quota and see each
other's flows. Opening does the I/O (the pool connects, the schema version is checked, the salt
settled): a database that is down or not initialised stops `serve` with a message naming the
fault and the fix, and nothing is served on a guess.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.approvals.store import ApprovalStore
    from gateway.config import GatewayConfig
    from gateway.ports import AuditReads
    from gateway.store.protocols import AuditLog, FlowLabels, PlanRunStore, RateBuckets


@dataclass
class Stores:
    """Every store of one backend, sharing one database (and its transactions)."""

    backend: str
    audit: AuditLog
    approvals: ApprovalStore
    plan_runs: PlanRunStore
    rate_buckets: RateBuckets
    flow_labels: FlowLabels
    reads: AuditReads
    opener: Callable[[str | None], Awaitable[None]]
    """Connect, check the schema and open the audit log with the configured salt."""
    closer: Callable[[], Awaitable[None]]
    where: str
    """Where the state lives, for messages (a path, or a DSN with its password hidden)."""
    watch: Callable[[Callable[[str], None]], Coroutine[Any, Any, None]] | None = None
    """Runs until cancelled, calling back with the id of each approval request another process changed
    (`*`: any may have); None where polling is all there is (SQLite)."""
    checkpoint_turn: Callable[[], Awaitable[bool]] | None = None
    """Whether this process signs the periodic checkpoints now (one replica of those sharing the store);
    None: it always does (one process per SQLite file)."""

    async def open(self, configured_salt: str | None) -> None:
        await self.opener(configured_salt)

    async def close(self) -> None:
        await self.closer()


def build_stores(config: GatewayConfig) -> Stores:
    """The stores `config` names, not yet opened (no I/O here: `Stores.open` does it)."""
    if config.store.backend == "postgresql":
        from gateway.store.postgres.stores import postgres_stores

        return postgres_stores(config)
    return sqlite_stores(config)


def sqlite_stores(config: GatewayConfig) -> Stores:
    """One SQLite file (`audit.path`) for the log, approvals and plan runs; limits and flows in memory."""
    from gateway.approvals.sqlite_store import SqliteApprovalStore
    from gateway.audit import AuditStore
    from gateway.guardrails.flows import FlowTracker
    from gateway.guardrails.rate_limits import MemoryRateBuckets
    from gateway.reads import StoreReads
    from gateway.store.sqlite.plan_runs import SQLitePlanRuns

    audit = AuditStore(
        config.resolve(config.audit.path),
        config.audit.write_timeout_seconds,
        config.resolve(config.audit.salt_file),
    )

    async def opener(salt: str | None) -> None:
        audit.open(salt)

    return Stores(
        backend="sqlite",
        audit=audit,
        approvals=SqliteApprovalStore(audit.path),
        plan_runs=SQLitePlanRuns(audit.path),
        rate_buckets=MemoryRateBuckets(),
        flow_labels=FlowTracker(),
        reads=StoreReads(audit.path),
        opener=opener,
        closer=audit.close,
        where=str(audit.path),
    )
