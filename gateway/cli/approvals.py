"""`portcullis approvals`: the pending requests policy created."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import anyio
import click

from gateway.approvals import ApprovalRequest, ApprovalStatus, describe
from gateway.approvals.service import ApprovalError
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
from gateway.reads import ApprovalReads, open_reads
from gateway.store.errors import StoreError

T = TypeVar("T")
SHOWN = (
    "id",
    "status",
    "status_reason",
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
    "lease_owner",
    "lease_expires_at",
    "finished_at",
    "result",
    "revisions",
    "decisions",
)
"""The fields `approvals show` prints, in this order."""


@click.group()
def approvals() -> None:
    """List, show, decide and cancel approval requests."""


def _read(config_path: Path, query: Callable[[ApprovalReads], T]) -> T:
    """`query` on the deployment's approval requests, SQLite or PostgreSQL (a command never starts the writer)."""
    try:
        with open_reads(load(config_path)) as reads:
            return query(reads.approvals)
    except StoreError as exc:  # NoDatabase among them
        raise click.ClickException(str(exc)) from exc


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
    requests = _read(config_path, lambda reads: reads.requests(None if status == "all" else ApprovalStatus(status)))
    rows = [request.model_dump(mode="json") for request in requests]
    if as_json:
        echo_json(rows)
        return
    echo_table(rows, ["id", "created_at", "status", "subject", "tool", "approver_role", "arguments"])


@approvals.command()
@config_option
@click.argument("request_id")
@json_option
def show(config_path: Path, request_id: str, as_json: bool) -> None:
    """Show one request: the call, the reasons, the requester, the decisions so far.

    Example: portcullis approvals show 01M8GKKWXT8R97FVP88ET8QEEA
    """
    found, made = _read(config_path, lambda reads: (reads.requests(request_id=request_id), reads.ballots(request_id)))
    if not found:
        raise click.ClickException(f"no approval request {request_id}")
    body = {**found[0].model_dump(mode="json"), "decisions": [asdict(ballot) for ballot in made]}
    if as_json:
        echo_json(body)
        return
    for line in fields(body, SHOWN):
        click.echo(line)


def fields(body: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    """`key: value` lines, values in one column: lists of text one item a line, objects and other lists as
    indented JSON (a plan's steps stay readable), every continuation line indented to the value column."""
    width = max(len(key) for key in keys) + 2
    lines = []
    for key in keys:
        value = body.get(key)
        if value is None or value in ([], {}):
            text = "-"
        elif isinstance(value, str):
            text = value
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            text = "\n".join(f"- {item}" for item in value)
        else:
            text = json.dumps(value, indent=2, ensure_ascii=False)
        first, *rest = text.splitlines() or [""]
        lines.append(f"{key + ':':<{width}}{first}")
        lines += [" " * width + line for line in rest]
    return lines


def _service_call(gateway: Gateway, work: Callable[[Gateway], Awaitable[T]]) -> T:
    """Run `work` with the gateway's audit store open (the CLI writes through the same chained log)."""

    async def run() -> T:
        await gateway.stores.open(gateway.config.audit.salt)
        try:
            return await work(gateway)
        finally:
            await gateway.stores.close()

    return anyio.run(run)


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
    _act(config_path, request_id, chosen, "approve", comment, as_json, arguments)


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
    _act(config_path, request_id, chosen, "deny", reason, as_json)


@approvals.command()
@config_option
@click.argument("request_id")
@subject_option("Its requester, or one who may decide it.")
@click.option("--reason", default=None, help="Why, for the requester and the audit log.")
@json_option
def cancel(config_path: Path, request_id: str, chosen: str | None, reason: str | None, as_json: bool) -> None:
    """Cancel a request that has not started running (pending or approved): it will never run.

    The requester may withdraw their own request; one who may decide it may cancel it. The
    cancellation is audited (`approval.cancelled`) and its reason shown to the requester.

    Example: portcullis approvals cancel 01M8GKKWXT8R97FVP88ET8QEEA --reason "no longer needed"
    """
    _act(config_path, request_id, chosen, "cancel", reason, as_json)


def _act(
    config_path: Path,
    request_id: str,
    chosen: str | None,
    action: str,
    text: str | None,
    as_json: bool,
    edited: dict[str, Any] | None = None,
) -> None:
    gateway = load_gateway(config_path)
    actor = resolve_subject(gateway.config, chosen).caller(gateway.config)

    async def work(gateway: Gateway) -> ApprovalRequest:
        if action == "approve":
            return await gateway.approvals.approve(request_id, actor, text, edited)
        if action == "cancel":
            return await gateway.approvals.cancel(request_id, actor, text)
        return await gateway.approvals.deny(request_id, actor, text or "")

    try:
        request = _service_call(gateway, work)
    except ApprovalError as exc:
        raise click.ClickException(f"{exc.reason}: {exc}") from exc
    if as_json:
        echo_json(request.model_dump(mode="json"))
    else:
        click.echo(describe(request))
