"""Options and helpers shared by every command group."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from gateway.audit import parse_since
from gateway.config import GatewayConfig, load_config
from gateway.gateway import Gateway
from gateway.outcomes import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def config_option(function: F) -> F:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=lambda: os.environ.get("PORTCULLIS_CONFIG", "portcullis.yaml"),
        show_default="portcullis.yaml, or $PORTCULLIS_CONFIG",
        help="The deployment's config file.",
    )(function)


def moment(context: click.Context, parameter: click.Parameter, value: str | None) -> str | None:
    """A click callback: a duration back from now (15m, 1h, 7d) or an ISO-8601 time, as an ISO time."""
    if value is None:
        return None
    try:
        return parse_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def json_option(function: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(function)


def load(config_path: Path) -> GatewayConfig:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException("invalid configuration:\n  " + "\n  ".join(exc.problems)) from exc


def load_gateway(config_path: Path) -> Gateway:
    """The deployment's gateway, not yet started (nothing contacted, nothing recorded)."""
    config = load(config_path)
    try:
        return Gateway(config)
    except ConfigError as exc:
        raise click.ClickException("invalid deployment:\n  " + "\n  ".join(exc.problems)) from exc


@contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal; nothing at all when piped or redirected."""
    stream = sys.stderr
    if not stream.isatty() or total <= 0:
        yield lambda done: None
        return
    with click.progressbar(length=total, label=label, file=stream, show_pos=True) as bar:
        yield bar.update


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def echo_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(r[i]) for r in cells)) for i, column in enumerate(columns)]
    click.echo("  ".join(column.ljust(w) for column, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."
