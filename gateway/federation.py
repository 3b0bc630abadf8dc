"""Resources and prompts of upstream MCP servers, namespaced and routed.

Resource URIs stay as their upstream wrote them (clients and models rely on
them); each is owned by one upstream, and its policy object is
`namespace.URI` (so `kb.*` in a rule covers the namespace's tools, resources
and prompts alike; the action tells them apart: `call`, `read`, `get`).
Prompts are renamed `namespace.prompt`, like tools.

`read`, `get` and `complete` turn a client's request into a `Governed` one: the
policy object, the arguments and a `Request` whose fetch the pipeline's
execution stage runs, so these requests pass the same stages as tool calls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import mcp.types as types

from gateway.calls import Governed, Request
from gateway.sources.mcp_upstream import McpUpstream

__all__ = ["Federation", "Governed", "PromptRoute", "ResourceRoute", "template_matches"]


@dataclass(frozen=True)
class ResourceRoute:
    upstream: McpUpstream
    uri: str

    @property
    def policy_object(self) -> str:
        return f"{self.upstream.namespace}.{self.uri}"


@dataclass(frozen=True)
class PromptRoute:
    upstream: McpUpstream
    name: str
    """The upstream's own name for the prompt."""

    @property
    def policy_object(self) -> str:
        return f"{self.upstream.namespace}.{self.name}"


class Federation:
    """Listings and routes over the upstreams' current resources and prompts."""

    def __init__(self, upstreams: list[McpUpstream]) -> None:
        self._upstreams = upstreams

    def resources(self) -> list[tuple[ResourceRoute, types.Resource]]:
        seen: set[str] = set()
        listed = []
        for upstream in self._upstreams:
            for resource in upstream.resources:
                if resource.uri in seen:
                    continue  # the first upstream to list a URI owns it
                seen.add(resource.uri)
                renamed = resource.model_copy(update={"name": f"{upstream.namespace}.{resource.name}"})
                listed.append((ResourceRoute(upstream, resource.uri), renamed))
        return listed

    def resource_templates(self) -> list[tuple[McpUpstream, types.ResourceTemplate]]:
        return [
            (upstream, template.model_copy(update={"name": f"{upstream.namespace}.{template.name}"}))
            for upstream in self._upstreams
            for template in upstream.resource_templates
        ]

    def route_resource(self, uri: str) -> ResourceRoute | None:
        for route, _ in self.resources():
            if route.uri == uri:
                return route
        for upstream in self._upstreams:
            for template in upstream.resource_templates:
                if template_matches(template.uri_template, uri):
                    return ResourceRoute(upstream, uri)
        return None

    def prompts(self) -> list[tuple[PromptRoute, types.Prompt]]:
        return [
            (
                PromptRoute(upstream, prompt.name),
                prompt.model_copy(update={"name": f"{upstream.namespace}.{prompt.name}"}),
            )
            for upstream in self._upstreams
            for prompt in upstream.prompts
        ]

    def route_prompt(self, name: str) -> PromptRoute | None:
        namespace, _, original = name.partition(".")
        for upstream in self._upstreams:
            if upstream.namespace == namespace and any(p.name == original for p in upstream.prompts):
                return PromptRoute(upstream, original)
        return None

    def read(self, uri: str) -> Governed:
        route = self.route_resource(uri)
        if route is None:
            return Governed(uri, {"uri": uri}, Request("resource", "read", uri))
        upstream = route.upstream
        request = Request(
            "resource",
            "read",
            uri,
            lambda arguments: upstream.read_resource(arguments["uri"]),
            upstream.timeout_seconds,
        )
        return Governed(route.policy_object, {"uri": uri}, request)

    def get(self, name: str, arguments: dict[str, str] | None) -> Governed:
        route = self.route_prompt(name)
        if route is None:
            return Governed(name, dict(arguments or {}), Request("prompt", "get", name))
        upstream, original = route.upstream, route.name
        request = Request(
            "prompt",
            "get",
            name,
            lambda given: upstream.get_prompt(original, given or None),
            upstream.timeout_seconds,
        )
        return Governed(route.policy_object, dict(arguments or {}), request)

    def complete(
        self,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context: dict[str, str] | None,
    ) -> Governed:
        """Completion of a prompt's argument (policy `get` on the prompt) or a template's (`read` on the template)."""
        arguments: dict[str, Any] = {"argument": argument, "context": context or {}}
        upstream: McpUpstream | None
        action: Literal["read", "get"]
        if isinstance(ref, types.PromptReference):
            route = self.route_prompt(ref.name)
            upstream, action, target = (route.upstream if route else None), "get", ref.name
            asked: types.PromptReference | types.ResourceTemplateReference = (
                ref.model_copy(update={"name": route.name}) if route else ref
            )
        else:
            upstream, action, asked = self.route_template(ref.uri), "read", ref
            target = f"{upstream.namespace}.{ref.uri}" if upstream else ref.uri
        if upstream is None:
            return Governed(target, arguments, Request("completion", action, target))
        served = upstream
        request = Request(
            "completion",
            action,
            target,
            lambda given: served.complete(asked, given["argument"], given["context"] or None),
            served.timeout_seconds,
        )
        return Governed(target, arguments, request)

    def route_template(self, uri_template: str) -> McpUpstream | None:
        for upstream in self._upstreams:
            if any(t.uri_template == uri_template for t in upstream.resource_templates):
                return upstream
        return None


def template_matches(template: str, uri: str) -> bool:
    """Whether `uri` is an expansion of a simple RFC 6570 template (`{var}`, `{+var}`)."""
    pattern = ""
    for literal, expression in re.findall(r"([^{]*)(\{[^}]*\})?", template):
        pattern += re.escape(literal)
        if expression:
            pattern += ".+" if expression.startswith(("{+", "{#")) else "[^/?#]+"
    return re.fullmatch(pattern, uri) is not None
