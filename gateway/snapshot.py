"""One immutable snapshot of configuration, policy and catalog, with one version hash.

Every call takes the snapshot once at its start, so it is decided by exactly
one policy version and its audit record names that version.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.canonical import digest
from gateway.catalog import Catalog
from gateway.config import GatewayConfig, load_config
from gateway.policy import PolicyEngine


@dataclass(frozen=True)
class Snapshot:
    config: GatewayConfig
    policy: PolicyEngine
    catalog: Catalog
    version: str

    @classmethod
    def load(cls, config: GatewayConfig) -> Snapshot:
        policy = PolicyEngine.from_files(config.resolve(config.policy.model), config.resolve(config.policy.rules))
        catalog = Catalog.from_config(config)
        version = digest(
            {
                "config": config.model_dump(mode="json"),
                "policy": policy.version,
                "tools": sorted(d.definition_hash for d in catalog.definitions()),
            }
        )
        return cls(config=config, policy=policy, catalog=catalog, version=version)

    @classmethod
    def from_path(cls, path: Path | str) -> Snapshot:
        return cls.load(load_config(path))
