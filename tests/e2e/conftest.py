"""Real clients against the gateway: the SDK's `Client` in both protocol eras, on an in-process server
(behaviour tests) and against `portcullis serve` over stdio and Streamable HTTP (marked `e2e`).

A test that takes `connect` (or another `connect_*` fixture) runs once per `mode`: by default the two
in-process modes. Tests that stand for their behaviour on the wire, and tests of transport-specific
behaviour, parametrize `mode` themselves with `MODES` (or `real(...)`) from tests/servers.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from servers import IN_PROCESS, Servers, connector
from support import Connect, make_deployment, toy_upstream


@pytest.fixture(scope="session")
async def _e2e_servers(anyio_backend: str) -> AsyncIterator[Servers]:
    """Gateways per config: HTTP processes, and in-process gateways running in this task group.

    Tests take it as `servers`; the fixtures here take it by this name, which a test module's own
    fixture named `servers` cannot shadow."""
    async with anyio.create_task_group() as tasks:
        running = Servers(tasks)
        try:
            yield running
        finally:
            running.stop_all()
    running.raise_failures()


@pytest.fixture(scope="module", autouse=True)
def _servers_last_a_module(_e2e_servers: Servers) -> Iterator[None]:
    """Servers a module started stop with it, so idle gateways do not poll their queues for the whole run."""
    with _e2e_servers.scope():
        yield


@pytest.fixture(params=IN_PROCESS)
def mode(request: pytest.FixtureRequest) -> str:
    """Transport and era of `connect`: override with `@pytest.mark.parametrize("mode", MODES)`."""
    return str(request.param)


@pytest.fixture(scope="session")
def servers(_e2e_servers: Servers) -> Servers:
    """Gateways per config (see `Servers`): what `connector` takes."""
    return _e2e_servers


@pytest.fixture(scope="session")
def serve_http(_e2e_servers: Servers) -> Servers:
    """`servers` by its older name: called with a config, it starts `portcullis serve` over HTTP (once) and
    gives the URL; `connector` takes it as `servers`."""
    return _e2e_servers


@pytest.fixture(scope="session")
def e2e_config(tmp_path_factory: pytest.TempPathFactory, _e2e_servers: Servers) -> Path:
    return _e2e_servers.keep(make_deployment(tmp_path_factory.mktemp("e2e") / "deployment"))


@pytest.fixture(scope="session")
def http_url(e2e_config: Path, _e2e_servers: Servers) -> str:
    return _e2e_servers.http.url(e2e_config)


@pytest.fixture
def connect(mode: str, e2e_config: Path, _e2e_servers: Servers) -> Connect:
    return connector(e2e_config, mode, _e2e_servers)


@pytest.fixture(scope="session")
def proxy_config(tmp_path_factory: pytest.TempPathFactory, _e2e_servers: Servers) -> Path:
    """A deployment proxying the toy upstream (new tools allowed: pinning is tested elsewhere); its tools
    may ask alice's user and model (elicitation and sampling are relayed only where policy allows)."""
    return _e2e_servers.keep(
        make_deployment(
            tmp_path_factory.mktemp("proxy") / "deployment",
            extra_policy="p, role:support, toy.*, call, allow\np, role:support, toy.*, elicit, allow\n"
            "p, role:support, toy.*, sample, allow\n",
            changes={"upstreams": [toy_upstream(timeout_seconds=20)], "tools": {"new_tools": "allow"}},
        )
    )


@pytest.fixture
def connect_proxy(mode: str, proxy_config: Path, _e2e_servers: Servers) -> Connect:
    return connector(proxy_config, mode, _e2e_servers)
