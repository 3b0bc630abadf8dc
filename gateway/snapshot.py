"""One immutable snapshot of configuration, policy and catalog, with one version hash.

Every call takes the snapshot once at its start, so it is decided by exactly
one policy version and one catalog, and its audit record names them. A change
builds a complete new snapshot and swaps one reference: a reload reads the files
again (`build`); an upstream's changed tool list keeps everything else (`rebuilt`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.canonical import digest
from gateway.catalog import Catalog
from gateway.config import GatewayConfig, load_config, load_model
from gateway.guardrails import Guardrails, GuardrailsConfig
from gateway.guardrails.definitions import inspect_definition
from gateway.outcomes import Decision, PolicyError
from gateway.policy import PolicyEngine
from gateway.policy.lint import check_approvers
from gateway.sources.base import ToolSource
from gateway.sources.pins import ToolLock
from gateway.sources.registry import SourceSet
from gateway.tool_types import ToolDefinition


@dataclass(frozen=True)
class Snapshot:
    config: GatewayConfig
    policy: PolicyEngine
    catalog: Catalog
    guardrails: Guardrails
    version: str

    @classmethod
    def build(cls, config: GatewayConfig, policy: PolicyEngine, sources: tuple[ToolSource, ...]) -> Snapshot:
        """A snapshot of `config`'s guardrails file and tool lock as they are on disk now."""
        path = guardrails_file(config)
        settings = load_model(path, GuardrailsConfig, key="guardrails") if path is not None else GuardrailsConfig()
        return cls.assemble(config, policy, settings, ToolLock.load(config.resolve(config.tools.lock)), sources)

    def rebuilt(self, sources: tuple[ToolSource, ...]) -> Snapshot:
        """This snapshot's configuration, policy, guardrail settings and pins over the sources' current tools.

        An upstream's tools changed: the catalog is rebuilt and pins re-checked, but nothing is
        read from disk, so an edited guardrails file or tool lock waits for a reload (and its record).
        """
        return self.assemble(self.config, self.policy, self.guardrails.config, self.catalog.lock, sources)

    @classmethod
    def assemble(
        cls,
        config: GatewayConfig,
        policy: PolicyEngine,
        settings: GuardrailsConfig,
        lock: ToolLock,
        sources: tuple[ToolSource, ...],
    ) -> Snapshot:
        checks = settings.definitions
        check = None
        if checks.enabled:

            def check(definition: ToolDefinition, others: list[str]) -> list[dict[str, str]]:
                if definition.name in checks.exempt:
                    return []
                shown = definition.model_dump(
                    include={"description", "title", "input_schema", "output_schema", "annotations"}
                )
                return inspect_definition(definition.name, shown, others)

        catalog = Catalog(sources, lock, config.tools.new_tools, check)
        check_condition_fields(policy, catalog)
        path = guardrails_file(config)
        check_approvers(policy, settings, path, config.identity.jwt)
        base = path.parent if path is not None else config.root
        guardrails = Guardrails(settings, base, config.root, catalog)
        version = digest(
            {
                "config": config.model_dump(mode="json"),
                "policy": policy.version,
                "guardrails": settings.model_dump(mode="json"),
                "tools": sorted(d.definition_hash for d in catalog.definitions()),
            }
        )
        return cls(config=config, policy=policy, catalog=catalog, guardrails=guardrails, version=version)

    def visible_tool(self, subject: str | None, name: str, granted: tuple[str, ...] = ()) -> ToolDefinition | None:
        """The definition `subject` is shown for `name`, or None if the tool does not exist for them."""
        entry = self.catalog.get(name)
        if entry is None or not subject:
            return None
        if self.policy.decide(subject, name, granted=granted).decision is Decision.DENY:
            return None
        return entry[0]

    @classmethod
    def load(cls, config: GatewayConfig) -> Snapshot:
        """A snapshot of the files alone: upstreams are not contacted (their pinned tools are shown)."""
        policy = load_policy(config)
        return cls.build(config, policy, SourceSet(config).sources)

    @classmethod
    def from_path(cls, path: Path | str) -> Snapshot:
        return cls.load(load_config(path))


def guardrails_file(config: GatewayConfig) -> Path | None:
    return config.resolve(config.guardrails) if config.guardrails is not None else None


def load_policy(config: GatewayConfig) -> PolicyEngine:
    return PolicyEngine.from_files(config.resolve(config.policy.model), config.resolve(config.policy.rules))


def check_condition_fields(policy: PolicyEngine, catalog: Catalog) -> None:
    """A condition on a named tool may only read arguments that tool has (a load error otherwise)."""
    problems = []
    tools = {d.name: d for d in catalog.all_definitions()}
    for rule in policy.rules:
        definition = tools.get(rule.tool)
        if rule.condition is None or definition is None or rule.action != "call":
            continue
        known = set(definition.input_schema.get("properties", {}))
        for reference in rule.condition.references:
            if reference[0] == "args" and known and reference[1] not in known:
                problems.append(
                    f"{rule.source}: condition reads args.{reference[1]}, but {rule.tool} has no argument"
                    f" {reference[1]!r} (it has: {', '.join(sorted(known))})"
                )
    if problems:
        raise PolicyError(problems)
