from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pg import PostgresServer, postgres_server
from support import make_deployment

from gateway import Gateway
from gateway.snapshot import Snapshot


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """One backend for the session, so session-scoped async fixtures (in-process gateways) can exist."""
    return "asyncio"


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return make_deployment(tmp_path / "deployment")


@pytest.fixture
def snapshot(config_path: Path) -> Snapshot:
    return Snapshot.from_path(config_path)


@pytest.fixture
async def gateway(snapshot: Snapshot) -> AsyncIterator[Gateway]:
    async with Gateway(snapshot.config) as running:
        yield running


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server per test worker (about 2 s to start); tests take a database each."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def pg_dsn(postgres: PostgresServer) -> str:
    """A fresh, empty database of the test's own on the worker's server."""
    return postgres.dsn(postgres.create_database())
