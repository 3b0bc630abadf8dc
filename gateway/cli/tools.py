"""`portcullis tools`: the catalog."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli.options import config_option, echo_json, echo_table, json_option, load_snapshot
from gateway.outcomes import Decision


@click.group()
def tools() -> None:
    """Inspect the tool catalog."""


@tools.command("list")
@config_option
@click.option("--as", "subject", default=None, help="Show the catalog as this subject sees it.")
@json_option
def list_tools(config_path: Path, subject: str | None, as_json: bool) -> None:
    """List tools, optionally as one subject sees them.

    Example: portcullis tools list --as alice --json
    """
    snapshot = load_snapshot(config_path)
    rows = []
    for definition in snapshot.catalog.definitions():
        row = {
            "name": definition.name,
            "description": definition.description,
            "source": definition.source,
            "annotations": definition.annotations,
            "definition_hash": definition.definition_hash,
        }
        if subject is not None:
            decision = snapshot.policy.decide(subject, definition.name).decision
            if decision is Decision.DENY:
                continue
            row["decision"] = decision.value
        rows.append(row)
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        row["description"] = (row["description"] or "").splitlines()[0] if row["description"] else ""
    echo_table(rows, ["name", "source", *(["decision"] if subject else []), "description"])
