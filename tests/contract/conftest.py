"""The store contract: every implementation of the store protocols (store/protocols.py) passes these tests.

Each fixture is parametrized by implementation: adding a backend (PostgreSQL, for replicas) is
adding its name to `params` here and its class to contract_support.py.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from contract_support import (
    Backend,
    Clock,
    FlowLabelsFactory,
    MemoryBuckets,
    PostgresBackend,
    SharedBuckets,
    SQLiteBackend,
    Verified,
    memory_flow_labels,
    verified,
)
from pg_state_support import pg_buckets, pg_flow_labels


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The audit log and the plan-run store of one backend, on a database of the test's own."""
    if request.param == "sqlite":
        yield SQLiteBackend(tmp_path)
        return
    with PostgresBackend.on(request.getfixturevalue("postgres")) as postgres:
        yield postgres


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "postgresql"])
def rate_buckets(request: pytest.FixtureRequest, clock: Clock) -> Iterator[SharedBuckets]:
    """The rate-limit buckets under test, on the test's clock (each PostgreSQL handle: another process)."""
    if request.param == "postgresql":
        with pg_buckets(request.getfixturevalue("pg_dsn"), clock) as buckets:
            yield buckets
    else:
        yield MemoryBuckets(clock)


@pytest.fixture(params=["memory", "postgresql"])
def flow_labels(request: pytest.FixtureRequest) -> Iterator[FlowLabelsFactory]:
    """Builds the flow-label store under test with the bounds given."""
    if request.param == "postgresql":
        with pg_flow_labels(request.getfixturevalue("pg_dsn")) as factory:
            yield factory
    else:
        yield memory_flow_labels


@pytest.fixture(name="verified")
def verified_fixture() -> Verified:
    """Check the whole chain through the protocol; the record bodies in order."""
    return verified
