"""A plan waiting for approval reaches a real client in the documented refusal shape, on every transport
and protocol era (issue 14, item 4)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from servers import MODES, connector
from support import REPO, make_deployment

from gateway.mcp_server import AUDIT_ID_META_KEY, ERROR_META_KEY

pytestmark = pytest.mark.anyio
DEMO_PLAN = json.loads((REPO / "examples" / "plans" / "refund-and-notify.json").read_text())


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_deployment(tmp_path_factory.mktemp("pending-shape") / "deployment")


@pytest.mark.parametrize("mode", MODES)
async def test_a_pending_plan_run_has_the_refusal_shape(
    mode: str, config: Path, serve_http: Callable[[Path], str]
) -> None:
    async with connector(config, mode, serve_http)("alice") as alice:
        result = await alice.call_tool("gateway.plan_run", {"plan": DEMO_PLAN})
    assert not result.is_error, result  # waiting for a person is not a failure
    assert result.meta is not None
    details = result.meta[ERROR_META_KEY]
    assert details["code"] == "approval_required"
    assert details["stage"] == "approval"
    assert details["message"] and details["approval_id"] in details["message"]
    assert isinstance(details["audit_id"], int) and details["audit_id"] == result.meta[AUDIT_ID_META_KEY]
    assert details["status"] == "pending_approval" and details["approver_role"] == "role:manager"
    assert [block.text for block in result.content] == [f"approval_required: {details['message']}"]  # type: ignore[union-attr]
    assert result.structured_content == details
