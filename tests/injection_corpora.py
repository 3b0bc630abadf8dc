"""Labelled texts for the injection detector, from the corpora installed with the `test` extras.

Each corpus is split by a hash of its text: about 30% is held out and was never read while the
rules were tuned, and `agent-injection-bench` is held out whole. The held-out figures are the
honest ones; the training figures say how well the rules fit what they were written against.
Benign text comes from `bastioncorpus`'s false-positive traps and from the standard library's
own documentation (ordinary technical prose full of "ignore", "override", "call the X function").
"""

from __future__ import annotations

import inspect
import json
import zlib
from dataclasses import dataclass
from importlib import import_module, resources
from typing import Literal

Split = Literal["training", "held-out"]
SALT = b"portcullis-injection-split-1:"
HELD_OUT_PERCENT = 30
HELD_OUT_WHOLE = frozenset({"agent-injection-bench"})
DOC_MODULES = (
    "argparse", "asyncio", "contextlib", "csv", "email.message", "functools", "http.client", "json",
    "logging", "os", "pathlib", "shutil", "smtplib", "sqlite3", "subprocess", "tarfile", "unittest",
    "urllib.request", "zipfile",
)  # fmt: skip


@dataclass(frozen=True)
class Sample:
    corpus: str
    text: str
    malicious: bool

    @property
    def split(self) -> Split:
        if self.corpus in HELD_OUT_WHOLE:
            return "held-out"
        return "held-out" if zlib.crc32(SALT + self.text.encode()) % 100 < HELD_OUT_PERCENT else "training"


def samples() -> list[Sample]:
    """Every labelled text of every installed corpus."""
    return [*_bastion(), *_jailbreak_mini(), *_nullsec(), *_agent_injection_bench(), *_stdlib_docs()]


def _bastion() -> list[Sample]:
    text = resources.files("bastioncorpus").joinpath("corpus/injections.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [Sample("bastioncorpus", row["text"], row["label"] == "malicious") for row in rows]


def _jailbreak_mini() -> list[Sample]:
    from jailbreak_corpus_mini import load_corpus

    return [Sample("jailbreak-corpus-mini", fixture.prompt, True) for fixture in load_corpus()]


def _nullsec() -> list[Sample]:
    from nullsec_promptinject.payloads import PAYLOADS

    return [Sample("nullsec-promptinject", payload.text, True) for payload in PAYLOADS]


def _agent_injection_bench() -> list[Sample]:
    text = resources.files("aib").joinpath("data/attacks.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [Sample("agent-injection-bench", row["injected"], True) for row in rows]


def _stdlib_docs() -> list[Sample]:
    """Paragraph groups of 200 to 2,000 characters from the docstrings of common standard library modules."""
    seen: set[str] = set()
    found = []
    for name in DOC_MODULES:
        module = import_module(name)
        for _, member in sorted(vars(module).items()):
            doc = inspect.getdoc(member) if callable(member) or inspect.ismodule(member) else None
            if not doc or doc in seen or len(doc) < 200:
                continue
            seen.add(doc)
            found.append(Sample("python-docstrings", doc[:2000], False))
    return found
