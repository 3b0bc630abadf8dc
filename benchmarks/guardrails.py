"""Guardrails: how well the injection detector separates attacks from benign text, and what each
detector and each guardrail stage costs per call, in one run.

Detection is measured on the labelled corpora installed with the `test` extras (`bastioncorpus`,
`jailbreak-corpus-mini-py`, `nullsec-promptinject`, `agent-injection-bench`) plus the standard
library's docstrings as benign technical prose, loaded by `tests/injection_corpora.py`. Each corpus
is split by a hash of the text: the training split is what the rules were tuned on; the held-out
split (30% of each corpus, and all of `agent-injection-bench`) was never read while tuning, so its
figures are the honest ones.

Costs: the median and p99 of one detector on a typical email body (300 characters) and a tool result
(2 KB of prose), and of the input and output guardrail stages as the demo configures them, against
the same stages with no detectors configured (the baseline, measured interleaved).

    python benchmarks/guardrails.py [--samples 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from gateway.guardrails import Guardrails, GuardrailsConfig
from gateway.guardrails.config import ToolRule
from gateway.guardrails.detectors import BUILTIN, Where
from gateway.guardrails.detectors.injection import Injection

EMAIL_BODY = (
    "Hello Jane, thanks for getting back to us about order 8823. The replacement dock ships from our Lyon "
    "warehouse on Monday and should reach you within three business days. If anything is missing, reply "
    "to this message or call the support line. Kind regards, Alice from Acme support (ticket T-1042)."
)
RESULT_TEXT = (
    "Article KB-7: Refund policy. Digital products can be refunded within 14 days of purchase when the "
    "licence key has not been activated. Physical goods follow the 30-day return window; the customer pays "
    "return shipping unless the item arrived damaged. Refunds are issued to the original payment method and "
    "take five to ten business days to appear. Escalate disputes above 500 EUR to a finance manager. "
) * 4


def detection() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from injection_corpora import samples

    detector = Injection()
    where = Where(direction="outputs", path="$", settings=GuardrailsConfig())
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for sample in samples():
        hits = detector.scan(sample.text, where)
        found = bool(hits)
        key = ("tp" if found else "fn") if sample.malicious else ("fp" if found else "tn")
        for group in ((sample.corpus, sample.split), ("all corpora", sample.split)):
            row = counts.setdefault(group, {"tp": 0, "fp": 0, "fn": 0, "tn": 0})
            row[key] += 1
    print("injection detector, precision and recall per corpus and split (held-out = never read while tuning):")
    print(f"  {'corpus':<24} {'split':<9} {'precision':>9} {'recall':>7}   counts")
    for (corpus, split), c in sorted(counts.items(), key=lambda item: (item[0][0] == "all corpora", item[0])):
        precision = c["tp"] / max(1, c["tp"] + c["fp"]) if c["tp"] + c["fp"] else float("nan")
        recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else float("nan")
        print(f"  {corpus:<24} {split:<9} {precision:>9.3f} {recall:>7.3f}   {c}")


def stats(values: list[float]) -> tuple[float, float]:
    values.sort()
    return statistics.median(values) * 1e6, values[max(0, int(len(values) * 0.99) - 1)] * 1e6


def detector_costs(samples: int) -> None:
    print(f"\nper detector, one string (microseconds; {samples} samples):")
    print(f"  {'detector':<13} {'email 300 B median':>18} {'p99':>7}   {'result 2 KB median':>18} {'p99':>7}")
    where = Where(direction="arguments", path="$.body", settings=GuardrailsConfig())
    for name, detector in BUILTIN.items():
        if detector.kinds is not None:
            continue  # kind guards look at one short value (a URL, a path), not prose
        row = []
        for text in (EMAIL_BODY, RESULT_TEXT):
            values = []
            for _ in range(samples):
                started = time.perf_counter()
                detector.scan(text, where)
                values.append(time.perf_counter() - started)
            row.append(stats(values))
        print(f"  {name:<13} {row[0][0]:>18.1f} {row[0][1]:>7.1f}   {row[1][0]:>18.1f} {row[1][1]:>7.1f}")


async def stage_costs(samples: int) -> None:
    root = Path(tempfile.mkdtemp())
    demo = GuardrailsConfig(
        rules=(
            ToolRule(
                tools=("email.send",),
                arguments={"secrets": "block", "cards": "block", "ibans": "block", "national_ids": "block"},
            ),
            ToolRule(tools=("kb.*",), outputs={"injection": "annotate", "markup": "redact", "secrets": "redact"}),
        )
    )
    guarded, bare = Guardrails(demo, root, root), Guardrails(GuardrailsConfig(), root, root)
    arguments = {"to": "jane@example.org", "subject": "Your replacement dock", "body": EMAIL_BODY}
    output = {"content": [RESULT_TEXT], "structured": None}
    cases: list[tuple[str, Callable[[Guardrails], Awaitable[object]]]] = [
        ("email.send arguments", lambda g: g.scan(g.guard("email.send"), "arguments", arguments)),
        ("kb result (2 KB)", lambda g: g.scan(g.guard("kb.search"), "outputs", output)),
    ]
    print(f"\nguardrail scan per call as the demo configures it, vs no detectors (ms; {samples} samples, interleaved):")
    for label, run in cases:
        timed: dict[str, list[float]] = {"guarded": [], "bare": []}
        for _ in range(samples):
            for key, guardrails in (("guarded", guarded), ("bare", bare)):
                started = time.perf_counter()
                await run(guardrails)
                timed[key].append(time.perf_counter() - started)
        g_median, g_p99 = stats(timed["guarded"])
        b_median, _ = stats(timed["bare"])
        print(
            f"  {label:<22} median {g_median / 1000:.3f} ms  p99 {g_p99 / 1000:.3f} ms"
            f"  (no detectors: {b_median / 1000:.4f} ms; adds {(g_median - b_median) / 1000:.3f} ms)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    detection()
    detector_costs(args.samples)
    asyncio.run(stage_costs(args.samples))


if __name__ == "__main__":
    main()
