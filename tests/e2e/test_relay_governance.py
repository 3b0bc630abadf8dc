"""An upstream's elicitation and sampling requests are governed like calls (issue 12, item 1).

A malicious upstream (`tests/upstreams/asker.py`) asks the user for a cloud credential, sends
the user to a page of its choosing, asks the model for 100,000 tokens and samples ten times in
one call. Real clients over stdio and Streamable HTTP (handshake era: the only one in which the
gateway relays server-to-client requests) must see only what policy and guardrails let through,
and every relayed request must be in the audit log.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import types
from servers import Servers, connector, real
from support import UPSTREAMS, make_deployment, set_guardrails

from gateway import Gateway
from gateway.config import load_config
from gateway.pipeline import Caller

pytestmark = pytest.mark.anyio
RELAY_MODES = ["memory-legacy", *real("http-legacy")]
"""The handshake era (the only one with server-to-client requests), in-process and over HTTP; the relay over
stdio is in test_proxy_e2e.py."""
CALL_ONLY = "p, role:support, asker.*, call, allow\n"
RELAY_ALLOWED = CALL_ONLY + "p, role:support, asker.*, elicit, allow\np, role:support, asker.*, sample, allow\n"
SECRET_ANSWER = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY"


def asker_deployment(root: Path, policy: str) -> Path:
    upstream = {"namespace": "asker", "stdio": {"command": sys.executable, "args": [str(UPSTREAMS / "asker.py")]}}
    return make_deployment(
        root / "deployment",
        extra_policy=policy,
        changes={"upstreams": [upstream], "tools": {"new_tools": "allow"}},
    )


@pytest.fixture(scope="module")
def denied_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return asker_deployment(tmp_path_factory.mktemp("relay-denied"), CALL_ONLY)


@pytest.fixture(scope="module")
def allowed_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return asker_deployment(tmp_path_factory.mktemp("relay-allowed"), RELAY_ALLOWED)


@pytest.fixture(scope="module")
def lenient_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Relaying allowed, and the operator turned off the sensitive-field check."""
    config = asker_deployment(tmp_path_factory.mktemp("relay-lenient"), RELAY_ALLOWED)
    set_guardrails(config.parent, relay={"elicitation": {"block_sensitive_fields": False}})
    return config


class FakeUser:
    """The calling client's user and model: answers everything, remembers what it was asked."""

    def __init__(self, answer: dict[str, Any] | None = None) -> None:
        self.forms: list[str] = []
        self.samples: list[int] = []
        self._answer = answer or {"color": "blue"}

    async def elicit(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.forms.append(params.message)
        return types.ElicitResult(action="accept", content=self._answer)

    async def sample(self, context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        self.samples.append(params.max_tokens)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="hi"), model="test-model"
        )


def text(result: types.CallToolResult) -> str:
    assert not result.is_error, result
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


def relay_records(config: Path, result: types.CallToolResult) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The call's `tool.call` record (by the audit id in the result) and the relay records of that call."""
    assert result.meta is not None
    with sqlite3.connect(config.parent / "audit" / "audit.db") as db:
        (body,) = db.execute(
            "SELECT body FROM audit_log WHERE seq = ?", (result.meta["portcullis/audit_id"],)
        ).fetchone()
        call = json.loads(body)
        rows = db.execute(
            "SELECT body FROM audit_log WHERE call_id = ? AND event LIKE 'relay.%' ORDER BY seq", (call["call_id"],)
        ).fetchall()
    return call, [json.loads(row) for (row,) in rows]


@pytest.mark.parametrize("mode", RELAY_MODES)
async def test_without_a_policy_rule_the_user_and_model_are_never_asked(
    mode: str, denied_config: Path, servers: Servers
) -> None:
    user = FakeUser()
    connect = connector(denied_config, mode, servers, elicitation_callback=user.elicit, sampling_callback=user.sample)
    async with connect("alice") as client:
        told = await client.call_tool("asker.declared", {})
        asked = await client.call_tool("asker.harmless_form", {})
        sampled = await client.call_tool("asker.big_sample", {})
        listed = {tool.name for tool in (await client.list_tools()).tools}
    assert user.forms == [] and user.samples == []
    # The upstream is not even told the gateway could relay: its sampling-only tool does not exist.
    assert told.structured_content == {"elicitation": False, "sampling": False}
    assert "asker.summarize" not in listed
    assert text(asked).startswith("refused:") and text(sampled).startswith("refused:")


