"""`portcullis audit`: query and verify the audit log."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import click

from gateway.audit import AuditQuery, open_readonly, parse_since, query_records, verify_file
from gateway.audit.checkpoints import Checkpoint, public_key_path
from gateway.cli.options import config_option, echo_json, echo_table, json_option, load, load_gateway


@click.group()
def audit() -> None:
    """Query and verify the audit log."""


def _database(config_path: Path) -> Path:
    config = load(config_path)
    path = config.resolve(config.audit.path)
    if not path.exists():
        raise click.ClickException(f"no audit database at {path} (has the gateway run yet?)")
    return path


@audit.command()
@config_option
@click.option("--subject", default=None, help="Only this caller.")
@click.option("--tool", default=None, help="Only tools matching this glob (crm.*).")
@click.option("--decision", type=click.Choice(["allow", "deny", "approval_required"]), default=None)
@click.option("--outcome", default=None, help="Only this outcome code (ok, denied, timeout, ...).")
@click.option("--event", default=None, help="Only this event (tool.call, tool.intent, gateway.start, ...).")
@click.option("--since", default=None, help="A duration back from now (15m, 1h, 7d) or an ISO-8601 time.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@json_option
def query(
    config_path: Path,
    subject: str | None,
    tool: str | None,
    decision: str | None,
    outcome: str | None,
    event: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show the latest matching audit records, oldest first.

    Example: portcullis audit query --subject bob --tool 'payments.*' --since 1h --json
    """
    if since is not None:
        try:
            parse_since(since)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from exc
    spec = AuditQuery(
        subject=subject, tool=tool, decision=decision, outcome=outcome, event=event, since=since, limit=limit
    )
    connection = open_readonly(_database(config_path))
    try:
        records = query_records(connection, spec)
    except sqlite3.Error as exc:
        raise click.ClickException(f"cannot read the audit log: {exc}") from exc
    finally:
        connection.close()
    if as_json:
        echo_json(records)
        return
    echo_table(records, ["seq", "ts", "event", "subject", "tool", "decision", "outcome", "approval_id"])


@audit.command()
@config_option
@json_option
def verify(config_path: Path, as_json: bool) -> None:
    """Check the hash chain and the signed checkpoints; exit 1 and name the first bad record if broken.

    Finds an edited, deleted, inserted or moved record, a log cut short at its end
    (against the last checkpoint), and a checkpoint with a bad signature.

    Example: portcullis audit verify
    """
    config = load(config_path)
    audit_config = config.audit
    public = audit_config.checkpoint_public_key or public_key_path(audit_config.checkpoint_key)
    try:
        report = verify_file(
            _database(config_path), config.resolve(audit_config.checkpoint_file), config.resolve(public)
        )
    except sqlite3.Error as exc:
        raise click.ClickException(f"cannot read the audit log: {exc}") from exc
    if as_json:
        echo_json(report.model_dump(mode="json"))
    elif report.ok:
        click.echo(f"ok: {report.records} records, chain intact, {report.checkpoints} signed checkpoint(s) hold")
    else:
        click.echo(f"BROKEN at record {report.first_bad_seq}: {report.problem}", err=True)
    if not report.ok:
        raise SystemExit(1)


@audit.command()
@config_option
@json_option
def checkpoint(config_path: Path, as_json: bool) -> None:
    """Sign the chain's head now, into the log and the checkpoint file.

    Example: portcullis audit checkpoint
    """
    _database(config_path)
    gateway = load_gateway(config_path)

    async def run() -> Checkpoint | None:
        gateway.audit.open(gateway.config.audit.salt)
        try:
            return await gateway.checkpoint()
        finally:
            await gateway.audit.close()

    written = anyio.run(run)
    if written is None:
        raise click.ClickException("no checkpoint written (empty log, or see the error above)")
    if as_json:
        echo_json(written.model_dump())
    else:
        click.echo(f"checkpoint: record {written.seq}, hash {written.hash[:16]}…, signed")
