"""`portcullis approvals`: the pending requests policy created."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.approvals import ApprovalStatus, list_requests
from gateway.audit import open_readonly
from gateway.cli.options import config_option, echo_json, echo_table, json_option, load


@click.group()
def approvals() -> None:
    """List approval requests."""


@approvals.command("list")
@config_option
@click.option(
    "--status",
    type=click.Choice([s.value for s in ApprovalStatus] + ["all"]),
    default="pending",
    show_default=True,
)
@json_option
def list_approvals(config_path: Path, status: str, as_json: bool) -> None:
    """List approval requests (pending ones by default).

    Example: portcullis approvals list --json
    """
    config = load(config_path)
    path = config.resolve(config.audit.path)
    if not path.exists():
        raise click.ClickException(f"no gateway database at {path} (has the gateway run yet?)")
    connection = open_readonly(path)
    try:
        requests = list_requests(connection, None if status == "all" else ApprovalStatus(status))
    finally:
        connection.close()
    rows = [request.model_dump(mode="json") for request in requests]
    if as_json:
        echo_json(rows)
        return
    echo_table(rows, ["id", "created_at", "status", "subject", "tool", "approver_role", "arguments"])
