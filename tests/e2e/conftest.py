"""Real servers, real clients: `portcullis serve` in a subprocess, the SDK's `Client` over
stdio and Streamable HTTP, in both protocol eras (handshake `legacy` and the default `auto`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from support import Connect, make_deployment


@pytest.fixture(scope="session")
def e2e_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_deployment(tmp_path_factory.mktemp("e2e") / "deployment")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def http_url(e2e_config: Path) -> Iterator[str]:
    port = free_port()
    log = (e2e_config.parent / "http-server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(e2e_config), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PORTCULLIS_SUBJECT": ""},
    )
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the HTTP server exited: {(e2e_config.parent / 'http-server.log').read_text()}")
        try:
            if httpx.post(url, json={}, timeout=1).status_code == 401:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the HTTP server did not come up within 30 s")
        time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=15)
    log.close()


@pytest.fixture(params=["stdio-legacy", "stdio-auto", "http-legacy", "http-auto"])
def connect(request: pytest.FixtureRequest, e2e_config: Path) -> Connect:
    transport, mode = request.param.split("-")

    @asynccontextmanager
    async def stdio(subject: str) -> AsyncIterator[Client]:
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "gateway", "serve", "--transport", "stdio", "--config", str(e2e_config), "--as", subject],
            cwd=str(e2e_config.parent),
        )
        async with Client(params, mode=mode) as client:
            yield client

    @asynccontextmanager
    async def http(subject: str) -> AsyncIterator[Client]:
        url = request.getfixturevalue("http_url")
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer demo-{subject}"}, timeout=30) as session:
            async with Client(streamable_http_client(url, http_client=session), mode=mode) as client:
                yield client

    return stdio if transport == "stdio" else http
