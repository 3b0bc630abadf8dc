"""The flow-label store's contract: what a session read is kept with the calls that read it, and kept bounded."""

from __future__ import annotations

import anyio
import pytest
from contract_support import FlowLabelsFactory

pytestmark = pytest.mark.anyio
PRIVATE, UNTRUSTED = "private_data", "untrusted_content"


async def test_a_session_s_reads_are_found_only_when_it_has_every_label_asked_for(
    flow_labels: FlowLabelsFactory,
) -> None:
    labels = flow_labels(100, 20)
    await labels.record("s1", frozenset({PRIVATE}), "call-1")
    assert await labels.reads("s1", (PRIVATE, UNTRUSTED)) is None
    await labels.record("s1", frozenset({UNTRUSTED}), "call-2")
    assert await labels.reads("s1", (PRIVATE, UNTRUSTED)) == ["call-1", "call-2"]
    assert await labels.reads("s1", (PRIVATE,)) == ["call-1"]
    assert await labels.reads("s2", (PRIVATE,)) is None  # another session read nothing


async def test_one_call_can_give_several_labels(flow_labels: FlowLabelsFactory) -> None:
    labels = flow_labels(100, 20)
    await labels.record("s1", frozenset({PRIVATE, UNTRUSTED}), "call-1")
    assert await labels.reads("s1", (PRIVATE, UNTRUSTED)) == ["call-1", "call-1"]


async def test_only_the_latest_links_of_a_label_are_kept(flow_labels: FlowLabelsFactory) -> None:
    labels = flow_labels(100, 3)
    for i in range(5):
        await labels.record("s1", frozenset({PRIVATE}), f"call-{i}")
    assert await labels.reads("s1", (PRIVATE,)) == ["call-2", "call-3", "call-4"]


async def test_the_store_keeps_a_bounded_number_of_sessions_and_the_most_recent_ones(
    flow_labels: FlowLabelsFactory,
) -> None:
    labels = flow_labels(2, 20)
    for session in ("s1", "s2", "s3"):
        await labels.record(session, frozenset({PRIVATE}), f"{session}-call")
    assert await labels.reads("s1", (PRIVATE,)) is None
    assert await labels.reads("s2", (PRIVATE,)) == ["s2-call"]
    assert await labels.reads("s3", (PRIVATE,)) == ["s3-call"]


async def test_concurrent_records_for_one_session_are_all_kept(flow_labels: FlowLabelsFactory) -> None:
    labels = flow_labels(100, 50)

    async def read(i: int) -> None:
        await labels.record("s1", frozenset({PRIVATE if i % 2 else UNTRUSTED}), f"call-{i}")

    async with anyio.create_task_group() as tasks:
        for i in range(40):
            tasks.start_soon(read, i)
    found = await labels.reads("s1", (PRIVATE, UNTRUSTED))
    assert found is not None and sorted(found) == sorted(f"call-{i}" for i in range(40))
