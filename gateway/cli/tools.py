"""`portcullis tools`: the catalog, source health, pins and OpenAPI import."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import anyio
import click
import yaml

from gateway.cli.options import config_option, echo_json, echo_table, json_option, load, load_gateway
from gateway.outcomes import ConfigError, Decision
from gateway.policy.engine import Explanation, rule_id
from gateway.snapshot import Snapshot
from gateway.sources.base import SourceHealth
from gateway.sources.openapi import import_openapi
from gateway.sources.pins import PinStatus, diff

T = TypeVar("T")
CONDITIONAL = "conditional"
"""`tools list --as`: the decision depends on the call's arguments (rules with `when` conditions)."""


@click.group()
def tools() -> None:
    """Inspect the tool catalog, pin upstream tool definitions, import OpenAPI documents."""


def _live(config_path: Path, work: Callable[[Snapshot, list[SourceHealth]], T]) -> T:
    """Start the sources (connecting to upstreams), build the catalog, run `work` on it."""
    gateway = load_gateway(config_path)

    async def run() -> T:
        async with gateway.sources as sources:
            return work(Snapshot.build(gateway.config, gateway.policy, sources.sources), sources.health())

    try:
        return anyio.run(run)
    except ConfigError as exc:
        raise click.ClickException("invalid deployment:\n  " + "\n  ".join(exc.problems)) from exc


@tools.command("list")
@config_option
@click.option(
    "--as",
    "subject",
    default=None,
    metavar="SUBJECT",
    help="Show the catalog as policy shows it to SUBJECT. An explanation, like `policy check`: nothing is called"
    " as SUBJECT, so any subject may be named.",
)
@json_option
def list_tools(config_path: Path, subject: str | None, as_json: bool) -> None:
    """List tools (connecting to upstreams), each source's health, and quarantined tools.

    With --as, each tool's decision for SUBJECT: allow, approval_required, or conditional when it
    depends on the call's arguments (rules with `when` conditions), followed by those rules.

    Example: portcullis tools list --as alice --json
    """

    def rows(snapshot: Snapshot, health: list[SourceHealth]) -> tuple[list[dict[str, Any]], list[SourceHealth]]:
        status = {h.source: h for h in health}
        listed: list[dict[str, Any]] = []
        for definition in snapshot.catalog.definitions():
            row = _row(definition.model_dump(), "listed", status)
            if subject is not None:
                explained = snapshot.policy.explain(subject, definition.name)
                if explained.decisions == (Decision.DENY,):
                    continue
                row.update(_decision(explained))
            listed.append(row)
        if subject is None:
            for verdict, definition, _ in snapshot.catalog.quarantined.values():
                listed.append(_row(definition.model_dump(), f"quarantined ({verdict.status})", status))
        return listed, health

    listed, health = _live(config_path, rows)
    if as_json:
        echo_json(listed)
        return
    echo_table([h.model_dump() for h in health], ["source", "kind", "status", "tools", "detail"])
    click.echo()
    for row in listed:
        row["description"] = (row["description"] or "").strip().splitlines()[0] if row["description"] else ""
    echo_table(listed, ["name", "source", "status", *(["decision"] if subject else []), "description"])
    conditional = [row for row in listed if row.get("decision") == CONDITIONAL]
    if conditional:
        click.echo()
        click.echo(f"conditional: what {subject} may do depends on the arguments")
        for row in conditional:
            click.echo(f"  {row['name']}: {' or '.join(row['decisions'])}")
            for rule in row["rules"]:
                approver = f" by {rule['approver']}" if rule["approver"] else ""
                when = f" when {rule['condition']}" if rule["condition"] else ""
                click.echo(f"    {rule['effect']}{approver}{when}  ({rule_id(rule['source'])})")


def _decision(explained: Explanation) -> dict[str, Any]:
    """What policy decides for a listed tool: one decision, or `conditional` (it depends on the arguments),
    with every possible decision and the rules that give them."""
    decision = CONDITIONAL if explained.conditional else explained.decisions[0].value
    rules = [m.model_dump(include={"rule", "source", "effect", "approver", "condition"}) for m in explained.rules]
    return {"decision": decision, "decisions": [d.value for d in explained.decisions], "rules": rules}


