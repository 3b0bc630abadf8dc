"""Options and helpers shared by every command group."""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click

from gateway.audit import parse_since
from gateway.config import GatewayConfig, load_config
from gateway.outcomes import ConfigError

if TYPE_CHECKING:  # both load the whole gateway (the MCP SDK among it): imported where a command builds one
    from gateway.calls import Caller
    from gateway.gateway import Gateway, Mode

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


def subject_option(help_text: str) -> Callable[[F], F]:
    """`--as SUBJECT`: a request to act as SUBJECT, honoured only as `resolve_subject` allows."""

    def decorate(function: F) -> F:
        return click.option(
            "--as",
            "chosen",
            default=None,
            metavar="SUBJECT",
            help=help_text + " Default: the subject identity.os_users maps your OS user to; another subject"
            " only where identity.allow_choosing_subject is true.",
        )(function)

    return decorate


@dataclass(frozen=True)
class CliIdentity:
    """Who a command acts as, how that was decided, and which operating-system account ran it."""

    subject: str
    how: Literal["os_user", "--as", "env"]
    os_user: str

    def auth(self, channel: str) -> str:
        """The audit log's `auth`: `cli:os_user:root`, `cli:--as:root` (the OS user is named, whatever the subject)."""
        return f"{channel}:{self.how}:{self.os_user}"

    def caller(self, config: GatewayConfig) -> Caller:
        from gateway.calls import Caller

        return Caller(
            subject=self.subject, tenant=config.identity.default_tenant, auth=self.auth("cli"), transport="cli"
        )


def os_user() -> str:
    """The account this process runs as: the effective uid's name, not $USER or $LOGNAME, which anyone can set."""
    try:
        import pwd
    except ImportError:  # Windows: no uid database; the login name is the best there is.
        return getpass.getuser()
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError as exc:
        raise click.ClickException(f"the OS user (uid {os.geteuid()}) has no name to map in identity.os_users") from exc


def resolve_subject(config: GatewayConfig, chosen: str | None, how: Literal["--as", "env"] = "--as") -> CliIdentity:
    """The subject a CLI command or a stdio server acts as: the OS user's, through `identity.os_users`.

    A chosen subject (`--as`, $PORTCULLIS_SUBJECT) is honoured only where `identity.allow_choosing_subject`
    is true, or when it names the very subject the OS user maps to. Anything else is refused: a shell
    account must not let a requester approve their own request under another name.
    """
    identity = config.identity
    user = os_user()
    mapped = identity.os_users.get(user)
    if chosen:
        if identity.allow_choosing_subject:
            return CliIdentity(chosen, how, user)
        if chosen != mapped:
            acts_as = f"acts as {mapped!r}" if mapped else "is not mapped in identity.os_users"
            raise click.ClickException(
                f"this deployment does not let the caller choose its subject"
                f" ({'--as ' if how == '--as' else '$PORTCULLIS_SUBJECT='}{chosen}):"
                f" identity.allow_choosing_subject is false, and OS user {user!r} {acts_as}"
            )
    if mapped:
        return CliIdentity(mapped, "os_user", user)
    raise click.ClickException(
        f"no subject for OS user {user!r}: it is not mapped in identity.os_users"
        + (" (or pass --as SUBJECT)" if identity.allow_choosing_subject else "")
    )


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


def load_gateway(config_path: Path, mode: Mode = "admin") -> Gateway:
    """The deployment's gateway, not yet started (nothing contacted, nothing recorded).

    Every command but `serve` opens an administrative session: started, it runs the command's own
    calls only (no approval queue worker, no interruption of plan runs, no timers).
    """
    from gateway.gateway import Gateway

    config = load(config_path)
    try:
        return Gateway(config, mode)
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
