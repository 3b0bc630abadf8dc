"""The guardrail set of one snapshot: which detectors run on a tool's arguments and outputs, and
what their findings do.

Scanning walks every string in a JSON value and normalises each once (`text.normalise`: NFKC,
hidden characters removed, digits and separators unified), so a token split by zero-width spaces
or a card number in fullwidth digits reads as itself. Content detectors read the normalised form and
their spans are mapped back onto the original, so a redaction replaces exactly what was sent; kind
guards (URLs, paths, commands) read the exact value, because that is what the tool receives.
Each detector has a time budget;
one that raises or overruns it is a finding with the rule's `on_error` action
(block unless configured otherwise, always block for high-risk tools). A
detector's match is never copied into a message, and `masked` holds the value
with every match replaced, which is what the audit log records of a refused call.
"""

from __future__ import annotations

import importlib.util
import inspect
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio

from gateway.config import load_model
from gateway.guardrails.config import SEVERITY, GuardrailsConfig
from gateway.guardrails.detectors import BUILTIN, GROUPS, Detector, Direction, Hit, Where
from gateway.guardrails.text import Normalised, normalise
from gateway.outcomes import ConfigError
from gateway.tool_types import ToolListing as Catalog

KIND_KEYWORD = "x-portcullis-kind"
"""A vendor keyword in an input schema property naming its kind (`url`, `path`, `command`, `email`)."""


@dataclass(frozen=True)
class ToolGuard:
    """Everything the guardrails do for one tool, merged from every rule that matches it."""

    arguments: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    root: str | None = None
    labels: frozenset[str] = frozenset()
    on_error: str = "block"


@dataclass(frozen=True)
class Flagged:
    rule: str
    message: str
    path: str
    action: str


@dataclass
class ScanReport:
    findings: list[Flagged]
    value: Any
    """The value to use: redacted where a `redact` finding says so."""
    masked: Any
    """The value with every finding's match masked: what a refused call's audit record keeps."""

    @property
    def verdict(self) -> str | None:
        actions = [f.action for f in self.findings]
        return max(actions, key=SEVERITY.__getitem__) if actions else None


class Guardrails:
    def __init__(self, config: GuardrailsConfig, base: Path, root: Path, catalog: Catalog | None = None) -> None:
        self.config = config
        self.base = base
        """The guardrails file's folder: plugins are found relative to it."""
        self.root = root
        """The deployment's folder: tool roots are relative to it."""
        self.detectors: dict[str, Detector] = {**BUILTIN, **_plugins(config.plugins, base)}
        self._check_names()
        self._guards: dict[str, ToolGuard] = {}
        if catalog is not None:
            for definition in catalog.all_definitions():
                self._guards[definition.name] = self._compile(definition.name, definition.input_schema)

    @classmethod
    def load(cls, path: Path | None, root: Path, catalog: Catalog | None = None) -> Guardrails:
        if path is None:
            return cls(GuardrailsConfig(), root, root, catalog)
        return cls(load_model(path, GuardrailsConfig), path.parent, root, catalog)

    def _check_names(self) -> None:
        problems = []
        for index, rule in enumerate(self.config.rules):
            for name in [*rule.arguments, *rule.outputs]:
                if name not in self.detectors and name not in GROUPS:
                    known = ", ".join(sorted([*self.detectors, *GROUPS]))
                    problems.append(f"rules[{index}]: unknown detector {name!r} (known: {known})")
        for name in self.config.relay.sampling.detectors:
            if name not in self.detectors and name not in GROUPS:
                known = ", ".join(sorted([*self.detectors, *GROUPS]))
                problems.append(f"relay.sampling.detectors: unknown detector {name!r} (known: {known})")
        if problems:
            raise ConfigError(problems)

    def guard(self, tool: str) -> ToolGuard:
        """The catalog's tools are compiled once; other objects (resource URIs, which a caller can vary
        without end) are compiled per request, so no caller can grow this table."""
        guard = self._guards.get(tool)
        return guard if guard is not None else self._compile(tool, {})

    def _compile(self, tool: str, schema: dict[str, Any]) -> ToolGuard:
        arguments: dict[str, str] = {}
        outputs: dict[str, str] = {}
        kinds = {
            name: prop[KIND_KEYWORD]
            for name, prop in (schema.get("properties") or {}).items()
            if isinstance(prop, dict) and isinstance(prop.get(KIND_KEYWORD), str)
        }
        root: str | None = None
        labels: set[str] = set()
        on_error = self.config.on_error
        for rule in self.config.rules:
            if not rule.applies_to(tool):
                continue
            _merge(arguments, rule.arguments)
            _merge(outputs, rule.outputs)
            kinds.update(rule.kinds)
            labels.update(rule.labels)
            if rule.root is not None:
                root = str(rule.root if rule.root.is_absolute() else (self.root / rule.root).resolve())
            if rule.on_error is not None:
                on_error = rule.on_error
            if rule.high_risk:
                on_error = "block"
        return ToolGuard(arguments, outputs, kinds, root, frozenset(labels), on_error)

    async def scan(self, guard: ToolGuard, direction: Direction, value: Any) -> ScanReport:
        actions = guard.arguments if direction == "arguments" else guard.outputs
        if not actions:
            return ScanReport([], value, value)
        found: dict[tuple[Any, ...], list[tuple[Hit, str]]] = {}
        findings: list[Flagged] = []
        budget = self.config.budget_ms / 1000
        for location, text in _strings(value):
            kind = guard.kinds.get(str(location[0])) if direction == "arguments" and location else None
            where = Where(direction, _json_path(location), kind, guard.root, self.config)
            view = normalise(text)
            for name, action in actions.items():
                detector = self.detectors[name]
                if detector.kinds is not None and kind not in detector.kinds:
                    continue
                hits = await _run(detector, view if detector.kinds is None else text, where, budget)
                if isinstance(hits, str):
                    findings.append(Flagged(f"{name}.error", hits, where.path, guard.on_error))
                    continue
                if detector.kinds is None and view.changed:
                    hits = [_on_original(hit, view) for hit in hits]
                for hit in hits:
                    findings.append(Flagged(hit.rule, hit.message, where.path, action))
                    found.setdefault(location, []).append((hit, action))
        if not found:
            return ScanReport(findings, value, value)
        redacted = _rewrite(value, found, only_redact=True)
        masked = _rewrite(value, found, only_redact=False)
        return ScanReport(findings, redacted, masked)


