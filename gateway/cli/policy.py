"""`portcullis policy`: ask what policy decides, without calling anything."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import click

from gateway.cli.options import config_option, echo_json, json_option, load, load_gateway, moment, progress_bar
from gateway.gateway import Gateway
from gateway.outcomes import ConfigError
from gateway.policy import PolicyEngine
from gateway.policy.lint import LintFinding, lint
from gateway.policy.replay import replay
from gateway.policy.testing import CaseResult, PolicyCase, default_test_files, load_cases
from gateway.reads import NoDatabase, open_reads
from gateway.store.errors import StoreError


@click.group()
def policy() -> None:
    """Check and explain authorization policy."""


@policy.command()
@config_option
@click.argument("subject")
@click.argument("tool")
@click.option("--args", "arguments", default="{}", help="The call's arguments as a JSON object.")
@json_option
def check(config_path: Path, subject: str, tool: str, arguments: str, as_json: bool) -> None:
    """Show the decision for SUBJECT calling TOOL, the rule behind it and any findings.

    Runs the pipeline up to (not including) execution: nothing is called,
    queued or recorded. SUBJECT is what the question is about, not who asks: any subject may be named,
    whatever identity.allow_choosing_subject says (the answer is in the policy files the CLI reads anyway).

    Example: portcullis policy check bob payments.refund --args '{"customer_id": "C001", "amount": 20, "reason": "x"}'
    """
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--args") from exc
    report = anyio.run(load_gateway(config_path).check, subject, tool, parsed)
    if as_json:
        echo_json(report.model_dump(mode="json"))
        return
    click.echo(f"decision: {report.decision.value}")
    click.echo(f"rule:     {report.rule or '(none matched: deny by default)'}")
    if report.rule_source:
        click.echo(f"source:   {report.rule_source}")
    if report.approver:
        click.echo(f"approver: {report.approver} ({report.quorum} distinct approver(s))")
    click.echo(f"roles:    {', '.join(report.roles) or '(none)'}")
    explained = f" ({report.message})" if report.message and report.message != report.outcome else ""
    click.echo(f"outcome:  {report.outcome}{explained}")
    for match in report.matches:
        if match.condition is None:
            verdict = "matched"
        elif match.condition_error is not None:
            verdict = f"condition could not be evaluated ({match.condition_error})"
        else:
            verdict = f"condition is {str(match.condition_value).lower()}"
        flag = "+" if match.counted else "-"
        click.echo(f"  {flag} {match.rule}  [{match.source}] {verdict}")
    for finding in report.findings:
        click.echo(f"finding:  [{finding.rule}] {finding.path or ''} {finding.message}")


@policy.command("test")
@config_option
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def test_policy(config_path: Path, files: tuple[Path, ...], as_json: bool) -> None:
    """Run policy unit tests (YAML); exit 1 if any fails.

    Without FILES, runs every `*_test.yaml` beside the policy files.

    Example: portcullis policy test policies/demo_test.yaml
    """
    gateway = load_gateway(config_path)
    paths = list(files) or default_test_files(gateway.config.resolve(gateway.config.policy.rules).parent)
    if not paths:
        raise click.ClickException("no policy test files (*_test.yaml) found")
    try:
        suites = [(path, load_cases(path)) for path in paths]
    except ConfigError as exc:
        raise click.ClickException("\n  ".join(exc.problems)) from exc
    results = [_run_case(gateway, path, case) for path, cases in suites for case in cases]
    failed = [r for r in results if not r.passed]
    if as_json:
        echo_json([r.model_dump() for r in results])
    else:
        for result in failed:
            click.echo(f"FAIL {result.file}: {result.name}: {result.problem}")
        click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise SystemExit(1)


def _run_case(gateway: Gateway, path: Path, case: PolicyCase) -> CaseResult:
    roles = gateway.policy.roles_for(case.subject)
    tenant = case.tenant or gateway.config.identity.default_tenant
    context = {"args": case.args, "subject": {"id": case.subject, "tenant": tenant, "roles": list(roles)}}
    decision = gateway.policy.decide(case.subject, case.target, case.action, context)
    problems = []
    if decision.decision is not case.expect:
        problems.append(f"expected {case.expect.value}, got {decision.decision.value} ({decision.reason})")
    if case.approver is not None and decision.approver != case.approver:
        problems.append(f"expected approver {case.approver}, got {decision.approver}")
    if case.quorum is not None and decision.quorum != case.quorum:
        problems.append(f"expected quorum {case.quorum}, got {decision.quorum}")
    if case.rule is not None and case.rule not in (decision.rule or ""):
        problems.append(f"expected the deciding rule to contain {case.rule!r}, got {decision.rule!r}")
    return CaseResult(file=str(path), name=case.name, passed=not problems, problem="; ".join(problems) or None)


@policy.command("lint")
@config_option
@json_option
def lint_policy(config_path: Path, as_json: bool) -> None:
    """Find policy mistakes: errors (exit 1) and warnings.

    A deployment that does not load (a malformed rule, an approver role no one holds) is reported
    as errors too.

    Example: portcullis policy lint
    """
    try:
        gateway = Gateway(load(config_path), "admin")
    except ConfigError as exc:
        _echo_findings([_load_error(problem) for problem in exc.problems], as_json)
        raise SystemExit(1) from exc
    config, snapshot = gateway.config, gateway.snapshot
    tools = {d.name for d in snapshot.catalog.all_definitions()}
    others = {f"{route.upstream.namespace}.{route.uri}" for route, _ in gateway.resources.federation.resources()}
    path = config.resolve(config.guardrails) if config.guardrails is not None else None
    guardrails = (snapshot.guardrails.config, path) if path is not None else None
    findings = lint(snapshot.policy, tools, others, guardrails, config.identity.jwt)
    _echo_findings(findings, as_json)
    if any(f.level == "error" for f in findings):
        raise SystemExit(1)


def _echo_findings(findings: list[LintFinding], as_json: bool) -> None:
    if as_json:
        echo_json([f.model_dump() for f in findings])
        return
    for finding in findings:
        click.echo(f"{finding.level}: {finding.source}: {finding.message}")
    errors = sum(f.level == "error" for f in findings)
    click.echo(f"{errors} error(s), {len(findings) - errors} warning(s)")


def _load_error(problem: str) -> LintFinding:
    """A load problem (`FILE:LINE: message`) as a lint error."""
    source, separator, message = problem.partition(": ")
    return LintFinding(level="error", source=source if separator else "", message=message if separator else problem)


@policy.command("replay")
@config_option
@click.option(
    "--policy",
    "candidate",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A folder with the candidate model.conf and policy.csv.",
)
@click.option(
    "--since", default="7d", show_default=True, callback=moment, help="How far back: 15m, 1h, 7d or an ISO time."
)
@json_option
def replay_policy(config_path: Path, candidate: Path, since: str, as_json: bool) -> None:
    """List every recorded call whose decision the candidate policy would change.

    A call whose decision reads an argument the audit log holds only as a salted hash
    (audit.personal_keys, audit.secret_keys) or masked is listed as not replayable, with the
    reason, never as a change. Calls refused before policy was asked (rate limits, unknown
    names) are not replayed.

    Example: portcullis policy replay --policy ../candidate/policies --since 7d
    """
    config = load(config_path)
    try:
        engine = PolicyEngine.from_files(candidate / "model.conf", candidate / "policy.csv", ("--policy", "--policy"))
    except ConfigError as exc:
        raise click.ClickException("invalid candidate policy:\n  " + "\n  ".join(exc.problems)) from exc
    try:
        with open_reads(config) as reads, progress_bar("replaying", reads.audit.count("tool.call")) as advance:
            report = replay(reads.audit, engine, since, advance, config.audit.personal_keys)
    except NoDatabase as exc:
        raise click.ClickException(f"no audit database at {exc.path}") from exc
    except StoreError as exc:
        raise click.ClickException(f"cannot read the audit log: {exc}") from exc
    if as_json:
        echo_json(report.model_dump())
        return
    for change in report.changes:
        click.echo(f"#{change.seq} {change.ts} {change.subject} {change.tool}: {change.old} -> {change.new}")
        click.echo(f"    now: {change.new_rule}")
    for skipped in report.not_replayable:
        possible = " or ".join(skipped.possible)
        click.echo(f"#{skipped.seq} {skipped.ts} {skipped.subject} {skipped.tool}: {skipped.old}, not replayable")
        click.echo(f"    now: {possible}, depending on what was not recorded:")
        for reason in skipped.reasons:
            click.echo(f"      {reason}")
    click.echo(
        f"{report.replayed} call(s) replayed, {len(report.changes)} decision(s) would change,"
        f" {len(report.not_replayable)} not replayable"
    )
