"""The deployment's configuration: `portcullis.yaml`, validated into frozen models."""

from gateway.config.loader import load_config
from gateway.config.models import (
    ApiKey,
    AuditConfig,
    GatewayConfig,
    IdentityConfig,
    LimitsConfig,
    PolicyConfig,
    PythonToolsConfig,
    ServerConfig,
    ToolOverride,
    ToolsConfig,
)

__all__ = [
    "ApiKey",
    "AuditConfig",
    "GatewayConfig",
    "IdentityConfig",
    "LimitsConfig",
    "PolicyConfig",
    "PythonToolsConfig",
    "ServerConfig",
    "ToolOverride",
    "ToolsConfig",
    "load_config",
]
