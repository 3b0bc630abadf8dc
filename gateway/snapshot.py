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
