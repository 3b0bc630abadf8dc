"""Starting and stopping the gateway says what matters and nothing else (issue 14, item 11).

`make run` installs only the package and stops everything it started on SIGTERM; `serve` prints
no deprecation warning and no library INFO lines; a hot reload is logged; a file that is not an
audit database is one line naming it, not a traceback.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import tomllib
import warnings
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from servers import free_port, wait_for_http
from support import REPO, make_deployment

from gateway import Gateway
from gateway.config import load_config
from gateway.serving import build_http_app

pytestmark = pytest.mark.anyio
VENV = Path(sys.prefix)
"""The environment running these tests: `make` is pointed at it, so it installs nothing."""


def make(*args: str) -> list[str]:
    return ["make", "--no-print-directory", "-C", str(REPO), "-o", f"{VENV}/.installed", *args, f"VENV={VENV}"]


def test_make_run_installs_the_package_without_the_test_extras(tmp_path: Path) -> None:
    fresh = tmp_path / "venv"  # nothing there yet: `make -n` prints every install step it would take
    run = subprocess.run(["make", "-n", "-C", str(REPO), "run", f"VENV={fresh}"], capture_output=True, text=True)
    test = subprocess.run(["make", "-n", "-C", str(REPO), "test", f"VENV={fresh}"], capture_output=True, text=True)
    assert run.returncode == 0 and test.returncode == 0, run.stderr + test.stderr
    installs = [line for line in run.stdout.splitlines() if "pip install" in line and "-e" in line]
    assert installs and all("[test]" not in line for line in installs)
    assert any("-e '.[test]'" in line for line in test.stdout.splitlines())


def test_the_package_metadata_uses_an_spdx_license() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"  # a table here is deprecated: a banner on every install
    (setuptools,) = [r for r in project["build-system"]["requires"] if r.startswith("setuptools")]
    assert setuptools == "setuptools>=77"  # the first to read an SPDX expression


@pytest.fixture
def deployment(tmp_path: Path) -> Path:
    return make_deployment(tmp_path / "deployment", changes={"server": {"port": free_port()}})


@pytest.fixture
def started() -> Iterator[list[psutil.Process]]:
    """Processes a test started (put every one in: an orphan is no longer anyone's child); the survivors are
    killed at the end."""
    processes: list[psutil.Process] = []
    yield processes
    for process in processes:
        if process.is_running():
            process.kill()


def test_sigterm_to_make_run_stops_the_gateway_and_the_inventory(
    deployment: Path, started: list[psutil.Process]
) -> None:
    log = deployment.parent / "make-run.log"
    with log.open("w") as output:
        command = make("run", f"CONFIG={deployment}", f"INVENTORY_PORT={free_port()}")
        runner = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    started.append(psutil.Process(runner.pid))
    port = load_config(deployment).server.port
    try:
        wait_for_http(f"http://127.0.0.1:{port}/mcp", runner, log, 401)
    finally:  # what make started is in its process group, whether or not the gateway came up
        started.extend(p for p in psutil.process_iter() if _group(p) == runner.pid)
    children = psutil.Process(runner.pid).children(recursive=True)
    gateway = [p for p in children if "serve" in p.cmdline()]
    inventory = [p for p in children if any(part.endswith("inventory.py") for part in p.cmdline())]
    assert len(gateway) == 1 and len(inventory) == 1, [p.cmdline() for p in children]

    runner.send_signal(signal.SIGTERM)
    runner.wait(timeout=30)
    _, alive = psutil.wait_procs([*gateway, *inventory], timeout=15)
    assert alive == [], [p.cmdline() for p in alive]
    with sqlite3.connect(deployment.parent / "audit" / "audit.db") as db:
        events = [event for (event,) in db.execute("SELECT event FROM audit_log ORDER BY seq")]
    assert "gateway.stop" in events[events.index("gateway.start") :], events  # a shutdown, not a kill


def _group(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except (ProcessLookupError, PermissionError):
        return None


def test_serving_http_raises_no_deprecation_warning(deployment: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_http_app(Gateway(load_config(deployment)), "127.0.0.1", 8787)


async def test_a_stdio_servers_stderr_has_no_library_info_lines(deployment: Path, tmp_path: Path) -> None:
    inventory_port = free_port()
    tools = deployment.parent / "tools" / "inventory.http.yaml"
    tools.write_text(tools.read_text().replace("127.0.0.1:8788", f"127.0.0.1:{inventory_port}"))
    log = tmp_path / "inventory.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, str(REPO / "tools" / "servers" / "inventory.py"), "--port", str(inventory_port)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{inventory_port}/items", server, log, None)
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "gateway", "serve", "--transport", "stdio", "--config", str(deployment), "--as", "alice"],
            cwd=str(deployment.parent),
        )
        stderr = tmp_path / "stderr.log"
        with stderr.open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                result = await client.call_tool("inventory.get_item", {"sku": "SKU-1001"})
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert not result.is_error, result
    printed = stderr.read_text()
    assert "HTTP Request" not in printed and " INFO httpx" not in printed and " INFO mcp" not in printed, printed
    assert "Warning" not in printed, printed


async def test_a_hot_reload_logs_the_policy_versions(deployment: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with Gateway(load_config(deployment)) as gateway:
        before = gateway.policy.version
        rules = deployment.parent / "policies" / "policy.csv"
        rules.write_text(rules.read_text() + "\n# reviewed again\n")
        with caplog.at_level(logging.INFO, logger="gateway"):
            assert await gateway.reload()
        after = gateway.policy.version
    assert before != after
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and "->" in r.getMessage()]
    assert before[:12] in line and after[:12] in line


@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_a_garbage_audit_database_is_one_line_naming_it(deployment: Path, transport: str) -> None:
    database = deployment.parent / "audit" / "audit.db"
    database.parent.mkdir(exist_ok=True)
    database.write_bytes(b"this is not SQLite" * 300)
    served = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config",
            str(deployment),
            "--transport",
            transport,
            "--as",
            "alice",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert served.returncode == 1
    assert served.stderr.strip().splitlines() == [
        "Error: audit.path audit/audit.db is not a Portcullis audit database (file is not a database):"
        " move it away or point audit.path elsewhere"
    ]
    assert database.read_bytes() == b"this is not SQLite" * 300  # left as it was
