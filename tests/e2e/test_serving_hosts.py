"""Serving beyond loopback: DNS-rebinding protection stays on, with the hosts and origins the operator names.

The SDK switches its Host/Origin checks off when bound to anything but loopback; the gateway instead
refuses to start there until `server.allowed_hosts` is set, and honours the names it lists.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from servers import free_port, wait_for_http
from support import make_deployment, portcullis

pytestmark = pytest.mark.e2e
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


def test_binding_beyond_loopback_without_allowed_hosts_is_refused_with_the_fix(tmp_path: Path) -> None:
    config = make_deployment(tmp_path / "d")
    done = portcullis("serve", "--config", str(config), "--host", "0.0.0.0", "--port", str(free_port()))
    assert done.returncode == 1
    assert f"{config}: server.allowed_hosts: binding to 0.0.0.0 needs the Host names clients use" in done.stderr
    assert "Uvicorn running" not in done.stderr + done.stdout  # it never bound


def test_configured_hosts_and_origins_are_accepted_and_others_refused(tmp_path: Path) -> None:
    config = make_deployment(
        tmp_path / "d",
        changes={
            "server": {
                "allowed_hosts": ["gateway.acme.example", "gateway.acme.example:*"],
                "allowed_origins": ["https://console.acme.example"],
            }
        },
    )
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PORTCULLIS_SUBJECT": ""},
        )
        try:
            url = f"http://127.0.0.1:{port}/mcp"
            wait_for_http(url, process, log, 401)
            headers = {"Authorization": "Bearer demo-alice", "Accept": "application/json, text/event-stream"}

            def status(**extra: str) -> int:
                return httpx.post(url, json=INITIALIZE, headers=headers | extra, timeout=10).status_code

            assert status() == 200  # loopback names stay accepted on a loopback bind
            assert status(Host="gateway.acme.example") == 200
            assert status(Host="gateway.acme.example:443") == 200
            assert status(Host="evil.example") == 421  # a rebinding attacker's name
            assert status(Host="gateway.acme.example", Origin="https://console.acme.example") == 200
            assert status(Host="gateway.acme.example", Origin="https://evil.example") == 403
        finally:
            process.terminate()
            process.wait(timeout=15)
