"""Helpers to run servers for end-to-end tests and connect the SDK's client to them."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from support import Connect

MODES = ["stdio-legacy", "stdio-auto", "http-legacy", "http-auto"]
"""Transport and protocol era: `legacy` forces the handshake era, `auto` is the SDK's default."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_http(url: str, process: subprocess.Popen[bytes], log: Path, expect: int | None) -> None:
    """Wait until `url` answers (with status `expect`, or anything when None); fail if the process dies."""
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()}")
        try:
            status = httpx.post(url, json={}, timeout=1).status_code
            if expect is None or status == expect:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"the server at {url} did not come up within 30 s")
        time.sleep(0.1)


def connector(config: Path, mode: str, serve_http: Callable[[Path], str], **client: Any) -> Connect:
    """Open an SDK client session to the gateway at `config` as a subject, per `mode` (transport-era)."""
    transport, era = mode.split("-")

    @asynccontextmanager
    async def stdio(subject: str) -> AsyncIterator[Client]:
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "gateway", "serve", "--transport", "stdio", "--config", str(config), "--as", subject],
            cwd=str(config.parent),
        )
        async with Client(params, mode=era, **client) as session:
            yield session

    @asynccontextmanager
    async def http(subject: str) -> AsyncIterator[Client]:
        url = serve_http(config)
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer demo-{subject}"}, timeout=30) as http_client:
            async with Client(streamable_http_client(url, http_client=http_client), mode=era, **client) as session:
                yield session

    return stdio if transport == "stdio" else http
