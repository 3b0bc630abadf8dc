"""The CLI imports a command group only to run it: `--help` lists every group from a table, and the
light commands (`--version`, `audit query`) never load the MCP SDK, the HTTP server or the policy engine."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import gateway.cli
from gateway import Gateway
from gateway.calls import Caller
from gateway.cli import COMMANDS, main
from gateway.version import __version__

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("mcp", "uvicorn", "casbin", "starlette")
PROBE = f"""
import json, sys
from gateway.cli import main
code = 0
try:
    main(sys.argv[1:], prog_name="portcullis")
except SystemExit as exit:
    code = exit.code
print(json.dumps({{"code": code, "loaded": sorted(m for m in {HEAVY!r} if m in sys.modules)}}), file=sys.stderr)
"""
"""Runs the CLI in a fresh interpreter, then reports on stderr its exit code and which heavy packages it loaded."""


def probe(*args: str) -> tuple[int, str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120, check=False, cwd=REPO
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["code"], done.stdout, report["loaded"]


def defined_commands() -> dict[str, set[str]]:
    """Each module of `gateway.cli` that defines commands, and the names of those not nested in another."""
    found: dict[str, set[str]] = {}
    for info in pkgutil.iter_modules(gateway.cli.__path__):
        module = importlib.import_module(f"gateway.cli.{info.name}")
        own = [
            value
            for value in vars(module).values()
            if isinstance(value, click.Command) and getattr(value.callback, "__module__", None) == module.__name__
        ]
        nested = {id(sub) for group in own if isinstance(group, click.Group) for sub in group.commands.values()}
        top = {command.name or "" for command in own if id(command) not in nested}
        if top:
            found[info.name] = top
    return found


def real(name: str) -> click.Command:
    command = getattr(importlib.import_module(f"gateway.cli.{name}"), name)
    assert isinstance(command, click.Command)
    return command


def test_the_lazy_table_names_every_command_module_and_the_command_it_defines() -> None:
    assert defined_commands() == {name: {name} for name in COMMANDS}


def test_help_lists_every_group_with_the_summary_its_own_help_gives() -> None:
    eager = click.Group(main.name, commands={name: real(name) for name in COMMANDS}, params=main.params, help=main.help)
    listed = CliRunner().invoke(main, ["--help"], prog_name="portcullis")
    assert listed.exit_code == 0
    assert listed.output == CliRunner().invoke(eager, ["--help"], prog_name="portcullis").output
    rows = listed.output.split("Commands:\n", 1)[1]
    assert [line.split()[0] for line in rows.splitlines()] == sorted(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_group_and_subcommand_shows_its_help(name: str) -> None:
    command = real(name)
    subcommands = sorted(command.commands) if isinstance(command, click.Group) else []
    for args in [[name], *([name, sub] for sub in subcommands)]:
        shown = CliRunner().invoke(main, [*args, "--help"], prog_name="portcullis")
        assert shown.exit_code == 0, shown.output
        assert shown.output.startswith(f"Usage: portcullis {' '.join(args)} ")


def test_an_unknown_command_is_a_usage_error_that_names_it() -> None:
    result = CliRunner().invoke(main, ["audti"], prog_name="portcullis")
    assert result.exit_code == 2 and "No such command 'audti'" in result.output


def test_version_loads_no_sdk_server_or_policy_engine() -> None:
    code, out, loaded = probe("--version")
    assert (code, out, loaded) == (0, f"portcullis, version {__version__}\n", [])


def test_help_loads_no_sdk_server_or_policy_engine() -> None:
    code, out, loaded = probe("--help")
    assert code == 0 and loaded == []
    assert all(f"  {name}  " in out for name in COMMANDS)


@pytest.mark.anyio
async def test_audit_query_reads_the_log_without_the_sdk_server_or_policy_engine(
    gateway: Gateway, config_path: Path
) -> None:
    await gateway.call_tool(Caller(subject="alice", auth="test", transport="test"), "crm.find_customer", {"query": "a"})
    code, out, loaded = probe("audit", "query", "--config", str(config_path), "--event", "tool.call", "--json")
    assert code == 0 and loaded == []
    assert [(r["subject"], r["tool"]) for r in json.loads(out)] == [("alice", "crm.find_customer")]