def _on_original(hit: Hit, view: Normalised) -> Hit:
    """The hit with its span moved from the normalised text onto the original string."""
    start, end = view.span(hit.start, hit.end)
    return replace(hit, start=start, end=end)


def _merge(into: dict[str, str], actions: Mapping[str, str]) -> None:
    for name, action in actions.items():
        for member in GROUPS.get(name, (name,)):
            if member not in into or SEVERITY[action] > SEVERITY[into[member]]:
                into[member] = action


async def _run(detector: Detector, text: str, where: Where, budget: float) -> list[Hit] | str:
    """The detector's hits, or a message saying why it could not decide.

    An async detector (URL resolution, a plugin calling a service) is cancelled at its budget; a
    synchronous one cannot be interrupted, so its result is discarded when it overran.
    """
    started = time.perf_counter()
    try:
        result = detector.scan(text, where)
        if inspect.isawaitable(result):
            with anyio.fail_after(budget):
                result = await result
    except TimeoutError:
        return f"detector {detector.name} exceeded its budget of {budget * 1000:g} ms"
    except Exception as exc:  # a plugin may raise anything: the stage decides by config, never crashes
        return f"detector {detector.name} failed: {type(exc).__name__}"
    if time.perf_counter() - started > budget:
        return f"detector {detector.name} exceeded its budget of {budget * 1000:g} ms"
    return list(result)


def _strings(value: Any, location: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(value, str):
        yield location, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*location, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*location, index))


def _json_path(location: tuple[Any, ...]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in location)


def _rewrite(value: Any, found: dict[tuple[Any, ...], list[tuple[Hit, str]]], only_redact: bool) -> Any:
    def replace(text: str, hits: list[tuple[Hit, str]]) -> str:
        spans = sorted(
            (
                (h.start, len(text) if h.end is None else h.end, h.placeholder)
                for h, a in hits
                if a == "redact" or not only_redact
            ),
            reverse=True,
        )
        end_of_next = len(text) + 1
        for start, end, placeholder in spans:
            end = min(end, end_of_next)  # overlapping matches: the earlier one takes the rest
            if start < end:
                text = text[:start] + placeholder + text[end:]
            end_of_next = start
        return text

    def walk(item: Any, location: tuple[Any, ...]) -> Any:
        if isinstance(item, str):
            hits = found.get(location)
            return replace(item, hits) if hits else item
        if isinstance(item, dict):
            return {key: walk(val, (*location, key)) for key, val in item.items()}
        if isinstance(item, list):
            return [walk(val, (*location, i)) for i, val in enumerate(item)]
        return item

    return walk(value, ())


def _plugins(plugins: dict[str, str], base: Path) -> dict[str, Detector]:
    loaded: dict[str, Detector] = {}
    for name, target in plugins.items():
        file, _, attribute = target.partition(":")
        path = (base / file).resolve()
        spec = importlib.util.spec_from_file_location(f"portcullis_guardrail_{name}", path)
        if spec is None or spec.loader is None or not attribute:
            raise ConfigError([f"guardrails plugin {name}: {target!r} must be FILE.py:ATTRIBUTE"])
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
            found = getattr(module, attribute)
        except Exception as exc:
            raise ConfigError([f"guardrails plugin {name}: cannot load {target}: {type(exc).__name__}: {exc}"]) from exc
        detector = found() if inspect.isclass(found) else found
        if not isinstance(detector, Detector):
            raise ConfigError([f"guardrails plugin {name}: {target} has no name, kinds and scan()"])
        loaded[name] = detector
    return loaded