@pytest.mark.parametrize("mode", RELAY_MODES)
async def test_policy_lets_a_harmless_form_through_but_never_a_credential_form(
    mode: str, allowed_config: Path, servers: Servers
) -> None:
    user = FakeUser()
    connect = connector(allowed_config, mode, servers, elicitation_callback=user.elicit, sampling_callback=user.sample)
    async with connect("alice") as client:
        harmless = await client.call_tool("asker.harmless_form", {})
        credential = await client.call_tool("asker.credential_form", {})
        url = await client.call_tool("asker.url_login", {})
    assert user.forms == ["Which color do you like?"]
    assert text(harmless) == "accept:blue"
    assert text(credential) == "refused:guardrail_blocked"
    assert text(url) == "refused:guardrail_blocked"

    call, records = relay_records(allowed_config, harmless)
    assert call["tool"] == "asker.harmless_form" and call["subject"] == "alice"
    [record] = records
    assert record["event"] == "relay.elicit" and record["tool"] == "asker.harmless_form"
    assert record["detail"]["upstream"] == "asker" and record["decision"] == "allow"
    assert record["outcome"] == "relayed" and record["detail"]["answers"] == {"color": "blue"}
    _, [blocked] = relay_records(allowed_config, credential)
    assert blocked["outcome"] == "guardrail_blocked" and blocked["decision"] == "allow"
    assert blocked["findings"][0]["rule"] == "relay.sensitive_elicitation"


@pytest.mark.parametrize("mode", RELAY_MODES)
async def test_sampling_is_capped_in_size_and_in_number_per_call(
    mode: str, allowed_config: Path, servers: Servers
) -> None:
    user = FakeUser()
    connect = connector(allowed_config, mode, servers, elicitation_callback=user.elicit, sampling_callback=user.sample)
    async with connect("alice") as client:
        big = await client.call_tool("asker.big_sample", {})
        many = await client.call_tool("asker.many_samples", {})
    assert text(big) == "refused:arguments_too_large"
    assert text(many) == "answered:3 refused:rate_limited"
    assert user.samples == [10, 10, 10]  # the 100,000-token request never reached the model

    _, [too_big] = relay_records(allowed_config, big)
    assert too_big["event"] == "relay.sample" and too_big["outcome"] == "arguments_too_large"
    assert too_big["detail"]["max_tokens"] == 100_000
    call, records = relay_records(allowed_config, many)
    assert [r["outcome"] for r in records] == ["relayed", "relayed", "relayed", "rate_limited"]
    assert {r["call_id"] for r in records} == {call["call_id"]}


@pytest.mark.parametrize("mode", RELAY_MODES)
async def test_a_client_without_sampling_is_not_shown_a_tool_that_needs_it(
    mode: str, allowed_config: Path, servers: Servers
) -> None:
    user = FakeUser()
    async with connector(allowed_config, mode, servers, elicitation_callback=user.elicit)("alice") as client:
        without = {tool.name for tool in (await client.list_tools()).tools}
    async with connector(allowed_config, mode, servers, sampling_callback=user.sample)("alice") as client:
        with_sampling = {tool.name for tool in (await client.list_tools()).tools}
        summary = await client.call_tool("asker.summarize", {})
    assert "asker.harmless_form" in without and "asker.summarize" not in without
    assert "asker.summarize" in with_sampling
    assert text(summary) == "model said: hi"


@pytest.mark.parametrize("mode", RELAY_MODES)
async def test_the_users_secret_answer_is_audited_only_as_a_salted_hash(
    mode: str, lenient_config: Path, servers: Servers
) -> None:
    user = FakeUser(answer={"secret_access_key": SECRET_ANSWER})
    connect = connector(lenient_config, mode, servers, elicitation_callback=user.elicit)
    async with connect("alice") as client:
        result = await client.call_tool("asker.credential_form", {})
    assert text(result) == f"accept:{SECRET_ANSWER}"  # the operator allowed it: the form reached the user
    _, [record] = relay_records(lenient_config, result)
    assert record["outcome"] == "relayed"
    assert record["detail"]["answers"]["secret_access_key"].startswith("hmac-sha256:")
    with sqlite3.connect(lenient_config.parent / "audit" / "audit.db") as db:
        stored = "\n".join(body for (body,) in db.execute("SELECT body FROM audit_log WHERE event LIKE 'relay.%'"))
    assert SECRET_ANSWER not in stored


@pytest.mark.slow
async def test_a_policy_change_that_allows_elicitation_reconnects_the_upstream_to_say_so(tmp_path: Path) -> None:
    alice = Caller(subject="alice", auth="test", transport="test")
    config = asker_deployment(tmp_path, CALL_ONLY)
    async with Gateway(load_config(config)) as gateway:
        before = await gateway.call_tool(alice, "asker.declared", {})
        with (config.parent / "policies" / "policy.csv").open("a") as policy:
            policy.write("p, role:support, asker.*, elicit, allow\n")
        assert await gateway.reload()
        told = {"elicitation": True, "sampling": False}
        with anyio.fail_after(20):  # the reconnection runs in the background
            while (await gateway.call_tool(alice, "asker.declared", {})).structured != told:
                await anyio.sleep(0.05)
    assert before.structured == {"elicitation": False, "sampling": False}
