"""Real servers, real clients: `portcullis serve` in a subprocess, the SDK's `Client` over
stdio and Streamable HTTP, in both protocol eras (handshake `legacy` and the default `auto`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
from servers import MODES, connector, free_port, wait_for_http
from support import Connect, make_deployment, toy_upstream


@pytest.fixture(scope="session")
def serve_http() -> Iterator[Callable[[Path], str]]:
    """Start `portcullis serve` over HTTP for a config (once per config); return its URL."""
    running: dict[Path, tuple[subprocess.Popen[bytes], str, IO[str]]] = {}

    def start(config: Path) -> str:
        if config not in running:
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
            wait_for_http(url, process, log, 401)
            running[config] = (process, url, output)
        return running[config][1]

    yield start
    for process, _, output in running.values():
        process.terminate()
        process.wait(timeout=15)
        output.close()


@pytest.fixture(scope="session")
def e2e_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_deployment(tmp_path_factory.mktemp("e2e") / "deployment")


@pytest.fixture(scope="session")
def http_url(e2e_config: Path, serve_http: Callable[[Path], str]) -> str:
    return serve_http(e2e_config)


@pytest.fixture(params=MODES)
def connect(request: pytest.FixtureRequest, e2e_config: Path, serve_http: Callable[[Path], str]) -> Connect:
    return connector(e2e_config, request.param, serve_http)


@pytest.fixture(scope="session")
def proxy_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deployment proxying the toy upstream (new tools allowed: pinning is tested elsewhere); its tools
    may ask alice's user and model (elicitation and sampling are relayed only where policy allows)."""
    return make_deployment(
        tmp_path_factory.mktemp("proxy") / "deployment",
        extra_policy="p, role:support, toy.*, call, allow\np, role:support, toy.*, elicit, allow\n"
        "p, role:support, toy.*, sample, allow\n",
        changes={"upstreams": [toy_upstream(timeout_seconds=20)], "tools": {"new_tools": "allow"}},
    )


@pytest.fixture(params=MODES)
def connect_proxy(request: pytest.FixtureRequest, proxy_config: Path, serve_http: Callable[[Path], str]) -> Connect:
    return connector(proxy_config, request.param, serve_http)
