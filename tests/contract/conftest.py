"""The store contract: every implementation of the store protocols (store/protocols.py) passes these tests.

Each fixture is parametrized by implementation: adding a backend (PostgreSQL, for replicas) is
adding its name to `params` here and its class to contract_support.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from contract_support import (
    Backend,
    Clock,
    FlowLabelsFactory,
    MemoryBuckets,
    SharedBuckets,
    SQLiteBackend,
    Verified,
    memory_flow_labels,
    verified,
)


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The audit log and the plan-run store of one backend, on a database of the test's own."""
    return {"sqlite": SQLiteBackend}[request.param](tmp_path)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory"])
def rate_buckets(request: pytest.FixtureRequest, clock: Clock) -> SharedBuckets:
    """The rate-limit buckets under test, on the test's clock."""
    return {"memory": MemoryBuckets}[request.param](clock)


@pytest.fixture(params=["memory"])
def flow_labels(request: pytest.FixtureRequest) -> FlowLabelsFactory:
    """Builds the flow-label store under test with the bounds given."""
    return {"memory": memory_flow_labels}[request.param]


@pytest.fixture(name="verified")
def verified_fixture() -> Verified:
    """Check the whole chain through the protocol; the record bodies in order."""
    return verified
