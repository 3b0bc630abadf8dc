"""The injection detector on a public labelled corpus: few false alarms on benign text, most attacks found.

The floors sit just under what `benchmarks/guardrails.py` measures, so a change that makes the
detector noisier or blinder fails here.
"""

from __future__ import annotations

import json
from importlib import resources

from gateway.guardrails.config import GuardrailsConfig
from gateway.guardrails.detectors import BUILTIN, Where


def test_precision_and_recall_on_bastioncorpus() -> None:
    text = resources.files("bastioncorpus").joinpath("corpus/injections.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    where = Where(direction="outputs", path="$", settings=GuardrailsConfig())
    found = [bool(BUILTIN["injection"].scan(row["text"], where)) for row in rows]
    malicious = [row["label"] == "malicious" for row in rows]
    true_positives = sum(f and m for f, m in zip(found, malicious, strict=True))
    false_positives = sum(f and not m for f, m in zip(found, malicious, strict=True))
    assert sum(not m for m in malicious) >= 50  # the corpus has its benign look-alikes
    assert false_positives == 0
    assert true_positives / sum(malicious) >= 0.9
