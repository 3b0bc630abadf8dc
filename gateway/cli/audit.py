"""`portcullis audit`: query and verify the audit log."""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import click

from gateway.audit.query import AuditQuery
from gateway.cli.options import (
    config_option,
    echo_json,
    echo_table,
    json_option,
    load,
    load_gateway,
    moment,
    progress_bar,
)

from gateway.reads import NoDatabase, open_reads
from gateway.store.errors import StoreError

if TYPE_CHECKING:
    from gateway.audit.checkpoints import Checkpoint
    from gateway.audit.reader import AuditReader


@click.group()
def audit() -> None:
    """Query and verify the audit log."""


@contextmanager
def _reader(config_path: Path) -> Iterator[AuditReader]:
    """The deployment's audit history (SQLite or PostgreSQL, as `store:` says); a store fault is a ClickException."""
    try:
        with open_reads(load(config_path)) as reads:
            yield reads.audit
    except NoDatabase as exc:
        raise click.ClickException(f"no audit database at {exc.path} (has the gateway run yet?)") from exc
    except StoreError as exc:
        raise click.ClickException(f"cannot read the audit log: {exc}") from exc


FORMATS = ("table", "json", "jsonl", "csv")
TABLE = ["seq", "ts", "event", "subject", "tool", "decision", "outcome", "approval_id"]


@audit.command()
@config_option
@click.option("--subject", default=None, help="Only this caller.")
@click.option("--tenant", default=None, help="Only this tenant.")
@click.option("--tool", default=None, help="Only tools matching this glob (crm.*).")
@click.option("--decision", type=click.Choice(["allow", "deny", "approval_required"]), default=None)
@click.option("--outcome", default=None, help="Only this outcome code (ok, denied, timeout, ...).")
@click.option(
    "--event",
    default=None,
    help="Only this event, or events matching a glob (tool.call, 'policy.reload*', 'approval.*').",
)
@click.option("--approval", "approval_id", default=None, help="Only records of this approval request.")
@click.option(
    "--plan-run", "plan_run_id", default=None, help="Only records of this plan run (its steps and transitions)."
)
@click.option(
    "--text",
    default=None,
    help="Free text in the matched rule, the message or the recorded argument values"
    " (not in values recorded as salted hashes).",
)
@click.option(
    "--since", default=None, callback=moment, help="From: a duration back from now (15m, 1h, 7d) or an ISO time."
)
@click.option("--until", default=None, callback=moment, help="Until (exclusive): a duration back or an ISO time.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="Records per page.")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--format", "output", type=click.Choice(FORMATS), default="table", show_default=True)
@json_option
def query(
    config_path: Path,
    subject: str | None,
    tenant: str | None,
    tool: str | None,
    decision: str | None,
    outcome: str | None,
    event: str | None,
    approval_id: str | None,
    plan_run_id: str | None,
    text: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    page: int,
    output: str,
    as_json: bool,
) -> None:
    """Show matching audit records, newest first in every format, a page at a time.

    Example: portcullis audit query --subject bob --tool 'payments.*' --since 1h --format jsonl
    """
    spec = AuditQuery(
        subject=subject,
        tenant=tenant,
        tool=tool,
        decision=decision,
        outcome=outcome,
        event=event,
        approval_id=approval_id,
        plan_run_id=plan_run_id,
        text=text,
        since=since,
        until=until,
        limit=limit,
        page=page,
        newest_first=True,
    )
    with _reader(config_path) as reader:
        records = reader.records(spec)
    render(records, "json" if as_json else output)


