from __future__ import annotations

import email.message
from pathlib import Path

import pytest
from support import DEMO_TOOLS

from gateway.outcomes import ToolLoadError
from gateway.snapshot import Snapshot
from gateway.sources.base import ToolContext
from gateway.sources.python import PythonToolSource

pytestmark = pytest.mark.anyio


def source_with(tmp_path: Path, code: str) -> PythonToolSource:
    folder = tmp_path / "tools"
    folder.mkdir()
    (folder / "mod.py").write_text(code)
    return PythonToolSource(folder, {"greeting": "hello"}, tmp_path)


def test_demo_tools_are_namespaced_by_module_with_honest_annotations(snapshot: Snapshot) -> None:
    names = {d.name for d in snapshot.catalog.definitions()}
    assert names >= DEMO_TOOLS
    find = snapshot.catalog.get("crm.find_customer")
    delete = snapshot.catalog.get("crm.delete_customer")
    assert find is not None and delete is not None
    assert find[0].annotations["readOnlyHint"] is True and find[0].annotations["destructiveHint"] is False
    assert delete[0].annotations["destructiveHint"] is True
    assert find[0].input_schema["required"] == ["query"]
    assert find[0].output_schema is not None and "customers" in find[0].output_schema["properties"]


def test_a_tool_module_named_email_does_not_shadow_the_standard_library(snapshot: Snapshot) -> None:
    assert snapshot.catalog.get("email.send") is not None
    assert email.message.EmailMessage is not None


async def test_schemas_come_from_type_hints_and_the_context_is_injected(tmp_path: Path) -> None:
    source = source_with(
        tmp_path,
        "from gateway import ToolContext, tool\n"
        "@tool(read_only=True)\n"
        "def greet(name: str, times: int = 1, *, ctx: ToolContext) -> list[str]:\n"
        "    '''Greet someone.'''\n"
        "    return [f\"{ctx.settings['greeting']} {name} from {ctx.subject}\"] * times\n",
    )
    (definition,) = source.list_tools()
    assert definition.name == "mod.greet"
    assert definition.description == "Greet someone."
    assert set(definition.input_schema["properties"]) == {"name", "times"}
    assert definition.output_schema == {
        "type": "object",
        "properties": {"result": {"type": "array", "items": {"type": "string"}}},
        "required": ["result"],
    }
    context = ToolContext(subject="alice", roles=(), settings={}, root=tmp_path)
    result = await source.call(definition, {"name": "Bob", "times": 2}, context)
    assert result.structured == {"result": ["hello Bob from alice", "hello Bob from alice"]}


def test_a_module_that_fails_to_import_is_a_load_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ToolLoadError) as raised:
        source_with(tmp_path, "raise ImportError('missing dependency')\n")
    assert "mod.py: cannot import tool module: ImportError: missing dependency" in raised.value.problems[0]
