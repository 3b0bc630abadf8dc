"""`portcullis approvals`: the pending requests policy created."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import anyio
import click

from gateway.approvals import ApprovalRequest, ApprovalStatus, decisions, list_requests
from gateway.approvals.service import ApprovalError
from gateway.audit import open_readonly
from gateway.cli.options import (
    config_option,
    echo_json,
    echo_table,
    json_option,
    load,
    load_gateway,
    resolve_subject,
    subject_option,
)
from gateway.gateway import Gateway

T = TypeVar("T")


@click.group()
def approvals() -> None:
    """List, show and decide approval requests."""


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


def _service_call(gateway: Gateway, work: Callable[[Gateway], Awaitable[T]]) -> T:
    """Run `work` with the gateway's audit store open (the CLI writes through the same chained log)."""

    async def run() -> T:
        gateway.audit.open(gateway.config.audit.salt)
        try:
            return await work(gateway)
        finally:
            await gateway.audit.close()

    return anyio.run(run)


@approvals.command()
@config_option
@click.argument("request_id")
@json_option
def show(config_path: Path, request_id: str, as_json: bool) -> None:
    """Show one request: the call, the reasons, the requester, the decisions so far.

    Example: portcullis approvals show 01M8GKKWXT8R97FVP88ET8QEEA
    """
    config = load(config_path)
    connection = open_readonly(config.resolve(config.audit.path))
    try:
        found = list_requests(connection, request_id=request_id)
        made = decisions(connection, request_id)
    finally:
        connection.close()
    if not found:
        raise click.ClickException(f"no approval request {request_id}")
    body = {**found[0].model_dump(mode="json"), "decisions": made}
    if as_json:
        echo_json(body)
        return
    for key in (
        "id",
        "status",
        "subject",
        "tool",
        "arguments",
        "approver_role",
        "approvals_required",
        "reasons",
        "created_at",
        "expires_at",
        "approved_at",
        "execute_by",
        "finished_at",
        "result",
        "decisions",
    ):
        click.echo(
            f"{key + ':':<20}{json.dumps(body[key], ensure_ascii=False) if not isinstance(body[key], str) else body[key]}"
        )


@approvals.command()
@config_option
@click.argument("request_id")
@subject_option("The approver (never the requester).")
@click.option("--comment", default=None)
@click.option("--edit-args", "edited", default=None, help="Approve these arguments (JSON) instead: a new revision.")
@json_option
def approve(
    config_path: Path, request_id: str, chosen: str | None, comment: str | None, edited: str | None, as_json: bool
) -> None:
    """Approve a pending request; a running gateway executes it (exactly once) when the quorum is reached.

    With --edit-args the call is corrected first: the new arguments are checked against policy and
    guardrails for the requester, replace the old ones (kept as a revision), and earlier approvals
    no longer count.

    You approve as the subject your OS user maps to (identity.os_users); --as names another only
    where identity.allow_choosing_subject is true. The audit record names your OS user.

    Example: portcullis approvals approve 01M8GKKWXT8R97FVP88ET8QEEA --comment "checked the invoice"
    """
    arguments = None
    if edited is not None:
        try:
            arguments = json.loads(edited)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--edit-args") from exc
        if not isinstance(arguments, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--edit-args")
    _decide(config_path, request_id, chosen, "approve", comment, as_json, arguments)


@approvals.command()
@config_option
@click.argument("request_id")
@subject_option("The approver (never the requester).")
@click.option("--reason", required=True)
@json_option
def deny(config_path: Path, request_id: str, chosen: str | None, reason: str, as_json: bool) -> None:
    """Deny a pending request, with a reason the requester will see (as your OS user's subject, like approve).

    Example: portcullis approvals deny 01M8GKKWXT8R97FVP88ET8QEEA --reason "duplicate"
    """
    _decide(config_path, request_id, chosen, "deny", reason, as_json)


def _decide(
    config_path: Path,
    request_id: str,
    chosen: str | None,
    decision: str,
    text: str | None,
    as_json: bool,
    edited: dict[str, object] | None = None,
) -> None:
    gateway = load_gateway(config_path)
    approver = resolve_subject(gateway.config, chosen).caller(gateway.config)

    async def work(gateway: Gateway) -> ApprovalRequest:
        if decision == "approve":
            return await gateway.approvals.approve(request_id, approver, text, edited)
        return await gateway.approvals.deny(request_id, approver, text or "")

    try:
        request = _service_call(gateway, work)
    except ApprovalError as exc:
        raise click.ClickException(f"{exc.reason}: {exc}") from exc
    if as_json:
        echo_json(request.model_dump(mode="json"))
    else:
        click.echo(f"request {request.id} is {request.status.value}")
