"""Pydantic models of `portcullis.yaml`.

Every model forbids unknown keys (a typo is an error, not a silently ignored
setting) and is frozen (a snapshot never changes under a running call).
Relative paths are resolved against the config file's folder by the loader.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=0, le=65535)
    path: str = "/mcp"
    public_url: str | None = None
    """The URL clients use, when it differs from http://host:port (behind a proxy)."""
    allowed_hosts: tuple[str, ...] = ()
    """`Host` header values accepted (`gateway.acme.example`, `gateway.acme.example:*`): DNS-rebinding
    protection. Required to bind beyond loopback; on loopback the loopback names are always accepted."""
    allowed_origins: tuple[str, ...] = ()
    """`Origin` header values accepted from browsers (`https://console.acme.example`); none by default."""


class ApiKey(_Model):
    """An HTTP bearer key, stored as the SHA-256 of the key, never the key itself."""

    subject: str = Field(min_length=1)
    sha256: str
    tenant: str | None = None
    description: str = ""

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        value = value.strip().lower()
        if not _SHA256_HEX.match(value):
            raise ValueError("must be the 64-character hex SHA-256 of the key, not the key itself")
        return value


class JwtConfig(_Model):
    """Bearer JWTs from the organisation's identity provider."""

    issuer: str
    audience: str
    algorithms: tuple[Literal["HS256", "RS256", "ES256"], ...] = ("RS256", "ES256")
    secret: str | None = None
    """HS256 shared secret (use `${ENV}`)."""
    public_key_file: Path | None = None
    """PEM public key for RS256 / ES256."""
    jwks_file: Path | None = None
    """A JWKS document; the token's `kid` picks the key."""
    subject_claim: str = "sub"
    roles_claim: str | None = "roles"
    role_prefix: str = "role:"
    """Prepended to each role from the token, to name a policy role (`finance` -> `role:finance`)."""
    tenant_claim: str | None = "tenant"
    leeway_seconds: float = Field(default=30, ge=0)

    @model_validator(mode="after")
    def _has_a_key(self) -> JwtConfig:
        if self.secret is None and self.public_key_file is None and self.jwks_file is None:
            raise ValueError("a JWT config needs a secret, a public_key_file or a jwks_file")
        if self.secret is not None and "HS256" not in self.algorithms:
            raise ValueError("a secret is only used with HS256: add it to algorithms")
        return self


class IdentityConfig(_Model):
    os_users: dict[str, str] = Field(default_factory=dict)
    """stdio: operating-system user -> subject. By default the stdio caller is the OS user running the process."""
    allow_choosing_subject: bool = False
    """stdio: honour `--as` and $PORTCULLIS_SUBJECT. Only for demos and tests: anyone who can start the
    process can then claim to be anyone."""
    default_tenant: str | None = None
    """The tenant of callers whose credentials name none (`subject.tenant` in conditions)."""
    api_keys: tuple[ApiKey, ...] = ()
    jwt: JwtConfig | None = None


class PolicyConfig(_Model):
    model: Path = Path("policies/model.conf")
    rules: Path = Path("policies/policy.csv")
    watch_seconds: float = Field(default=1.0, ge=0)
    """How often to look for changed policy and config files (0: never; reload by restart)."""


class PythonToolsConfig(_Model):
    path: Path = Path("tools")
    settings: dict[str, Any] = Field(default_factory=dict)
    """Free-form settings handed to tools through `ToolContext.settings`."""


class ToolOverride(_Model):
    timeout_seconds: float | None = Field(default=None, gt=0)


_NAMESPACE = r"^[a-z][a-z0-9_-]*$"
_TOOL_NAME = r"^[a-z][a-z0-9_-]*\.[A-Za-z0-9_.-]+$"


class StdioUpstreamConfig(_Model):
    command: str = Field(min_length=1)
    args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    """Passed to the server explicitly; nothing else is inherited but `inherit_env`."""
    inherit_env: tuple[str, ...] = ("PATH",)
    cwd: Path | None = None


class HttpUpstreamConfig(_Model):
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    """Sent to this upstream only (use `${ENV}` for secrets); the caller's credentials never are."""


class UpstreamConfig(_Model):
    """An MCP server whose tools, resources and prompts appear under `namespace.`."""

    namespace: str = Field(pattern=_NAMESPACE)
    stdio: StdioUpstreamConfig | None = None
    http: HttpUpstreamConfig | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)
    connect_timeout_seconds: float = Field(default=15.0, gt=0)
    max_concurrency: int = Field(default=8, ge=1, le=1024)
    restart_backoff_seconds: float = Field(default=1.0, gt=0)
    """First wait before restarting a failed upstream; doubles per failure up to 30 s."""

    @model_validator(mode="after")
    def _one_transport(self) -> UpstreamConfig:
        if (self.stdio is None) == (self.http is None):
            raise ValueError("an upstream needs exactly one of 'stdio' or 'http'")
        return self


