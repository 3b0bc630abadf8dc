"""The package's layers, enforced: a lower layer never imports a higher one.

Every import counts, wherever it is written (module level, inside a function, under
TYPE_CHECKING), and so does the package `__init__` an import runs on its way. Besides
the order of the layers, three modules have a fixed set of importers:

- `gateway.gateway` (the wiring): only the CLI, whose commands build a gateway (the package
  `__init__` re-exports `Gateway` lazily; what it may load is checked on its own below);
- `gateway.pipeline.assembly` (how the stages are put together): only the wiring;
- `gateway.cli`: nothing but `gateway.__main__` (`python -m gateway`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gateway"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "types",
        (
            "gateway.canonical",
            "gateway.ids",
            "gateway.version",
            "gateway.outcomes",
            "gateway.tool_api",
            "gateway.tool_types",
        ),
    ),
    ("foundation", ("gateway.config", "gateway.policy", "gateway.guardrails", "gateway.audit", "gateway.store")),
    ("sources", ("gateway.sources", "gateway.catalog", "gateway.snapshot")),
    (
        "calls",
        (
            "gateway.calls",
            "gateway.ports",
            "gateway.reads",
            "gateway.approvals",
            "gateway.approvals.requests",
            "gateway.store.postgres.approvals",  # the approval store on PostgreSQL, beside approvals/sqlite_store.py
            "gateway.planner",
            "gateway.planner.plan",
            "gateway.planner.validate",
            "gateway.planner.preview",
            "gateway.planner.executor",
            "gateway.planner.runs",
        ),
    ),
    ("pipeline", ("gateway.pipeline",)),
    (
        "services",
        (
            "gateway.approvals.service",
            "gateway.approvals.worker",
            "gateway.planner.service",
            "gateway.planner.tools",
            "gateway.sources.builtin",
            "gateway.federation",
            "gateway.resources",
            "gateway.checkpointer",
            "gateway.snapshot_holder",
        ),
    ),
    # Choosing the stores' backend names every implementation: wiring, like assembling the pipeline.
    (
        "wiring",
        ("gateway.pipeline.assembly", "gateway.gateway", "gateway.store.stores", "gateway.store.postgres.stores"),
    ),
    ("mcp", ("gateway.mcp_server", "gateway.serving", "gateway.http_auth")),
    ("cli", ("gateway.cli", "gateway.__main__")),
]
"""Lowest first. A module belongs to the layer of the longest name here that is it or contains it."""

ONLY_IMPORTED_BY = {
    "gateway.gateway": ("gateway.cli",),
    "gateway.pipeline.assembly": ("gateway.gateway",),
    "gateway.cli": ("gateway.cli", "gateway.__main__"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = {module_name(path): path.read_text() for path in sorted(PACKAGE.rglob("*.py"))}
PACKAGES = {module_name(path) for path in PACKAGE.rglob("__init__.py")}


def layer_of(module: str) -> int:
    best, found = -1, -1
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), rank
    if found < 0:
        raise LookupError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")
    return found


def within(module: str, owner: str) -> bool:
    return module == owner or module.startswith(owner + ".")


def imports(module: str, source: str) -> Iterator[str]:
    """Every package module `source` imports, with the packages whose `__init__` that import runs."""
    package = module if module in PACKAGES else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in SOURCES else base for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            for end in range(2, len(parts) + 1):  # `gateway` itself is the façade, checked on its own
                named = ".".join(parts[:end])
                if parts[0] == "gateway" and named in SOURCES and named != module:
                    yield named


def violations(sources: dict[str, str]) -> list[str]:
    found = []
    for module, source in sources.items():
        if module == "gateway":
            continue
        for target in set(imports(module, source)):
            if layer_of(target) > layer_of(module):
                found.append(
                    f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
                )
            for owned, importers in ONLY_IMPORTED_BY.items():
                if within(target, owned) and not any(within(module, allowed) for allowed in importers):
                    found.append(f"{module} imports {target}, which only {', '.join(importers)} may import")
        if any(
            isinstance(node, ast.ImportFrom) and node.module == "gateway" and not node.level
            for node in ast.walk(ast.parse(source))
        ):
            found.append(f"{module} imports from the package façade `gateway`; import from the defining module")
    return sorted(found)


def test_every_module_is_in_a_layer() -> None:
    for module in SOURCES:
        if module != "gateway":
            layer_of(module)


def test_no_lower_layer_imports_a_higher_one_and_the_wiring_and_cli_keep_to_their_importers() -> None:
    assert violations(SOURCES) == []


def test_the_package_facade_loads_only_the_tool_authors_api() -> None:
    """`import gateway` runs for every module of the package: at run time it may load `tool_api` alone."""
    tree = ast.parse(SOURCES["gateway"])
    runtime = [
        node
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        and not (isinstance(node, ast.ImportFrom) and node.module == "__future__")
    ]
    assert [ast.unparse(node) for node in runtime] == [
        "from typing import TYPE_CHECKING, Any",
        "from gateway.tool_api import ToolContext, tool",
    ]


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        ("gateway.calls", "from gateway.pipeline.runner import Pipeline", "gateway.calls (calls) imports"),
        ("gateway.planner.service", "from gateway.gateway import Gateway", "which only gateway.cli may"),
        ("gateway.mcp_server", "if TYPE_CHECKING:\n    import gateway.gateway", "which only gateway.cli may"),
        ("gateway.serving", "from gateway.pipeline import assembly", "which only gateway.gateway may"),
        ("gateway.gateway", "from gateway.cli.options import load", "which only gateway.cli, gateway.__main__"),
        ("gateway.tool_types", "from gateway.sources.base import ToolSource", "gateway.tool_types (types) imports"),
        ("gateway.resources", "from gateway import Gateway", "imports from the package façade"),
    ],
)
def test_the_check_catches_each_kind_of_violation(module: str, line: str, expected: str) -> None:
    changed = {**SOURCES, module: SOURCES[module] + "\n" + line + "\n"}
    assert any(expected in problem for problem in violations(changed)), violations(changed)
