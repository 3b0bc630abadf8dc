"""The `portcullis` command line: one module per command group, imported only when its group runs.

Importing every group up front loads the whole gateway (the MCP SDK, the policy engine, the HTTP
server) for `--version` or `audit query`; so the group `main` knows its commands by name and summary
(`COMMANDS`) and imports `gateway.cli.<name>` on first use. `tests/cli/test_cli_lazy.py` keeps the
table equal to the modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from types import MappingProxyType
from typing import Any

import click

COMMANDS: Mapping[str, str] = MappingProxyType(
    {
        "approvals": "List, show, decide and cancel approval requests.",
        "audit": "Query and verify the audit log.",
        "db": "Create and check the gateway's database (SQLite file or PostgreSQL).",
        "plan": "Check, preview and run multi-step plans.",
        "policy": "Check and explain authorization policy.",
        "serve": "Serve the gateway over MCP (Streamable HTTP or stdio).",
        "tools": "Inspect the tool catalog, pin upstream tool definitions, import OpenAPI documents.",
    }
)
"""Each command: `gateway.cli.<name>` defines it as `<name>`; the summary is its help's first sentence."""


class LazyGroup(click.Group):
    """A group that lists its commands from a table and imports a command's module only to run it."""

    def __init__(self, *args: Any, lazy: Mapping[str, str], package: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy
        """Command name -> the summary `--help` shows for it."""
        self.package = package
        """Where the command modules live: `<package>.<name>` defines the command `<name>`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.lazy)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy:
            return None
        command = getattr(import_module(f"{self.package}.{cmd_name}"), cmd_name)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.package}.{cmd_name}.{cmd_name} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the commands with the table's summaries, shortened as click would, importing none of them."""
        if not self.lazy:
            return
        limit = formatter.width - 6 - max(map(len, self.lazy))
        rows = [
            (name, click.Command(name, help=self.lazy[name]).get_short_help_str(limit)) for name in sorted(self.lazy)
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _print_version(ctx: click.Context, _parameter: click.Parameter, value: bool) -> None:
    """`--version`, reading the installed version (importlib.metadata) only when asked for."""
    if not value or ctx.resilient_parsing:
        return
    from gateway.version import __version__

    click.echo(f"portcullis, version {__version__}")
    ctx.exit()


@click.group(cls=LazyGroup, lazy=COMMANDS, package=__name__)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
def main() -> None:
    """Portcullis: a policy-governed MCP tool gateway."""


__all__ = ["COMMANDS", "LazyGroup", "main"]
