"""The snapshot in force, and the two ways it is replaced: a reload of the files, a refresh of the sources.

A reload (`reload`, or the file watcher) validates the changed files in full and swaps
policy, guardrails, pins and configuration in one step, with a `policy.reload` record.
A refresh (an upstream's tools changed, or it restarted) rebuilds only the catalog, under
the running snapshot's guardrails and pins: it never reads a file, so an edited
`guardrails.yaml` or `tools.lock` waits for a reload, and it never raises into the
upstream that reported the change (a catalog that cannot be built leaves the running one).

Each snapshot is installed together with what is built for it (the pipelines), behind one
reference, so a call takes both at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import anyio

from gateway.audit import AuditRecord
from gateway.config import GatewayConfig, load_config
from gateway.outcomes import AuditWriteError, ConfigError
from gateway.pipeline.relay import declare_relay_capabilities
from gateway.ports import AuditSink, Listener
from gateway.snapshot import Snapshot, load_policy
from gateway.sources.pins import changed_fields
from gateway.sources.registry import SourceSet

logger = logging.getLogger(__name__)


class Installed(Protocol):
    @property
    def snapshot(self) -> Snapshot: ...


Built = TypeVar("Built", bound=Installed)
Stamps = list[tuple[float, int] | None]


class SnapshotHolder(Generic[Built]):
    """Holds the installed snapshot; `build` makes what is installed with each one (its pipelines)."""

    def __init__(
        self, first: Snapshot, sources: SourceSet, audit: AuditSink, build: Callable[[Snapshot], Built], stamps: Stamps
    ) -> None:
        self._sources = sources
        self._audit = audit
        self._build = build
        self._stamps = stamps
        self._listeners: list[Listener] = []
        self._reported: set[tuple[str, str]] = set()
        """Quarantines already recorded (tool, live hash): each is recorded once."""
        self._install(first)

    @property
    def current(self) -> Built:
        return self._current

    @property
    def snapshot(self) -> Snapshot:
        return self._current.snapshot

    def _install(self, snapshot: Snapshot) -> None:
        declare_relay_capabilities(snapshot.policy, self._sources.upstreams())  # elicit/sample rules
        self._current = self._build(snapshot)

    def on_tools_changed(self, listener: Listener) -> None:
        """Call `listener` after the catalog changed (an upstream's tools, a quarantine, a reload)."""
        self._listeners.append(listener)

    async def _tell_listeners(self) -> None:
        for listener in list(self._listeners):
            try:
                await listener()
            except Exception:  # a listener (a client session that went away) must not stop the others
                logger.exception("tools-changed listener failed")

    # --- refresh: the sources' tools changed ----------------------------------

    async def refresh(self) -> None:
        """Rebuild the catalog over the sources' current tools (start-up: a failure stops the start)."""
        snapshot = self.snapshot.rebuilt(self._sources.sources)
        self._install(snapshot)
        await self._record_quarantines(snapshot)

    async def sources_changed(self) -> None:
        """An upstream's tools changed: refresh, then tell the listeners. Never raises."""
        try:
            await self.refresh()
        except Exception as exc:  # seam: called from an upstream's task, which must outlive a bad catalog
            problems = exc.problems if isinstance(exc, ConfigError) else [f"{type(exc).__name__}: {exc}"]
            logger.error("the catalog was not rebuilt; the running one stays in force:\n  %s", "\n  ".join(problems))
            await self._record("catalog.refresh_failed", self.snapshot, None, {"problems": problems})
            return
        await self._tell_listeners()

    async def _record_quarantines(self, snapshot: Snapshot) -> None:
        for verdict, definition, source in snapshot.catalog.quarantined.values():
            key = (verdict.tool, verdict.live_hash)
            if key in self._reported:
                continue
            pin = snapshot.catalog.lock.tools.get(verdict.tool)
            record = AuditRecord(
                event="tool.quarantined",
                tool=verdict.tool,
                definition_hash=verdict.live_hash,
                outcome=str(verdict.status),
                policy_version=snapshot.policy.version,
                detail={
                    "source": source.name,
                    "pinned_hash": verdict.pinned_hash,
                    "live_hash": verdict.live_hash,
                    "changed": changed_fields(pin, definition) if pin else [],
                    "findings": list(verdict.findings),
                },
            )
            try:
                await self._audit.append(record)
            except AuditWriteError:
                logger.exception("could not record the quarantine of %s", verdict.tool)
                continue
            self._reported.add(key)

    # --- reload: the files changed ----------------------------------------------

    async def watch(self) -> None:
        """Poll the policy, lock, guardrails and config files; reload when one changes."""
        while True:
            await anyio.sleep(self.snapshot.config.policy.watch_seconds)
            if file_stamps(self.snapshot.config) != self._stamps:
                await self.reload()

    async def reload(self) -> bool:
        """Validate the changed files in full, then swap policy and config in one step.

        A change that fails validation leaves everything in force, and is logged and audited.
        Changes to tool sources (Python, HTTP, OpenAPI, upstreams) need a restart: the rest
        of such a change is applied and the record says what was not.
        """
        old = self.snapshot
        self._stamps = file_stamps(old.config)
        try:
            if old.config.file is None:
                raise ConfigError(["this gateway was not loaded from a file"])
            config = load_config(old.config.file)
            kept = _sources_of(old.config)
            pending = _sources_of(config) != kept
            if pending:
                config = config.model_copy(
                    update={"tools": config.tools.model_copy(update=kept["tools"]), "upstreams": kept["upstreams"]}
                )
            snapshot = Snapshot.build(config, load_policy(config), self._sources.sources)
        except ConfigError as exc:
            logger.error("reload refused; the running policy stays in force:\n  %s", "\n  ".join(exc.problems))
            await self._record("policy.reload_failed", old, None, {"problems": exc.problems})
            return False
        self._install(snapshot)
        logger.info("policy reloaded: version %s -> %s", old.policy.version[:12], snapshot.policy.version[:12])
        detail: dict[str, Any] = {"previous_policy_version": old.policy.version}
        if pending:
            detail["needs_restart"] = "tool sources changed; restart the gateway to apply them"
            logger.warning("tool source changes need a restart; the rest of the change is applied")
        await self._record("policy.reload", old, snapshot, detail)
        await self._record_quarantines(snapshot)
        await self._tell_listeners()
        return True

    async def _record(self, event: str, old: Snapshot, new: Snapshot | None, detail: dict[str, Any]) -> None:
        record = AuditRecord(
            event=event,
            policy_version=(new or old).policy.version,
            outcome="applied" if new else "refused",
            detail={**detail, "snapshot": (new or old).version},
        )
        try:
            await self._audit.append(record)
        except AuditWriteError:
            logger.exception("could not record the %s", event)


def watched_files(config: GatewayConfig) -> list[Path]:
    files = [config.resolve(config.policy.model), config.resolve(config.policy.rules)]
    files.append(config.resolve(config.tools.lock))
    if config.guardrails is not None:
        files.append(config.resolve(config.guardrails))
    if config.file is not None:
        files.append(config.file)
    return files


def file_stamps(config: GatewayConfig) -> Stamps:
    """Modification time and size of every watched file (None for one that is missing)."""
    stamps: Stamps = []
    for path in watched_files(config):
        try:
            stat = path.stat()
        except OSError:
            stamps.append(None)
        else:
            stamps.append((stat.st_mtime, stat.st_size))
    return stamps


def _sources_of(config: GatewayConfig) -> dict[str, Any]:
    tools = config.tools
    return {
        "tools": {"python": tools.python, "http": tools.http, "http_files": tools.http_files, "openapi": tools.openapi},
        "upstreams": config.upstreams,
    }
