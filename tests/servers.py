"""Run gateways for end-to-end tests and connect the SDK's client to them.

A test connects per `mode`, "transport-era". The transports: `memory` runs the MCP server in the test's
own process on memory streams, exactly as `portcullis serve --transport stdio` runs it on stdin/stdout
(same server, same initialization options, same JSON-RPC framing), so behaviour tests pay for no process;
`stdio` and `http` run `portcullis serve` in a real process. The eras: `legacy` forces the initialize
handshake, `auto` is the SDK's default (discover, then the 2026-07-28 era).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO, Any

import anyio
import httpx
import httpx2
import pytest
from anyio.abc import TaskGroup, TaskStatus
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.server import NotificationOptions, Server
from mcp.shared.memory import create_client_server_memory_streams
from support import Connect

from gateway import Gateway
from gateway.config import load_config
from gateway.mcp_server import build_server
from gateway.version import __version__

IN_PROCESS = ["memory-legacy", "memory-auto"]
"""Both protocol eras on an in-process server: where behaviour tests run."""


def real(*modes: str) -> list[Any]:
    """Real-process modes, marked `e2e`."""
    return [pytest.param(mode, marks=pytest.mark.e2e) for mode in modes]


REAL = real("stdio-legacy", "stdio-auto", "http-legacy", "http-auto")
"""Both transports in both eras against a real `portcullis serve` process."""
MODES = [*IN_PROCESS, *REAL]
"""The whole matrix: for the representative tests of each behaviour and for transport-specific ones."""


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
        time.sleep(0.05)


class HttpServers:
    """`portcullis serve` over HTTP, one process per config, started on first use."""

    def __init__(self) -> None:
        self._running: dict[Path, tuple[subprocess.Popen[bytes], str, IO[str]]] = {}

    def url(self, config: Path) -> str:
        if config not in self._running:
            self._running[config] = self._start(config, attempts=3)
        return self._running[config][1]

    def _start(self, config: Path, attempts: int) -> tuple[subprocess.Popen[bytes], str, IO[str]]:
        port = free_port()
        log = config.parent / "http-server.log"
        output = log.open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PORTCULLIS_SUBJECT": ""},
        )
        url = f"http://127.0.0.1:{port}/mcp"
        try:
            wait_for_http(url, process, log, 401)
        except RuntimeError:
            output.close()
            if attempts > 1 and "address already in use" in log.read_text():  # the free port was taken meanwhile
                return self._start(config, attempts - 1)
            raise
        return process, url, output

    def running(self) -> set[Path]:
        return set(self._running)

    def stop(self, configs: set[Path]) -> None:
        """Stop the servers of `configs` (all at once: each takes a moment to record its shutdown)."""
        stopping = [self._running.pop(config) for config in configs if config in self._running]
        for process, _, _ in stopping:
            process.terminate()
        for process, _, output in stopping:
            process.wait(timeout=15)
            output.close()


class InProcessGateways:
    """A `Gateway` per config, started on first use inside the test process and kept running in `tasks`.

    Each connection gets its own MCP server (so its own session, as a stdio process would) over the
    one gateway per config, as HTTP sessions share one server process.
    """

    def __init__(self, tasks: TaskGroup) -> None:
        self._tasks = tasks
        self._running: dict[Path, tuple[Gateway, anyio.Event]] = {}
        self._lock = anyio.Lock()
        self.failures: list[Exception] = []

    async def gateway(self, config: Path) -> Gateway:
        async with self._lock:
            if config not in self._running:
                self._running[config] = await self._tasks.start(self._serve, config)
        return self._running[config][0]

    async def _serve(self, config: Path, *, task_status: TaskStatus[tuple[Gateway, anyio.Event]]) -> None:
        stop = anyio.Event()
        started = False
        try:
            async with Gateway(load_config(config)) as gateway:
                task_status.started((gateway, stop))
                started = True
                await stop.wait()
        except Exception as error:
            if not started:
                raise  # the test that asked for the gateway fails with the reason
            # Raised at the end of the session: failing this task would cancel the task group that hosts every test.
            self.failures.append(error)

    def running(self) -> set[Path]:
        return set(self._running)

    def stop(self, configs: set[Path]) -> None:
        """Ask the gateways of `configs` to stop; each does when the event loop next runs (at the latest,
        when the session's task group closes)."""
        for config in configs:
            if config in self._running:
                self._running.pop(config)[1].set()


class Servers:
    """The gateways tests connect to, per config: an HTTP process and an in-process gateway, each started
    on first use. One started while a module runs is stopped when the module ends, unless its config is
    `kept` (configs shared by the whole session). Calling it gives a config's HTTP URL."""

    def __init__(self, tasks: TaskGroup) -> None:
        self.http = HttpServers()
        self.in_process = InProcessGateways(tasks)
        self._kept: set[Path] = set()

    def __call__(self, config: Path) -> str:
        return self.http.url(config)

    def keep(self, config: Path) -> Path:
        self._kept.add(config)
        return config

    def running(self) -> set[Path]:
        return self.http.running() | self.in_process.running()

    @contextmanager
    def scope(self) -> Iterator[None]:
        """Stop, on leaving, what was started inside and is not kept."""
        before = self.running()
        yield
        started = self.running() - before - self._kept
        self.http.stop(started)
        self.in_process.stop(started)

    def stop_all(self) -> None:
        self.http.stop(self.http.running())
        self.in_process.stop(self.in_process.running())

    def raise_failures(self) -> None:
        if self.in_process.failures:
            raise ExceptionGroup("in-process gateways failed while stopping", self.in_process.failures)


def in_process_server(gateway: Gateway, subject: str) -> Server:
    """The server `portcullis serve --transport stdio --as <subject>` runs, built over an in-process gateway."""
    return build_server(gateway, transport="stdio", stdio_subject=subject, stdio_auth="stdio:--as", version=__version__)


@asynccontextmanager
async def memory_transport(server: Server) -> AsyncIterator[Any]:
    """A transport for `Client`: `server` run on memory streams as `serve_stdio` runs it on stdin/stdout."""
    options = server.create_initialization_options(NotificationOptions(tools_changed=True))
    async with create_client_server_memory_streams() as (client_streams, (read, write)):
        done = anyio.Event()

        async def run() -> None:
            try:
                await server.run(read, write, options)
            finally:
                done.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(run)
            try:
                yield client_streams
            finally:
                # End of input, as when a stdio client closes the server's stdin; cancel only a server that hangs.
                await client_streams[1].aclose()
                await write.aclose()
                with anyio.move_on_after(5):
                    await done.wait()
                tasks.cancel_scope.cancel()


def connector(config: Path, mode: str, servers: Servers | Callable[[Path], str], **client: Any) -> Connect:
    """Open an SDK client session to the gateway at `config` as a subject, per `mode` (transport-era).

    `servers` is the `servers` fixture, or for stdio and HTTP only, a function giving a config's HTTP URL.
    """
    transport, era = mode.split("-")

    @asynccontextmanager
    async def memory(subject: str) -> AsyncIterator[Client]:
        if not isinstance(servers, Servers):
            raise TypeError(f"{mode} runs the gateway in-process: pass the `servers` fixture")
        gateway = await servers.in_process.gateway(config)
        async with Client(memory_transport(in_process_server(gateway, subject)), mode=era, **client) as session:
            yield session

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
        url = servers(config)
        headers = {"Authorization": f"Bearer demo-{subject}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http_client,
            Client(streamable_http_client(url, http_client=http_client), mode=era, **client) as session,
        ):
            yield session

    return {"memory": memory, "stdio": stdio, "http": http}[transport]
