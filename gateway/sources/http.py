"""HTTP tools: each tool is one request to a configured endpoint, through one shared `httpx.AsyncClient`.

Arguments go where the tool's config says (path placeholders, query, headers,
JSON body). Path values are URL-encoded, so an argument can never change the
host or climb the path. A non-2xx status is the tool's failure (`tool_failed`
with the status), a connection error is `upstream_unavailable`, and the
gateway's timeout applies like for any tool. A tool marked `public_only`
connects to the address its host was checked to resolve to, and every
redirect it follows is checked the same way (SSRF protection).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urljoin

import httpx
import yaml
from anyio.abc import TaskGroup
from pydantic import TypeAdapter, ValidationError

from gateway.canonical import canonical_json
from gateway.config import HttpToolConfig
from gateway.guardrails.addresses import AddressPolicy, check_url
from gateway.outcomes import ConfigError, UpstreamError
from gateway.tool_api import ToolContext
from gateway.tool_types import SourceHealth, ToolDefinition, ToolResult

_DEFINITIONS = TypeAdapter(list[HttpToolConfig])


class HttpToolSource:
    kind = "http"

    def __init__(self, tools: list[HttpToolConfig], name: str = "http") -> None:
        self.name = name
        self._configs = {tool.name: tool for tool in tools}
        self._definitions = {tool.name: _definition(tool, name) for tool in tools}
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def load_file(cls, path: Path) -> list[HttpToolConfig]:
        """The `http_tools:` list of a YAML tool file (as `portcullis tools import-openapi` writes it)."""
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError([f"{path}: cannot read HTTP tool file: {exc}"]) from exc
        if not isinstance(data, dict) or not isinstance(data.get("http_tools"), list):
            raise ConfigError([f"{path}: an HTTP tool file needs a top-level 'http_tools:' list"])
        try:
            return _DEFINITIONS.validate_python(data["http_tools"])
        except ValidationError as exc:
            raise ConfigError(
                [f"{path}: http_tools.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
            ) from exc

    def list_tools(self) -> list[ToolDefinition]:
        return list(self._definitions.values())

    async def start(self, tasks: TaskGroup) -> None:
        self._client = httpx.AsyncClient(follow_redirects=False)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def health(self) -> SourceHealth:
        status: Literal["ok", "starting"] = "ok" if self._client is not None else "starting"
        return SourceHealth(source=self.name, kind=self.kind, status=status, tools=len(self._definitions))

    async def call(self, tool: ToolDefinition, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        if self._client is None:
            raise UpstreamError("the HTTP tool client is not started")
        config = self._configs[tool.name]
        request = build_request(config, arguments)
        for hop in range(config.max_redirects + 1):
            sent = await pinned(request, config) if config.public_only else request
            try:
                response = await self._client.request(**sent)
            except httpx.TimeoutException as exc:
                raise TimeoutError(f"{config.url} did not answer in time") from exc
            except httpx.HTTPError as exc:
                raise UpstreamError(
                    f"{config.method} {_origin(request['url'])} failed: {type(exc).__name__}: {exc}"
                ) from exc
            location = response.headers.get("location")
            if not response.is_redirect or location is None or hop == config.max_redirects:
                break
            request = redirected(request, response.status_code, urljoin(request["url"], location))
        return _result(config, response)


def build_request(config: HttpToolConfig, arguments: dict[str, Any]) -> dict[str, Any]:
    """The `httpx.AsyncClient.request` keyword arguments for one call."""
    url = config.url
    query: dict[str, Any] = {}
    headers = dict(config.headers)
    body: dict[str, Any] = {}
    default = "query" if config.method in ("GET", "DELETE") else "body"
    for name, value in arguments.items():
        if name == config.body_argument:
            continue
        location = config.parameters.get(name, default)
        if location == "path":
            url = url.replace(f"{{{name}}}", quote(str(value), safe=""))
        elif location == "query":
            query[name] = _scalar(value)
        elif location == "header":
            headers[name] = str(_scalar(value))
        else:
            body[name] = value
    request: dict[str, Any] = {"method": config.method, "url": url, "params": query, "headers": headers}
    if config.body_argument is not None and config.body_argument in arguments:
        request["content"] = canonical_json(arguments[config.body_argument]).encode()
        headers["content-type"] = "application/json"
    elif body:
        request["json"] = body
    return request


async def pinned(request: dict[str, Any], config: HttpToolConfig) -> dict[str, Any]:
    """The request sent to the address its host was checked to resolve to, with the name kept for
    the Host header and TLS (SNI and certificate checks still use the name). Raises `AddressRefused`."""
    policy = AddressPolicy(schemes=("http", "https"), allow_networks=config.allow_networks)
    checked = await check_url(request["url"], policy)
    address = checked.addresses[0]
    url = httpx.URL(request["url"])
    host = f"[{address}]" if address.version == 6 else str(address)
    default_port = {"http": 80, "https": 443}[checked.scheme]
    authority = url.host if checked.port == default_port else f"{url.host}:{checked.port}"
    headers = {**request["headers"], "host": authority}
    extensions = {"sni_hostname": url.host} if checked.scheme == "https" else {}
    return {**request, "url": str(url.copy_with(host=host)), "headers": headers, "extensions": extensions}


def redirected(request: dict[str, Any], status: int, location: str) -> dict[str, Any]:
    """The next request of a redirect: 303 (and 301/302 after a POST) become a GET without a body, and
    the tool's configured headers (its credentials) are not sent to another origin."""
    method = request["method"]
    following = {"method": method, "url": location, "params": {}, "headers": dict(request["headers"])}
    if status == 303 or (status in (301, 302) and method not in ("GET", "HEAD")):
        following["method"] = "GET"
    elif "content" in request or "json" in request:
        following.update({k: request[k] for k in ("content", "json") if k in request})
    if _authority(location) != _authority(request["url"]):
        following["headers"] = {}
    return following


def _scalar(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return canonical_json(value)
    return value


def _result(config: HttpToolConfig, response: httpx.Response) -> ToolResult:
    text = response.text
    structured: dict[str, Any] | None = None
    if config.response == "json" and text:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            structured = body
        elif body is not None:
            structured = {"result": body}
    if response.is_success:
        return ToolResult(content=[{"type": "text", "text": text}], structured=structured)
    message = f"HTTP {response.status_code} {response.reason_phrase} from {config.method} {_origin(str(response.url))}"
    return ToolResult(
        content=[{"type": "text", "text": f"{message}: {text[:2000]}"}],
        is_error=True,
        meta={"http_status": response.status_code},
    )


def _authority(url: str) -> tuple[str, str, int | None]:
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host, parsed.port


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}{f':{parsed.port}' if parsed.port else ''}{parsed.path}"


def _definition(config: HttpToolConfig, source: str) -> ToolDefinition:
    return ToolDefinition(
        name=config.name,
        description=config.description,
        input_schema=config.input_schema,
        output_schema=config.output_schema,
        annotations=config.annotations,
        source=source,
        timeout_seconds=config.timeout_seconds,
    )