HttpParameterLocation = Literal["path", "query", "header", "body"]


class HttpToolConfig(_Model):
    """A tool that is one HTTP request, called with the gateway's shared httpx client."""

    name: str = Field(pattern=_TOOL_NAME)
    description: str = ""
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str = Field(pattern=r"^https?://")
    """May hold `{param}` placeholders, filled (URL-encoded) from arguments located in `path`."""
    headers: dict[str, str] = Field(default_factory=dict)
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    output_schema: dict[str, Any] | None = None
    parameters: dict[str, HttpParameterLocation] = Field(default_factory=dict)
    """Where each argument goes; unlisted arguments go to the query (GET, DELETE) or the JSON body."""
    body_argument: str | None = None
    """Send this one argument as the whole JSON body (for non-object bodies)."""
    response: Literal["json", "text"] = "json"
    timeout_seconds: float | None = Field(default=None, gt=0)
    annotations: dict[str, Any] = Field(default_factory=dict)
    max_redirects: int = Field(default=0, ge=0, le=10)
    """Redirects to follow (0: a redirect is the result). With `public_only`, each hop is checked again."""
    public_only: bool = False
    """Connect only to public addresses: the host is resolved, every address checked, and the connection
    made to the checked address (no second lookup an attacker's DNS could answer differently)."""
    allow_networks: tuple[str, ...] = ()
    """With `public_only`: internal networks (CIDR) this tool may still reach."""

    @model_validator(mode="after")
    def _placeholders_are_path_parameters(self) -> HttpToolConfig:
        for placeholder in re.findall(r"{([^}]+)}", self.url):
            if self.parameters.get(placeholder) != "path":
                raise ValueError(f"url placeholder {{{placeholder}}} must be listed in parameters as 'path'")
        return self


class OpenApiConfig(_Model):
    """An OpenAPI 3 document loaded as HTTP tools at start-up (one per operation)."""

    file: Path
    namespace: str = Field(pattern=_NAMESPACE)
    base_url: str | None = Field(default=None, pattern=r"^https?://")


class ToolsConfig(_Model):
    python: tuple[PythonToolsConfig, ...] = (PythonToolsConfig(),)
    http: tuple[HttpToolConfig, ...] = ()
    http_files: tuple[Path, ...] = ()
    """YAML files with a top-level `http_tools:` list (written by `portcullis tools import-openapi`)."""
    openapi: tuple[OpenApiConfig, ...] = ()
    """OpenAPI documents imported at start-up (prefer a reviewed file from `tools import-openapi`)."""
    timeout_seconds: float = Field(default=30.0, gt=0)
    overrides: dict[str, ToolOverride] = Field(default_factory=dict)
    """Per-tool settings by full tool name (`crm.find_customer`)."""
    lock: Path = Path("tools.lock")
    """Pinned definitions of upstream tools (`portcullis tools pin`)."""
    new_tools: Literal["quarantine", "allow"] = "quarantine"
    """What to do with an upstream tool that was never pinned."""


class LimitsConfig(_Model):
    max_argument_bytes: int = Field(default=1024 * 1024, gt=0)
    max_argument_depth: int = Field(default=32, gt=0, le=1000)
    max_result_bytes: int = Field(default=1024 * 1024, gt=0)


_DEFAULT_SECRET_KEYS = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "credential",
    "private_key",
    "access_key",
    "client_secret",
)


class AuditConfig(_Model):
    path: Path = Path("audit/audit.db")
    salt: str | None = None
    """Salt for hashing secret and personal argument values (use `${ENV}`); if unset, read from `salt_file`."""
    salt_file: Path = Path("audit/audit.salt")
    """The salt when `salt` is unset: created (mode 0600) on first start, never kept in the database."""
    secret_keys: tuple[str, ...] = _DEFAULT_SECRET_KEYS
    """Argument keys whose values are replaced by a salted hash (substring, case-insensitive)."""
    personal_keys: tuple[str, ...] = ()
    """Argument keys holding personal data (exact, case-insensitive), stored as a salted hash too."""
    write_timeout_seconds: float = Field(default=5.0, gt=0)
    """How long a commit waits for a lock held by another writer before its calls are refused."""
    checkpoint_key: Path = Path("audit/checkpoint.key")
    """Ed25519 private key (PEM) signing checkpoints; created, with `.pub` beside it, if missing."""
    checkpoint_public_key: Path | None = None
    """The key `audit verify` trusts; default: `checkpoint_key` with `.pub`."""
    checkpoint_file: Path = Path("audit/checkpoints.jsonl")
    """Checkpoints are appended here as well as to the log: keep it (or ship it) elsewhere."""
    checkpoint_seconds: float = Field(default=300, ge=0)
    """How often to write a checkpoint while serving (0: only at shutdown and on demand)."""