def render(records: list[dict[str, Any]], output: str) -> None:
    if output == "json":
        echo_json(records)
    elif output == "jsonl":
        for record in records:
            click.echo(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
    elif output == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=[*TABLE, "rule", "message"], extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow(record)
    else:
        echo_table(records, TABLE)


@audit.command()
@config_option
@click.option(
    "--checkpoints",
    "checkpoint_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The external copy of the checkpoints to compare with (default: audit.checkpoint_file).",
)
@click.option(
    "--allow-missing-checkpoints",
    is_flag=True,
    help="Warn, instead of failing, when the external checkpoint copy is missing.",
)
@json_option
def verify(config_path: Path, checkpoint_file: Path | None, allow_missing_checkpoints: bool, as_json: bool) -> None:
    """Check the hash chain and the signed checkpoints; exit 1 and name the first bad record if broken.

    Finds an edited, deleted, inserted or moved record, a log cut short at its end, a
    checkpoint (in the log or in the external copy) whose signature fails against the
    configured public key or whose signed head no longer matches the chain (a log rewritten
    and re-hashed), and a log and external copy that disagree. A missing external copy
    fails too (it is what shows a whole-log rewrite) unless --allow-missing-checkpoints.

    Example: portcullis audit verify --checkpoints /mnt/offsite/checkpoints.jsonl
    """
    from gateway.audit.checkpoints import public_key_path
    from gateway.audit.verify import verify_log

    config = load(config_path)
    audit_config = config.audit
    public = audit_config.checkpoint_public_key or public_key_path(audit_config.checkpoint_key)
    external = checkpoint_file.resolve() if checkpoint_file else config.resolve(audit_config.checkpoint_file)
    with _reader(config_path) as reader:
        try:
            with progress_bar("verifying", reader.last_seq()) as advance:
                report = verify_log(
                    reader,
                    external,
                    config.resolve(public),
                    advance,
                    require_checkpoint_file=not allow_missing_checkpoints,
                )
        except (StoreError, OSError, ValueError) as exc:
            raise click.ClickException(f"cannot verify the audit log: {exc}") from exc
    for warning in report.warnings:
        click.echo(f"WARNING: {warning}", err=True)
    if as_json:
        echo_json(report.model_dump(mode="json"))
    elif report.ok:
        copy = (
            "no external copy"
            if report.external_checkpoints is None
            else f"{report.external_checkpoints} in {report.checkpoint_file}"
        )
        click.echo(
            f"ok: {report.records} records, chain intact, {report.checkpoints} signed checkpoint(s) hold ({copy})"
        )
    elif report.first_bad_seq is not None:
        click.echo(f"BROKEN at record {report.first_bad_seq}: {report.problem}", err=True)
    else:
        click.echo(f"NOT VERIFIED: {report.problem}", err=True)
    if not report.ok:
        raise SystemExit(1)


@audit.command()
@config_option
@json_option
def checkpoint(config_path: Path, as_json: bool) -> None:
    """Sign the chain's head now, into the log and the checkpoint file.

    Example: portcullis audit checkpoint
    """
    with _reader(config_path):  # the log exists and can be reached: a checkpoint needs a head to sign
        pass
    gateway = load_gateway(config_path)

    async def run() -> Checkpoint | None:
        await gateway.stores.open(gateway.config.audit.salt)
        try:
            return await gateway.checkpoint()
        finally:
            await gateway.stores.close()

    written = anyio.run(run)
    if written is None:
        raise click.ClickException("no checkpoint written (empty log, or see the error above)")
    if as_json:
        echo_json(written.model_dump())
    else:
        click.echo(f"checkpoint: record {written.seq}, hash {written.hash[:16]}…, signed")


@audit.command()
@config_option
@click.option(
    "--since", default="24h", show_default=True, callback=moment, help="The window: a duration (1h, 7d) or an ISO time."
)
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True)
@json_option
def stats(config_path: Path, since: str, top: int, as_json: bool) -> None:
    """Counts over a window: calls by decision and outcome, the busiest tools and subjects, the top denials.

    Example: portcullis audit stats --since 7d
    """
    with _reader(config_path) as reader:
        report: dict[str, Any] = {"since": since, **reader.stats(since, top)}
    if as_json:
        echo_json(report)
        return
    for section, rows in report.items():
        if section == "since":
            click.echo(f"since {rows}")
            continue
        click.echo(f"\n{section.replace('_', ' ')}:")
        echo_table(rows, list(rows[0]) if rows else ["calls"])


@audit.command()
@config_option
@click.option("--format", "output", type=click.Choice(["jsonl", "ocsf"]), default="jsonl", show_default=True)
@click.option("--since", default=None, callback=moment, help="From: a duration back from now or an ISO-8601 time.")
def export(config_path: Path, output: str, since: str | None) -> None:
    """Stream records for a SIEM: JSON Lines with the chain fields, or OCSF API Activity events.

    Every line keeps `seq`, `prev_hash` and `hash`, so a copy can be verified elsewhere.

    Example: portcullis audit export --format ocsf --since 7d > audit.ocsf.jsonl
    """
    from gateway.audit.verify import PROGRESS_EVERY

    with _reader(config_path) as reader, progress_bar("exporting", reader.last_seq()) as advance:
        for count, entry in enumerate(reader.entries(since=since), 1):
            record = {**json.loads(entry.body), "seq": entry.seq, "prev_hash": entry.prev_hash, "hash": entry.hash}
            line = ocsf(record) if output == "ocsf" else record
            click.echo(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
            if count % PROGRESS_EVERY == 0:
                advance(PROGRESS_EVERY)


def ocsf(record: dict[str, Any]) -> dict[str, Any]:
    """An OCSF 1.x API Activity (class 6003) event for one audit record."""
    denied = record.get("decision") == "deny" or record.get("outcome") not in (None, "ok", "started")
    return {
        "class_uid": 6003,
        "category_uid": 6,
        "activity_id": 99,
        "activity_name": record.get("event"),
        "time": record.get("ts"),
        "status": "Failure" if denied else "Success",
        "status_detail": record.get("outcome"),
        "actor": {"user": {"name": record.get("subject"), "groups": [{"name": r} for r in record.get("roles") or []]}},
        "api": {"operation": record.get("tool"), "service": {"name": "portcullis"}},
        "metadata": {"product": {"name": "Portcullis"}, "uid": str(record.get("seq")), "version": "1.1.0"},
        "unmapped": {
            k: record.get(k) for k in ("decision", "rule", "policy_version", "approval_id", "prev_hash", "hash")
        },
    }


@audit.command()
@config_option
@click.option("-n", "lines", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new records as they are written.")
@click.option("--interval", type=float, default=0.5, show_default=True, help="Seconds between looks when following.")
def tail(config_path: Path, lines: int, follow: bool, interval: float) -> None:
    """Print the last records, and with -f follow new ones live (Ctrl-C to stop).

    Example: portcullis audit tail -f
    """
    with _reader(config_path) as reader:
        try:
            shown = reader.latest(lines)
            last = shown[-1].seq if shown else reader.last_seq()
            for entry in shown:
                _print_line(entry.seq, json.loads(entry.body))
            while follow:
                time.sleep(interval)
                for entry in reader.entries(after=last):
                    _print_line(entry.seq, json.loads(entry.body))
                    last = entry.seq
        except KeyboardInterrupt:
            pass


def _print_line(seq: int, record: dict[str, Any]) -> None:
    fields = [str(seq), record.get("ts", ""), record.get("event", "")]
    fields += [str(record.get(k)) for k in ("subject", "tool", "decision", "outcome") if record.get(k) is not None]
    click.echo("  ".join(fields))
