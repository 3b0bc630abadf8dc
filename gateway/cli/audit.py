"""`portcullis audit`: query and verify the audit log."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import click

from gateway.audit import AuditQuery, open_readonly, parse_since, query_records, verify_file
from gateway.cli.options import config_option, echo_json, echo_table, json_option, load


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
    """Check the hash chain; exit 1 and name the first bad record if it is broken.

    Example: portcullis audit verify
    """
    try:
        report = verify_file(_database(config_path))
    except sqlite3.Error as exc:
        raise click.ClickException(f"cannot read the audit log: {exc}") from exc
    if as_json:
        echo_json(report.model_dump(mode="json"))
    elif report.ok:
        click.echo(f"ok: {report.records} records, chain intact")
    else:
        click.echo(f"BROKEN at record {report.first_bad_seq}: {report.problem}", err=True)
    if not report.ok:
        raise SystemExit(1)