class StoreConfig(_Model):
    """Where the gateway keeps its state: the audit log, approvals, plan runs, rate limits and flow labels.

    `sqlite` (the default) is one file beside the config, for one process or one machine
    (`audit.path`). `postgresql` is one database shared by every replica: rate limits and flow
    labels then hold across replicas, and their audit records extend one chain.
    """

    backend: Literal["sqlite", "postgresql"] = "sqlite"
    dsn: str | None = Field(default=None, repr=False)
    """A libpq connection string or URL (`postgresql` only). Write `${PORTCULLIS_DATABASE_URL}`: a DSN
    holding a password in clear in the file is refused."""
    pool_size: int = Field(default=8, ge=1, le=200)
    """Connections each replica keeps at most."""
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    """How long to wait for the server before the store counts as unavailable (calls are refused)."""
    lock_timeout_seconds: float = Field(default=5.0, gt=0)
    """How long a statement waits for a connection or a row lock before the store counts as busy."""

    @model_validator(mode="after")
    def _dsn_matches_backend(self) -> StoreConfig:
        if self.backend == "postgresql" and not self.dsn:
            raise ValueError("backend postgresql needs dsn: write dsn: ${PORTCULLIS_DATABASE_URL} and set the variable")
        if self.backend == "sqlite" and self.dsn:
            raise ValueError("dsn is for backend postgresql; the SQLite store is audit.path")
        return self


class WebhookConfig(_Model):
    """Told of every new pending request: a JSON POST signed with HMAC-SHA256 (`X-Portcullis-Signature`)."""

    url: str = Field(pattern=r"^https?://")
    secret: str = Field(min_length=16)
    """The HMAC key (use `${ENV}`); receivers check the signature with it."""
    timeout_seconds: float = Field(default=5.0, gt=0)
    retries: int = Field(default=5, ge=0, le=20)
    backoff_seconds: float = Field(default=0.5, gt=0)


class ApprovalsConfig(_Model):
    wait_seconds: float = Field(default=10.0, ge=0)
    """How long a call that needs approval waits for a decision before answering 'pending'."""
    expiry_seconds: float = Field(default=24 * 3600, gt=0)
    """A pending request expires after this."""
    execution_window_seconds: float = Field(default=15 * 60, gt=0)
    """An approved request must run within this, or it expires."""
    poll_seconds: float = Field(default=0.2, gt=0)
    """How often waiters, the executor and the sweeper look at the queue (it is shared with the CLI)."""
    webhook: WebhookConfig | None = None


class GatewayConfig(_Model):
    """The whole deployment. `root` is the folder of the config file."""

    name: str = "portcullis"
    root: Path = Path(".")
    file: Path | None = None
    """The config file itself (set by the loader), watched for changes."""
    server: ServerConfig = ServerConfig()
    identity: IdentityConfig = IdentityConfig()
    policy: PolicyConfig = PolicyConfig()
    tools: ToolsConfig = ToolsConfig()
    upstreams: tuple[UpstreamConfig, ...] = ()
    limits: LimitsConfig = LimitsConfig()
    audit: AuditConfig = AuditConfig()
    store: StoreConfig = StoreConfig()
    approvals: ApprovalsConfig = ApprovalsConfig()
    guardrails: Path | None = None
    """`guardrails.yaml`: detectors per tool, flow labels, rate limits. None: schema checks and size caps only."""

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else (self.root / path).resolve()

    @model_validator(mode="after")
    def _unique_namespaces(self) -> GatewayConfig:
        seen: set[str] = set()
        for upstream in self.upstreams:
            if upstream.namespace in seen:
                raise ValueError(f"upstream namespace {upstream.namespace!r} is declared twice")
            seen.add(upstream.namespace)
        return self

    def cross_check(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Settings that are wrong together (located by the loader)."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if self.store.backend == "postgresql" and not self.audit.salt:
            problems.append(
                (
                    ("store", "backend"),
                    "replicas on postgresql need one audit salt: set audit.salt: ${PORTCULLIS_AUDIT_SALT} (the same"
                    " on every replica; a salt file per replica would hash the same value differently)",
                )
            )
        return problems

    def tool_timeout(self, tool: str, declared: float | None) -> float:
        override = self.tools.overrides.get(tool)
        if override is not None and override.timeout_seconds is not None:
            return override.timeout_seconds
        return declared if declared is not None else self.tools.timeout_seconds
