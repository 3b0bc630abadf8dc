"""The `portcullis` command line: one module per command group."""

from __future__ import annotations

import click

from gateway.cli.approvals import approvals
from gateway.cli.audit import audit
from gateway.cli.plan import plan
from gateway.cli.policy import policy
from gateway.cli.serve import serve
from gateway.cli.tools import tools
from gateway.version import __version__


@click.group()
@click.version_option(__version__, prog_name="portcullis")
def main() -> None:
    """Portcullis: a policy-governed MCP tool gateway."""


main.add_command(serve)
main.add_command(tools)
main.add_command(policy)
main.add_command(audit)
main.add_command(approvals)
main.add_command(plan)

__all__ = ["main"]