def _row(definition: dict[str, Any], status: str, health: Mapping[str, SourceHealth]) -> dict[str, Any]:
    source = health.get(definition["source"])
    return {
        "name": definition["name"],
        "description": definition["description"],
        "source": definition["source"],
        "source_status": source.status if source else "ok",
        # why a source is down ("failed to start: ...: No such file or directory"), for scripts as for people
        "source_detail": source.detail if source else "",
        "status": status,
        "annotations": definition["annotations"],
        "definition_hash": definition["definition_hash"],
    }


@tools.command()
@config_option
@click.argument("names", nargs=-1)
def pin(config_path: Path, names: tuple[str, ...]) -> None:
    """Pin the current definitions of upstream tools (all, or the NAMES given) in tools.lock.

    Review the change to tools.lock before committing it: it is what you trust.

    Example: portcullis tools pin kb.search
    """
    config = load(config_path)
    lock_path = config.resolve(config.tools.lock)

    def record(snapshot: Snapshot, health: list[SourceHealth]) -> list[str]:
        down = [h.source for h in health if h.kind == "mcp" and h.status != "ok"]
        if down:
            raise click.ClickException(f"cannot pin while upstreams are down: {', '.join(down)}")
        lock = snapshot.catalog.lock
        upstream = [d for d in snapshot.catalog.all_definitions() if d.source.startswith("mcp:")]
        unknown = sorted(set(names) - {d.name for d in upstream})
        if unknown:
            raise click.ClickException(f"no such upstream tool: {', '.join(unknown)}")
        chosen = [d for d in upstream if not names or d.name in names]
        lock.pinned(chosen).save(lock_path)
        return [d.name for d in chosen if lock.status(d) is not PinStatus.PINNED]

    changed = _live(config_path, record)
    listed = f": {', '.join(changed)}" if changed else ""
    click.echo(f"pinned {len(changed)} changed or new tool(s) in {lock_path}{listed}")


@tools.command("diff")
@config_option
@click.argument("name")
def diff_tool(config_path: Path, name: str) -> None:
    """Show how an upstream tool's live definition differs from its pin.

    Exit code 0 when they match, 1 when they differ.

    Example: portcullis tools diff kb.search
    """

    def compare(snapshot: Snapshot, health: list[SourceHealth]) -> str:
        listed, quarantined = snapshot.catalog.get(name), snapshot.catalog.quarantined.get(name)
        live = listed[0] if listed else (quarantined[1] if quarantined else None)
        pin_ = snapshot.catalog.lock.tools.get(name)
        if live is None and pin_ is None:
            raise click.ClickException(f"no tool {name} live or pinned")
        return diff(pin_, live)

    text = _live(config_path, compare)
    if not text:
        click.echo(f"{name}: live definition matches its pin")
        return
    click.echo(text, nl=False)
    raise SystemExit(1)


@tools.command("import-openapi")
@click.argument("document", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--namespace", required=True, help="Tool names become NAMESPACE.operationId.")
@click.option("--base-url", default=None, help="Server URL (default: the document's first server).")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The tool file to write (default: tools/NAMESPACE.http.yaml). List it under tools.http_files.",
)
def import_openapi_command(document: Path, namespace: str, base_url: str | None, output: Path | None) -> None:
    """Write an HTTP tool file from an OpenAPI 3 document, to review and commit.

    Example: portcullis tools import-openapi inventory.openapi.json --namespace inventory
    """
    try:
        tools_ = import_openapi(document, namespace, base_url)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    target = output or Path("tools") / f"{namespace}.http.yaml"
    header = f"# Generated by `portcullis tools import-openapi {document.name} --namespace {namespace}`.\n"
    header += "# Review before use; list this file under tools.http_files in portcullis.yaml.\n"
    target.write_text(header + yaml.safe_dump({"http_tools": tools_}, sort_keys=False, allow_unicode=True))
    click.echo(f"wrote {len(tools_)} tool(s) to {target}")
