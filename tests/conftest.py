from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

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
