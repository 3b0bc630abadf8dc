"""Prompt injection in tool results: text that addresses the model and tries to steer it.

A weighted set of signal families (override earlier instructions, claim a new
persona without limits, extract the system prompt, forge a system or assistant
turn, direct a tool call or a data transfer, plant text in the reply or in
memory, disable safety rules), in English, German, French, Spanish and Italian.
A result is a finding when its strongest form scores 1.0 or more. Every string
is also scanned in its decoded forms (hidden Unicode tags, URL, unicode
escapes, base64, base32, hex, binary, spaced letters, leetspeak, reversed,
rot13), so encoding an instruction does not hide it. Precision and recall on a
public labelled corpus are measured by `benchmarks/guardrails.py`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gateway.guardrails.detectors.base import Hit, Where
from gateway.guardrails.text import hidden_characters, variants

_I = re.IGNORECASE
_INSTRUCTIONS = (
    r"(?:instructions?|instruction sets?|rules|guidelines|directives?|prompts?|system prompt|content policy|"
    r"safety (?:rules|guidelines|protocols)|restrictions|programming)"
)
SIGNALS: tuple[tuple[str, float, re.Pattern[str]], ...] = (
    (
        "override",
        1.0,
        re.compile(
            r"\b(?:ignore|disregard|forget|skip|bypass|override)\b[\w\s,'-]{0,40}?\b" + _INSTRUCTIONS + r"\b"
            r"|\b(?:disregard|ignore|forget)\s+(?:everything|all)\s+(?:above|before|prior|you were told|we discussed)"
            r"|\bignor(?:a|e|ez|iere|ieren)\b.{0,40}\b(?:istruzioni|instrucciones|instructions|anweisungen|richtlinien|regeln)\b"
            r"|\b(?:dimentica|olvida|oubliez?|vergiss)\b.{0,30}\b(?:istruzioni|instrucciones|instructions|alles|regeln)\b",
            _I,
        ),
    ),
    (
        "unrestricted",
        1.0,
        re.compile(
            r"\b(?:developer|god|jailbreak|unrestricted|unfiltered|dan) mode\b|\bdo anything now\b|\bDAN\b"
            r"|\b(?:uncensored|unrestricted|unfiltered)\s+(?:model|assistant|ai|mode|response|answer)"
            r"|\b(?:no|without|any)\s+(?:content\s+)?(?:restrictions|limits|filters?|content polic(?:y|ies)|rules|safety (?:rules|limits|guidelines))\b"
            r"|\bsin restricciones\b|\bsenza restrizioni\b|\bsans restrictions\b|\buneingeschr[aä]nkt\b"
            r"|\bohne einschr[aä]nkungen\b|\bkeine (?:regeln|richtlinien)\b|\bmodo desarrollador\b",
            _I,
        ),
    ),
    (
        "prompt_extraction",
        1.0,
        re.compile(
            r"\b(?:reveal|print|show|output|repeat|tell me|dump|leak|give me|verrate|r[ée]v[eè]le|revela|rivela|zeige|muestra|mostra)\b"
            r".{0,40}(?:system[ -]?prompt|system message|initial instructions|hidden (?:prompt|message)|"
            r"instructions you were given|operating instructions|system ?instructions|systemanweisungen|"
            r"instructions syst[eè]me|instrucciones del sistema|istruzioni di sistema|prompt (?:di|del) sistema|"
            r"prompt syst[eè]me|words above|context window)"
            r"|\b(?:word for word|verbatim|wortw[oö]rtlich|mot pour mot|palabra por palabra|parola per parola)\b",
            _I,
        ),
    ),
    (
        "forged_turn",
        1.0,
        re.compile(
            r"(?:^|\n)\s*(?:\[?system\]?|assistant|developer)\s*:|\[SYSTEM\]|<\|im_start\|>|<\|im_end\|>|</?system>"
            r"|<thinking>|#{2,}\s*end of (?:user )?(?:input|document|prompt)|-{3,}\s*end of document"
            r"|\bSYSTEM (?:NOTE|UPDATE|MESSAGE|OVERRIDE)\b|\bSYSTEMHINWEIS\b|\bnote syst[eè]me\b|\bnota (?:del|di) sistema\b"
            r"|\breasoning(?: trace)? \(assistant\)",
            re.IGNORECASE | re.MULTILINE,
        ),
    ),
    (
        "addresses_model",
        0.6,
        re.compile(
            r"\b(?:note|notice|message|attention|important|instructions?)\s+(?:to|for)\s+(?:the\s+|any\s+|all\s+)?"
            r"(?:ai|bot|assistant|llm|model|agent)s?\b|\b(?:ai|llm) (?:assistant|agent|system|model)s? (?:reading|processing|reviewing|integrating)"
            r"|\bif you are an? (?:ai|llm|language model|assistant)\b|\bfor ai (?:coding )?agents\b|\bas the assistant\b"
            r"|\b(?:come|als|en tant qu'|como) (?:assistente|assistent|assistant|asistente)\b",
            _I,
        ),
    ),
    (
        "tool_directive",
        0.7,
        re.compile(r"\b(?:call|use|invoke|run|execute)\s+`?[a-z]+_[a-z_]+`?\b", _I),
    ),
    (
        "transfer",
        0.6,
        re.compile(
            r"\b(?:send|email|e-mail|forward|post|upload|transmit|envoie|env[ií]a|invia|sende)\b.{0,80}?"
            r"(?:\bto\b|\ba\b|\ban\b).{0,40}?(?:[\w.+-]+@[\w-]+\.[\w.]+|https?://|externally|extern)",
            _I,
        ),
    ),
    (
        "sensitive_data",
        0.4,
        re.compile(
            r"\b(?:customer (?:list|data(?:base)?|emails)|credentials|api keys|passwords?|environment variables|"
            r"internal (?:data|configuration)|order data|admin (?:password|access|pages)|confidential data|donnees clients|interne daten)\b",
            _I,
        ),
    ),
    (
        "imperative",
        0.5,
        re.compile(
            r"\byou (?:must|are hereby instructed|should first|are now|now answer|now allow)\b|\bnew (?:instructions?|directive)\b"
            r"|\byour (?:real|new|true) (?:task|directive|instructions?|purpose)\b|\bfrom now on\b|\bfrom this point\b"
            r"|\bsupersedes?\b|\bfor the (?:rest|remainder) of\b|\b(?:before|instead of) (?:you )?(?:answer|respond|repl)"
            r"|\bab (?:jetzt|sofort)\b|\bd[ée]sormais\b|\bahora eres\b|\bora sei\b|\bdu bist jetzt\b|\bwithout (?:asking|question)",
            _I,
        ),
    ),
    (
        "plant_output",
        1.0,
        re.compile(
            r"\b(?:append|include|add|print|repeat)\b.{0,80}?\b(?:to|in|at)\s+(?:the (?:end|start|bottom|top) of\s+)?"
            r"(?:your|every|each|any|the|all)\s+(?:future\s+)?(?:reply|replies|response|responses|summary|summaries|answer|review|report|output)s?\b"
            r"|\b(?:angeh[aä]ngt|ajout[ée]|a[nñ]adirse|aggiunto)\b",
            _I,
        ),
    ),
    (
        "persistence",
        0.6,
        re.compile(
            r"\b(?:save|store|persist|remember)\b.{0,60}\b(?:memory|all future|every future|across (?:turns|sessions)|persists?)\b"
            r"|\bnote to self\b",
            _I,
        ),
    ),
    (
        "safety_off",
        1.0,
        re.compile(
            r"\b(?:safety|security|content) (?:protocols?|checks|rules|guidelines|polic(?:y|ies)|filters?)\b.{0,30}"
            r"\b(?:disabled|off|do not apply|don't apply|not apply|not meant|were not meant|are compromised|no longer apply)\b"
            r"|\b(?:skip|disable|bypass|disregard)\b.{0,20}\b(?:safety|security|content|confidentiality)\s+(?:checks|polic(?:y|ies)|rules|filters?)\b"
            r"|\bexempt from\b.{0,30}\brestrictions\b|\bmessages .{0,30}are compromised\b"
            r"|\b(?:linee guida di sicurezza|sicherheitsrichtlinien|r[eè]gles de s[ée]curit[ée]|reglas de seguridad)\b.{0,40}"
            r"\b(?:non valgono|nicht gelten|ne s'appliquent pas|no aplican)\b",
            _I,
        ),
    ),
    (
        "decode_and_obey",
        1.0,
        re.compile(
            r"\b(?:decode|translate|convert)\b.{0,60}\b(?:and|then)\b.{0,20}\b(?:do|follow|execute|obey|act on)\b"
            r"|\bdo (?:exactly )?what it says\b|\bfollow the instructions? inside\b",
            _I,
        ),
    ),
)
ANCHORS: dict[str, tuple[str, ...]] = {
    "override": (
        "ignor",
        "disregard",
        "forget",
        "skip",
        "bypass",
        "override",
        "dimentica",
        "olvida",
        "oubli",
        "vergiss",
    ),
    "unrestricted": (
        "mode",
        "anything now",
        "dan",
        "uncensored",
        "unrestricted",
        "unfiltered",
        "restriction",
        "limit",
        "filter",
        "polic",
        "rules",
        "safety",
        "restriccion",
        "restrizion",
        "uneingeschr",
        "einschr",
        "keine",
    ),
    "prompt_extraction": (
        "prompt",
        "system",
        "instruction",
        "hidden",
        "above",
        "context window",
        "verbatim",
        "word for word",
        "wortw",
        "mot pour mot",
        "palabra por",
        "parola per",
        "anweisung",
        "istruzion",
        "instruccion",
    ),
    "forged_turn": ("system", "assistant", "developer", "<|", "<thinking", "end of", "sistema", "reasoning"),
    "addresses_model": ("ai", "bot", "assistant", "llm", "model", "agent", "assistent", "asistente"),
    "tool_directive": ("_",),
    "transfer": ("@", "http", "extern"),
    "sensitive_data": (
        "customer",
        "credential",
        "api key",
        "password",
        "environment variable",
        "internal",
        "order data",
        "admin",
        "confidential",
        "donnees",
        "daten",
    ),
    "imperative": (
        "you ",
        "new ",
        "your ",
        "from now",
        "from this",
        "supersede",
        "for the re",
        "before",
        "instead",
        "ab jetzt",
        "ab sofort",
        "sormais",
        "ahora eres",
        "ora sei",
        "du bist",
        "without",
    ),
    "plant_output": ("append", "include", "add", "print", "repeat", "angeh", "ajout", "adirse", "aggiunto"),
    "persistence": ("save", "store", "persist", "remember", "note to self"),
    "safety_off": (
        "safety",
        "security",
        "content",
        "exempt",
        "compromised",
        "sicherheit",
        "curit",
        "seguridad",
        "sicurezza",
    ),
    "decode_and_obey": ("decode", "translate", "convert", "what it says", "instruction"),
}
"""Substrings (lower case) one of which a family's pattern needs: a cheap gate before the regex."""
THRESHOLD = 1.0
HIDDEN_THRESHOLD = 2
"""Two or more invisible or tag characters: one zero-width space is a copy-and-paste accident, more is a message."""


