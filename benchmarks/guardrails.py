"""Guardrails: how well the injection detector separates attacks from benign text, and what each
detector and each guardrail stage costs per call, in one run.

Detection is measured on `bastioncorpus` (a public labelled prompt-injection corpus shipped on the
package index: malicious payloads and benign false-positive traps, in five languages). The rules
were written with that corpus in view, so its figures are in-sample; `jailbreak-corpus-mini-py`
(attacks only, never used for tuning) gives an out-of-sample recall.

Costs: the median and p99 of one detector on a typical email body (300 characters) and a tool result
(2 KB of prose), and of the input and output guardrail stages as the demo configures them, against
the same stages with no detectors configured (the baseline, measured interleaved).

    python benchmarks/guardrails.py [--samples 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

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


def corpus_rows() -> list[dict[str, Any]]:
    text = resources.files("bastioncorpus").joinpath("corpus/injections.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def detection() -> None:
    detector = Injection()
    where = Where(direction="outputs", path="$", settings=GuardrailsConfig())
    rows = corpus_rows()
    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    missed: dict[str, int] = {}
    for row in rows:
        found = bool(detector.scan(row["text"], where))
        malicious = row["label"] == "malicious"
        key = ("tp" if found else "fn") if malicious else ("fp" if found else "tn")
        counts[key] += 1
        if key == "fn":
            missed[row["category"]] = missed.get(row["category"], 0) + 1
    precision = counts["tp"] / max(1, counts["tp"] + counts["fp"])
    recall = counts["tp"] / max(1, counts["tp"] + counts["fn"])
    print(f"injection detector on bastioncorpus ({len(rows)} rows, in-sample):")
    print(f"  precision {precision:.3f}  recall {recall:.3f}  {counts}")
    print(f"  missed by category: {dict(sorted(missed.items()))}")
    try:
        from jailbreak_corpus_mini import load_corpus
    except ImportError:
        print("  (jailbreak-corpus-mini-py not installed: no out-of-sample figure)")
        return
    fixtures = load_corpus()
    caught = sum(bool(detector.scan(f.text, where)) for f in fixtures)
    print(f"injection detector on jailbreak-corpus-mini ({len(fixtures)} attacks, out-of-sample):")
    print(f"  recall {caught / len(fixtures):.3f} ({caught}/{len(fixtures)})")


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
