"""One immutable snapshot of configuration, policy and catalog, with one version hash.

Every call takes the snapshot once at its start, so it is decided by exactly
one policy version and one catalog, and its audit record names them. A change
(an upstream's tool list) builds a complete new snapshot and swaps one reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.canonical import digest
from gateway.catalog import Catalog
from gateway.config import GatewayConfig, load_config
from gateway.outcomes import PolicyError
from gateway.policy import PolicyEngine
from gateway.sources.base import ToolSource
from gateway.sources.pins import ToolLock
from gateway.sources.registry import SourceSet


@dataclass(frozen=True)
class Snapshot:
    config: GatewayConfig
    policy: PolicyEngine
    catalog: Catalog
    version: str

    @classmethod
    def build(cls, config: GatewayConfig, policy: PolicyEngine, sources: tuple[ToolSource, ...]) -> Snapshot:
        catalog = Catalog(sources, ToolLock.load(config.resolve(config.tools.lock)), config.tools.new_tools)
        check_condition_fields(policy, catalog)
        version = digest(
            {
                "config": config.model_dump(mode="json"),
                "policy": policy.version,
                "tools": sorted(d.definition_hash for d in catalog.definitions()),
            }
        )
        return cls(config=config, policy=policy, catalog=catalog, version=version)

    @classmethod
    def load(cls, config: GatewayConfig) -> Snapshot:
        """A snapshot of the files alone: upstreams are not contacted (their pinned tools are shown)."""
        policy = load_policy(config)
        return cls.build(config, policy, SourceSet(config).sources)

    @classmethod
    def from_path(cls, path: Path | str) -> Snapshot:
        return cls.load(load_config(path))


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