def score(text: str) -> tuple[float, list[str]]:
    lowered = text.lower()
    total, families = 0.0, []
    for name, weight, pattern in SIGNALS:
        if any(anchor in lowered for anchor in ANCHORS[name]) and pattern.search(text):
            total += weight
            families.append(name)
    return total, families


def assess(text: str, threshold: float = THRESHOLD) -> tuple[float, list[str], str] | None:
    """The best-scoring (score, signal families, form) over the text's decoded forms, if it reaches the threshold."""
    best: tuple[float, list[str], str] | None = None
    for form, candidate in variants(text):
        value, families = score(candidate)
        if value >= threshold and (best is None or value > best[0]):
            best = (value, families, form)
    return best


class Injection:
    name = "injection"
    kinds = None

    def scan(self, text: str, where: Where) -> Sequence[Hit]:
        hits = []
        hidden = hidden_characters(text)
        if hidden >= HIDDEN_THRESHOLD:
            hits.append(
                Hit("injection.hidden_text", f"{hidden} hidden Unicode characters", placeholder="<HIDDEN TEXT>")
            )
        settings = getattr(where.settings, "injection", None)
        threshold = getattr(settings, "threshold", THRESHOLD)
        found = assess(text, threshold)
        if found is not None:
            value, families, form = found
            how = "" if form == "plain" else f", {form}-encoded"
            message = f"instructions aimed at the model ({', '.join(families)}; score {value:.1f}{how})"
            hits.append(Hit("injection.instructions", message, placeholder="<REMOVED: INSTRUCTIONS TO THE MODEL>"))
        return hits
