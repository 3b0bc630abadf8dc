"""The deployment's configuration: `portcullis.yaml`, validated into frozen models."""

from gateway.config.loader import load_config, load_model
from gateway.config.models import (
    ApiKey,
    AuditConfig,
    GatewayConfig,
    HttpToolConfig,
    HttpUpstreamConfig,
    IdentityConfig,
    JwtConfig,
    LimitsConfig,
    PolicyConfig,
    PythonToolsConfig,
    ServerConfig,
    StdioUpstreamConfig,
    StoreConfig,
    ToolOverride,
    ToolsConfig,
    UpstreamConfig,
)

__all__ = [
    "ApiKey",
    "AuditConfig",
    "GatewayConfig",
    "HttpToolConfig",
    "HttpUpstreamConfig",
    "IdentityConfig",
    "JwtConfig",
    "LimitsConfig",
    "PolicyConfig",
    "PythonToolsConfig",
    "ServerConfig",
    "StdioUpstreamConfig",
    "StoreConfig",
    "ToolOverride",
    "ToolsConfig",
    "UpstreamConfig",
    "load_config",
    "load_model",
]
