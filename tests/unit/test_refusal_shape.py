"""Every refusal reaches a client in one shape, whatever its code (README "What a caller sees")."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import MCPError

from gateway.mcp_server import AUDIT_ID_META_KEY, ERROR_META_KEY, _or_raise, to_call_result
from gateway.outcomes import Outcome, OutcomeCode

REFUSALS = [code for code in OutcomeCode if code is not OutcomeCode.OK]
PENDING = {
    "approval_id": "01JPENDING",
    "status": "pending_approval",
    "expires_at": "2030-01-01T00:00:00Z",
    "approver_role": "role:manager",
    "approvals_required": 1,
    "approvers": {"role": "role:manager", "required": 1},
}
"""What the approval queue puts in a pending approval's outcome."""


def refusal(code: OutcomeCode, **data: Any) -> Outcome:
    outcome = Outcome.refuse(code, f"why {code.value} happened", stage="some_stage", **data)
    return outcome.model_copy(update={"audit_id": 41})


def details_of(result: Any, code: OutcomeCode) -> dict[str, Any]:
    """The checks every refusal passes; its details."""
    assert result.meta is not None
    assert result.meta[AUDIT_ID_META_KEY] == 41
    details: dict[str, Any] = result.meta[ERROR_META_KEY]
    assert {k: details[k] for k in ("code", "message", "stage", "audit_id")} == {
        "code": code.value,
        "message": f"why {code.value} happened",
        "stage": "some_stage",
        "audit_id": 41,
    }
    assert [block.text for block in result.content] == [f"{code.value}: why {code.value} happened"]
    return details


@pytest.mark.parametrize("code", REFUSALS, ids=[code.value for code in REFUSALS])
@pytest.mark.parametrize("output_schema_listed", [False, True], ids=["no-output-schema", "output-schema"])
def test_every_refusal_has_the_documented_shape(code: OutcomeCode, output_schema_listed: bool) -> None:
    result = to_call_result(refusal(code, extra="detail"), output_schema_listed=output_schema_listed)
    details = details_of(result, code)
    assert details["extra"] == "detail"
    assert result.is_error
    # With an outputSchema listed, an error object in structuredContent would fail the client's check.
    assert result.structured_content == (None if output_schema_listed else details)


@pytest.mark.parametrize("output_schema_listed", [False, True], ids=["no-output-schema", "output-schema"])
def test_a_pending_approval_has_the_same_shape_and_is_not_an_error(output_schema_listed: bool) -> None:
    code = OutcomeCode.APPROVAL_REQUIRED
    result = to_call_result(refusal(code, **PENDING), output_schema_listed=output_schema_listed)
    details = details_of(result, code)
    assert {k: details[k] for k in PENDING} == PENDING
    if output_schema_listed:  # clients check results against the schema: only an error result can say this
        assert result.is_error and result.structured_content is None
    else:
        assert not result.is_error
        assert result.structured_content == details


def test_a_tools_own_error_content_is_passed_on_with_the_same_details() -> None:
    outcome = refusal(OutcomeCode.TOOL_FAILED).model_copy(
        update={"content": [{"type": "text", "text": "the upstream's own words"}]}
    )
    result = to_call_result(outcome)
    assert result.is_error
    assert [block.text for block in result.content] == ["the upstream's own words"]  # type: ignore[union-attr]
    assert result.meta is not None and result.meta[ERROR_META_KEY]["message"] == "why tool_failed happened"


@pytest.mark.parametrize("code", REFUSALS, ids=[code.value for code in REFUSALS])
def test_resource_and_prompt_refusals_carry_the_same_details_as_protocol_errors(code: OutcomeCode) -> None:
    with pytest.raises(MCPError) as raised:
        _or_raise(refusal(code, extra="detail"), None)
    error = raised.value.error
    assert error.message == f"{code.value}: why {code.value} happened"
    assert error.data == {
        "code": code.value,
        "message": f"why {code.value} happened",
        "stage": "some_stage",
        "audit_id": 41,
        "extra": "detail",
    }
