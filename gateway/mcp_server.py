"""The MCP layer: translate MCP requests into gateway calls and outcomes into MCP results.

Nothing here decides anything. Governed refusals reach the client as tool
results, every one in the same shape (`to_call_result`), and as JSON-RPC errors
where MCP has no error result (resources, prompts, completions: `_or_raise`).
"""

from __future__ import annotations

import weakref
from typing import Any, TypeVar

from mcp import MCPError, types
from mcp.server import Server, ServerRequestContext
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.connection import Connection
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.shared.message import ServerMessageMetadata
from mcp.types import INTERNAL_ERROR, INVALID_PARAMS
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

from gateway.calls import Caller
from gateway.canonical import digest
from gateway.ids import new_id
from gateway.outcomes import Outcome, OutcomeCode
from gateway.ports import Front
from gateway.tool_types import ToolDefinition

R = TypeVar("R", bound=BaseModel)
SERVER_NAME = "portcullis"
AUDIT_ID_META_KEY = "portcullis/audit_id"
"""`_meta` key of every tool result: the sequence number of the call's audit record."""
ERROR_META_KEY = "portcullis/error"
"""`_meta` key of every refusal: `code`, `message`, `stage`, `audit_id` and details."""


def build_server(
    gateway: Front,
    *,
    transport: str,
    stdio_subject: str | None = None,
    stdio_auth: str = "stdio",
    version: str = "",
) -> Server:
    """A low-level MCP server whose every request goes through `gateway` (its door and its listings)."""

    stdio_session = new_id() if transport == "stdio" else None  # one stdio process serves one client
    session_ids: weakref.WeakKeyDictionary[Connection, str] = weakref.WeakKeyDictionary()

    def session_of(ctx: ServerRequestContext[Any]) -> str | None:
        """The client session: the HTTP session id, the stdio process, or the connection (None when stateless)."""
        connection = getattr(ctx.session, "_connection", None)
        named = getattr(connection, "session_id", None)
        if named:
            return str(named)
        if stdio_session is not None:
            return stdio_session
        if isinstance(connection, Connection) and ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            # A stateless 2026-07-28 request gets a fresh connection object each time: not a session.
            return session_ids.setdefault(connection, new_id())
        return None

    def caller(ctx: ServerRequestContext[Any]) -> Caller:
        name, client_version = _client_info(ctx)
        tenant = gateway.snapshot.config.identity.default_tenant
        granted: tuple[str, ...] = ()
        if transport == "stdio":
            subject, auth = stdio_subject, stdio_auth
        else:
            token = get_access_token()
            claims = (token.claims or {}) if token is not None else {}
            subject = token.subject if token is not None else None
            auth = str(claims.get("auth", "bearer")) if token is not None else "none"
            tenant = claims.get("tenant") or tenant
            granted = tuple(claims.get("roles") or ())
        return Caller(
            subject=subject,
            tenant=tenant,
            granted_roles=granted,
            session=session_of(ctx),
            auth=auth,
            transport=transport,
            client_name=name,
            client_version=client_version,
            protocol_version=ctx.protocol_version,
        )

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        _remember_connection(connections, ctx)
        who = caller(ctx)
        tools = gateway.visible_tools(who.subject, who.granted_roles)
        can = _relayable(ctx)
        needs = gateway.capability_needs()
        # An upstream tool listed only because the gateway declared elicitation or sampling would fail
        # for a client that cannot answer such requests: it is not shown to that client.
        return types.ListToolsResult(tools=[to_mcp_tool(d) for d in tools if needs.get(d.name, frozenset()) <= can])

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        who = caller(ctx)
        wants_progress = (ctx.meta or {}).get("progress_token") is not None
        progress = ctx.session.report_progress if wants_progress else None
        modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        relay = SessionRelay(ctx) if not modern else None
        arguments = params.arguments or {}
        binding = digest({"subject": who.subject, "tool": params.name, "arguments": arguments})
        consent = _consent_answer(params, binding) if modern else None
        outcome = await gateway.call_tool(who, params.name, arguments, progress=progress, relay=relay, consent=consent)
        capabilities = ctx.session.client_capabilities
        can_elicit = capabilities is not None and capabilities.elicitation is not None
        if outcome.code is OutcomeCode.CONSENT_REQUIRED and modern and can_elicit:
            # 2026-07-28 has no server-to-client requests: ask in the result; the client retries with the answer.
            question = types.ElicitRequest(
                params=types.ElicitRequestFormParams(
                    message=outcome.data["question"], requested_schema=outcome.data["schema"]
                )
            )
            return types.InputRequiredResult(input_requests={CONSENT_KEY: question}, request_state=binding)
        listed = gateway.visible_tool(who.subject, params.name, who.granted_roles)
        return to_call_result(outcome, output_schema_listed=listed is not None and listed.output_schema is not None)

    async def list_resources(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=gateway.resources.visible_resources(caller(ctx)))

    async def list_resource_templates(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        templates = gateway.resources.visible_resource_templates(caller(ctx))
        return types.ListResourceTemplatesResult(resource_templates=templates)

    async def read_resource(
        ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        outcome, result = await gateway.resources.read_resource(caller(ctx), str(params.uri))
        return _or_raise(outcome, result)

    async def list_prompts(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=gateway.resources.visible_prompts(caller(ctx)))

    async def get_prompt(ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams) -> types.GetPromptResult:
        outcome, result = await gateway.resources.get_prompt(caller(ctx), params.name, params.arguments)
        return _or_raise(outcome, result)

    async def complete(ctx: ServerRequestContext[Any], params: types.CompleteRequestParams) -> types.CompleteResult:
        argument = {"name": params.argument.name, "value": params.argument.value}
        context = params.context.arguments if params.context is not None else None
        outcome, result = await gateway.resources.complete(caller(ctx), params.ref, argument, context)
        return _or_raise(outcome, result)

    # Tell clients when the catalog changes: handshake-era sessions that listed tools get
    # notifications/tools/list_changed; 2026-07-28 clients hear it on subscriptions/listen.
    connections: weakref.WeakSet[Connection] = weakref.WeakSet()
    bus = InMemorySubscriptionBus()

    async def tools_changed() -> None:
        await bus.publish(ToolsListChanged())
        for connection in list(connections):
            await connection.send_tool_list_changed()  # best effort: never raises

    gateway.on_tools_changed(tools_changed)
    return Server(
        SERVER_NAME,
        version=version,
        instructions="Portcullis: every tool call here is authorized, checked and audited.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_resource_templates,
        on_read_resource=read_resource,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_completion=complete,
        on_subscriptions_listen=ListenHandler(bus),
        get_tool_input_schema=gateway.tool_input_schema,
    )


class SessionRelay:
    """Forward an upstream's elicitation or sampling request to the calling client, on this call's stream."""

    def __init__(self, ctx: ServerRequestContext[Any]) -> None:
        self._ctx = ctx

    async def elicit(self, params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData:
        capabilities = self._ctx.session.client_capabilities
        elicitation = capabilities.elicitation if capabilities is not None else None
        if elicitation is None:
            return types.ErrorData(
                code=types.INVALID_REQUEST, message="the calling client does not support elicitation"
            )
        if isinstance(params, types.ElicitRequestURLParams) and elicitation.url is None:
            return types.ErrorData(
                code=types.INVALID_REQUEST, message="the calling client does not support URL elicitation"
            )
        return await self._send(types.ElicitRequest(params=params), types.ElicitResult)

    async def sample(self, params: types.CreateMessageRequestParams) -> types.CreateMessageResult | types.ErrorData:
        capabilities = self._ctx.session.client_capabilities
        if capabilities is None or capabilities.sampling is None:
            return types.ErrorData(code=types.INVALID_REQUEST, message="the calling client does not support sampling")
        return await self._send(types.CreateMessageRequest(params=params), types.CreateMessageResult)

    async def _send(self, request: Any, result_type: type[R]) -> R | types.ErrorData:
        try:
            return await self._ctx.session.send_request(
                request, result_type, metadata=ServerMessageMetadata(related_request_id=self._ctx.request_id)
            )
        except MCPError as exc:
            return exc.error
        except Exception as exc:  # seam: no back channel (stateless HTTP), a client that went away
            return types.ErrorData(
                code=INTERNAL_ERROR, message=f"could not ask the calling client: {type(exc).__name__}"
            )


def _relayable(ctx: ServerRequestContext[Any]) -> frozenset[str]:
    """What upstream requests this client can be asked: handshake-era sessions that declared the capability."""
    capabilities = ctx.session.client_capabilities
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS or capabilities is None:
        return frozenset()  # 2026-07-28 has no server-to-client requests for the gateway to relay
    declared = (("elicitation", capabilities.elicitation), ("sampling", capabilities.sampling))
    return frozenset(name for name, capability in declared if capability is not None)


def to_mcp_tool(definition: ToolDefinition) -> types.Tool:
    return types.Tool(
        name=definition.name,
        title=definition.title,
        description=definition.description,
        input_schema=definition.input_schema,
        output_schema=definition.output_schema,
        annotations=types.ToolAnnotations.model_validate(definition.annotations) if definition.annotations else None,
    )


def to_call_result(outcome: Outcome, *, output_schema_listed: bool = False) -> types.CallToolResult:
    """An outcome as the client sees it.

    Every refusal has one shape, whatever the tool and the code: text `"<code>: <message>"`
    (unless the tool sent its own error content), and its machine-readable details
    (`code`, `message`, `stage`, `audit_id`, ...) in `_meta["portcullis/error"]` always, and
    in `structuredContent` too unless the caller was shown an `outputSchema` for the tool:
    the TypeScript SDK validates `structuredContent` against that schema even on error
    results, so an error object there would turn a clear refusal into a client-side schema
    error. The one difference: a pending approval is not a failure, so `isError` is false.
    """
    meta: dict[str, Any] = {**outcome.meta, AUDIT_ID_META_KEY: outcome.audit_id}
    if outcome.ok:
        return types.CallToolResult.model_validate(
            {"content": outcome.content, "structuredContent": outcome.structured, "isError": False, "_meta": meta}
        )
    details = {
        **outcome.data,
        "code": outcome.code.value,
        "message": outcome.message,
        "stage": outcome.stage,
        "audit_id": outcome.audit_id,
    }
    meta[ERROR_META_KEY] = details
    # Waiting for a person is not a failure: the model is told what to do next in a plain result.
    # (A tool with an outputSchema cannot answer this way: clients check results against it.)
    pending = outcome.code is OutcomeCode.APPROVAL_REQUIRED and "approval_id" in outcome.data
    result: dict[str, Any] = {
        # a tool's own error content (an upstream's isError result) is passed on as it was
        "content": outcome.content or [{"type": "text", "text": f"{outcome.code.value}: {outcome.message}"}],
        "isError": not (pending and not output_schema_listed),
        "_meta": meta,
    }
    if not output_schema_listed:
        result["structuredContent"] = details
    return types.CallToolResult.model_validate(result)


RESOURCE_NOT_FOUND = -32002
"""The MCP spec's error code for an unknown resource URI."""
_PROTOCOL_ERRORS = {
    OutcomeCode.UNKNOWN_RESOURCE: RESOURCE_NOT_FOUND,
    OutcomeCode.UNKNOWN_PROMPT: INVALID_PARAMS,
    OutcomeCode.INVALID_ARGUMENTS: INVALID_PARAMS,
}


def _or_raise(outcome: Outcome, result: R | None) -> R:
    """Resource, prompt and completion refusals are protocol errors (these results have no isError)."""
    if outcome.ok and result is not None:
        return result
    details = {
        **outcome.data,
        "code": outcome.code.value,
        "message": outcome.message,
        "stage": outcome.stage,
        "audit_id": outcome.audit_id,
    }
    raise MCPError(
        _PROTOCOL_ERRORS.get(outcome.code, INTERNAL_ERROR), f"{outcome.code.value}: {outcome.message}", details
    )


CONSENT_KEY = "portcullis/consent"


def _consent_answer(params: types.CallToolRequestParams, binding: str) -> bool | None:
    """The user's answer carried by a retried call, if it answers the question for exactly this call."""
    responses = params.input_responses or {}
    answer = responses.get(CONSENT_KEY)
    if not isinstance(answer, types.ElicitResult) or params.request_state != binding:
        return None
    return answer.action == "accept" and bool((answer.content or {}).get("confirm"))


def _remember_connection(connections: weakref.WeakSet[Connection], ctx: ServerRequestContext[Any]) -> None:
    """Keep a handshake-era connection that listed tools, to tell it when they change.

    `ServerSession` is per request; the connection behind it lives as long as the
    client. The SDK exposes no public accessor for it from a low-level handler.
    """
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return
    connection = getattr(ctx.session, "_connection", None)
    if isinstance(connection, Connection):
        connections.add(connection)


def _client_info(ctx: ServerRequestContext[Any]) -> tuple[str | None, str | None]:
    params = ctx.session.client_params
    if params is not None and params.client_info is not None:
        return params.client_info.name, params.client_info.version
    info = (ctx.meta or {}).get(types.CLIENT_INFO_META_KEY)
    if isinstance(info, dict):
        return info.get("name"), info.get("version")
    return None, None
