"""Prompt injection in tool results: text that addresses the model and tries to steer it.

A weighted set of signal families, grouped by what the text tries to do rather than by
the words it uses: override earlier instructions or announce new ones, claim a persona
without limits or start a role play, invent a debugging or maintenance mode, extract the
system prompt, forge a system, user or assistant turn or the end of the document, plead
urgency or apologise its way to "the real task", direct a tool call, move data out, plant
text in the reply or in memory, turn safety off, act without the user knowing. Most
families speak English, German, French, Spanish and Italian. A result is a finding when
its strongest form scores 1.0 or more: strong families weigh 1.0 alone, weak ones
(addressing the model, urgency, a tool name, a dangerous path) count only together.

Every string is scanned in its decoded forms (hidden Unicode tags, URL, unicode escapes,
base64, base32, hex, binary, spaced letters, leetspeak, reversed, rot13) and with
look-alike letters from other scripts folded to ASCII, so neither encoding an instruction
nor writing it in Cyrillic hides it. Precision and recall on public labelled corpora, on
a training and a held-out split, are measured by `benchmarks/guardrails.py`.

"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.guardrails.confusables import fold
from gateway.guardrails.detectors.base import Hit, Where
from gateway.guardrails.text import hidden_characters, variants


@dataclass(frozen=True)
class Family:
    """One kind of steering: its weight, the cheap substrings it needs, and its pattern.

    Patterns are written in lower case and run on the lower-cased text (three times faster than
    IGNORECASE in `re`); a `cased` family runs on the text as written.
    """

    name: str
    weight: float
    anchors: tuple[str, ...]
    pattern: re.Pattern[str]
    cased: bool = False

    def found(self, text: str, lowered: str) -> bool:
        return any(anchor in lowered for anchor in self.anchors) and (
            self.pattern.search(text if self.cased else lowered) is not None
        )


def _family(name: str, weight: float, anchors: str, *alternatives: str, flags: int = 0, cased: bool = False) -> Family:
    source = "|".join(alternatives)
    return Family(
        name, weight, tuple(anchors.split("|")), re.compile(source if cased else source.lower(), flags), cased
    )


_INSTRUCTIONS = (
    r"(?:instructions?|instruction sets?|rules|guidelines|directives?|prompts?|system prompt|content policy|"
    r"safety (?:rules|guidelines|protocols)|restrictions|programming)"
)
_MODEL = r"(?:ai|bot|chatbot|assistant|llm|model|agent|claude|chatgpt|gpt|gemini|copilot|language model)"
_PRIOR = r"(?:previous|prior|preceding|earlier|above|original|initial|old)"
FAMILIES: tuple[Family, ...] = (
    _family(
        "override",
        1.0,
        "ignor|disregard|forget|skip|bypass|override|dimentica|olvida|oubli|vergiss",
        r"\b(?:ignore|disregard|forget|skip|bypass|override)\b(?!\s+(?:its|their|his|her)\b)[\w\s,'-]{0,40}?\b"
        + _INSTRUCTIONS
        + r"\b",
        r"\b(?:disregard|ignore|forget)\s+(?:everything|all)\s+(?:above|before|prior|you were told|we discussed)",
        rf"\b(?:ignore|disregard|forget)\s+(?:all\s+)?(?:the\s+)?(?:above|preceding)(?:\s+(?:text|content|context|"
        rf"prompt|conversation|messages?))?\s*(?:[.!:;,\n]|$)|\b(?:ignore|disregard|forget)\s+(?:all\s+|the\s+|your\s+)?"
        rf"{_PRIOR}\s+(?:context|conversation|prompt|commands|directions|orders|tasks?|requests?|messages)\b",
        r"\bignor(?:a|e|ez|iere|ieren)\b(?!\s+(?:its|their|his|her)\b).{0,40}\b(?:istruzioni|instrucciones|instructions|anweisungen|richtlinien|regeln)\b",
        r"\b(?:dimentica|olvida|oubliez?|vergiss)\b.{0,30}\b(?:istruzioni|instrucciones|instructions|alles|regeln)\b",
    ),
    _family(
        "new_instructions",
        0.7,
        "instruct|task|directive|order|rules|guideline|prompt|anweisung|istruzion|instruccion|aufgabe|cancel",
        r"\b(?:new|updated|revised|real|actual|additional|priority|urgent|important|hidden|secret|override|correct)\s+"
        r"(?:priority\s+)?(?:instructions?|directives?|tasks?|orders|system prompt|rules|objective|mission)\s*[:\-—]",
        r"\b(?:your\s+)?(?:instructions?|guidelines|rules|system prompt|directives?|programming|task)\s+(?:have|has)\s+"
        r"(?:just\s+)?(?:been\s+)?(?:updated|changed|replaced|revised|superseded|overridden|cancell?ed|revoked)",
        rf"\bthe\s+{_PRIOR}\s+(?:task|request|instructions?|assignment|prompt)\s+(?:is|are|was|were|has been|have been)\s+"
        r"(?:now\s+)?(?:cancell?ed|void|obsolete|revoked|replaced|superseded|withdrawn|no longer valid)",
        r"\b(?:neue|aktualisierte) (?:anweisungen|aufgabe|regeln)\b|\bnouvelles? (?:instructions?|consignes?|t[aâ]che)\b"
        r"|\bnuevas? (?:instrucciones|tarea|reglas)\b|\bnuov[ae] (?:istruzioni|compito|regole)\b",
    ),
    _family(
        "unrestricted",
        1.0,
        "mode|anything now|dan|uncensored|unrestricted|unfiltered|restriction|limit|filter|polic|rules|safety|restriccion"
        "|restrizion|uneingeschr|einschr|keine|ethic|moral|jailbr|constraint|suspend|lifted",
        r"\b(?:developer|god|jailbreak|jailbroken|unrestricted|unfiltered|dan|evil|chaos) mode\b|\bdo anything now\b|\bDAN\b",
        r"\b(?:uncensored|unrestricted|unfiltered|jailbroken)\s+(?:model|assistant|ai|mode|response|answer|version|persona)",
        r"\b(?:no|without|any)\s+(?:content\s+|safety\s+|ethical\s+|moral\s+)?(?:restrictions|limits|filters?|content "
        r"polic(?:y|ies)|rules|safety (?:rules|limits|guidelines))\b",
        r"\b(?:no|without|free of|free from)\s+(?:any\s+)?(?:ethical|moral)\s+(?:constraints|guidelines|limits|boundaries|"
        r"restrictions|principles|considerations)\b",
        r"\b(?:trained|built|created|designed|programmed)\s+without\s+(?:any\s+)?(?:safety|content|ethical)\s+"
        r"(?:filters?|guidelines|training|restrictions)",
        r"\b(?:normal|usual|all|your|the|ai|safety)\s+(?:rules|restrictions|guidelines|filters|safeguards|limitations|"
        r"policies)\s+(?:are|have been|were|is|now)\s+(?:now\s+)?(?:suspended|lifted|disabled|removed|off|waived|paused|"
        r"void|deactivated)|\b(?:rules|restrictions)\s+suspended\b",
        r"\bsin restricciones\b|\bsenza restrizioni\b|\bsans (?:restrictions|limites|filtres?)\b|\buneingeschr[aä]nkt\b"
        r"|\bohne einschr[aä]nkungen\b|\bkeine (?:regeln|richtlinien)\b|\bmodo desarrollador\b|\bmodalit[àa] sviluppatore\b",
    ),
    _family(
        "role_play",
        0.6,
        "pretend|imagine|act |role|play a game|persona|character|no longer|you are now|you're now|semblant|finge|finta"
        "|maintenant|ahora eres|ora sei|du bist|agis|act[uú]a|agisci|spiel",
        r"\b(?:pretend|imagine|suppose)\s+(?:that\s+)?you(?:'re|\s+are|\s+have|\s+were|\s+can)\b",
        rf"\b(?:act|behave|respond|answer|reply)\s+(?:as|like)\s+(?:if\s+you|an?\s+(?:\w+\s+)?{_MODEL}\b|an?\s+"
        r"(?:unfiltered|uncensored|unrestricted|evil|rogue|different)\b)",
        r"\b(?:role-?play|role play)(?:ing)?\s+(?:as|with)\b|\blet'?s play a game\b|\byour new (?:role|persona|name|identity)\b"
        r"|\byou are no longer\b|\bstay in character\b|\b(?:from now on|henceforth),? you(?:'re| are| will be)\b"
        r"|\byou(?:'re| are) now (?:an?|the|my|in)\b|\bnew persona\b",
        r"\btu es (?:maintenant|d[ée]sormais)\b|\bfais semblant\b|\bfinge(?:r)? (?:que|ser)\b|\bfai finta\b"
        r"|\bahora eres\b|\bora sei\b|\bdu bist (?:jetzt|nun|ab sofort)\b|\btu sei ora\b",
    ),
    _family(
        "debug_mode",
        1.0,
        "mode|admin|root|sudo|command|override|creator|developer|maintenance|debug|modus|modo",
        r"\b(?:enter|enable|activate|switch to|switch into|unlock|engage|you are (?:now )?in|now in|entering|enabling)\s+"
        r"(?:the\s+)?(?:\w+\s+)?(?:debug|debugging|developer|maintenance|diagnostic|admin|god|sudo|root|unrestricted|"
        r"jailbreak|test|service|override|dev)[ _-]?mode\b",
        r"\b(?:debug|developer|maintenance|diagnostic|admin|god|sudo|unrestricted|jailbreak|override)[ _-]?mode\s*"
        r"(?:is\s+(?:now\s+)?)?(?:enabled|activated|engaged|unlocked|on)\b.{0,60}\b(?:ignore|rules|restrictions|comply|"
        r"system prompt|your instructions|no limits|anything)\b",
        r"\b(?:admin|administrator|root|sudo|developer|operator|system)\s+(?:command|override|access granted|privileges)\s*:",
        r"\bi am (?:your|the) (?:creator|developer|admin|administrator|owner|operator|programmer|maker)\b",
        r"\b(?:entwicklermodus|wartungsmodus|mode (?:d[ée]veloppeur|maintenance|debug)|modo (?:mantenimiento|depuraci[oó]n|"
        r"manutenzione|debug))\b",
    ),
    _family(
        "prompt_extraction",
        1.0,
        "prompt|system|instruction|hidden|above|context window|verbatim|word for word|wortw|mot pour mot|palabra por"
        "|parola per|anweisung|istruzion|instruccion|prior|token",
        r"\b(?:reveal|print|show|output|repeat|tell me|dump|leak|give me|disclose|share|list|echo|recite|display|return|"
        r"write out|translate|summari[sz]e|verrate|r[ée]v[eè]le|revela|rivela|zeige|muestra|mostra|affiche[rz]?)\b"
        r".{0,40}(?:system[ -]?prompt|system message|(?:initial|original|base|hidden|secret|developer|first|exact) "
        r"(?:instructions|prompt|message|directives|rules)|hidden (?:prompt|message)|instructions you (?:were given|received)"
        r"|operating instructions|system ?instructions|systemanweisungen|instructions syst[eè]me|instrucciones del sistema"
        r"|istruzioni di sistema|prompt (?:di|del) sistema|prompt syst[eè]me|words above|context window)",
        r"\b(?:repeat|print|output|copy|echo|dump)\s+(?:back\s+)?(?:all\s+|everything\s+)?(?:the\s+)?(?:text|words|content|"
        r"messages?|tokens|everything)?\s*(?:above|before this|prior|previous)\b(?:\s+(?:tokens|messages|text))?",
        r"\bwhat (?:were|are|is) your (?:initial|original|system|hidden|secret|first|exact|base) (?:instructions|prompt|"
        r"rules|directives)\b",
        r"\b(?:word for word|verbatim|wortw[oö]rtlich|mot pour mot|palabra por palabra|parola per parola)\b",
    ),
    _family(
        "forged_turn",
        1.0,
        "system|assistant|developer|<|<thinking|end of|sistema|reasoning|human|###|[inst|user:",
        r"(?:^|\n)\s*(?:\[?system\]?|assistant|developer)\s*:|\[SYSTEM\]|<\|im_start\|>|<\|im_end\|>|</?system>",
        r"<\|(?:system|user|assistant|endoftext|start_header_id|end_header_id|eot_id)\|?>|\[/?INST\]|<</?SYS>>",
        r"(?:^|\n)\s*(?:human|user)\s*:.{0,300}\n\s*(?:assistant|ai)\s*:",
        r"#{2,}\s*(?:instruction|system|new (?:task|instructions?)|response|input)s?\b",
        r"<thinking>|#{2,}\s*end of (?:user )?(?:input|document|prompt)|-{3,}\s*end of document",
        r"\bsystemhinweis\b|\bnote syst[eè]me\b|\bnota (?:del|di) sistema\b|\breasoning(?: trace)? \(assistant\)",
        flags=re.MULTILINE,
    ),
    # A shouted "SYSTEM NOTE" is a forged turn; "the system prompt is configurable" in prose is not.
    _family(
        "forged_system_note",
        1.0,
        "system",
        r"\bSYSTEM (?:NOTE|UPDATE|MESSAGE|OVERRIDE|ALERT|NOTICE|PROMPT|INSTRUCTION)\b",
        cased=True,
    ),
    _family(
        "end_of_context",
        0.6,
        "end|</|[",
        r"\bend of (?:the )?(?:document|context|input|data|email|search results?|tool (?:output|result)|untrusted|"
        r"article|page|file contents)\b",
        r"</(?:document|untrusted|context|user|data|tool_output|tool_result|search_results?|instructions?|input|email)>"
        r"|\[(?:context|document|input|data) end\]|\[end of (?:context|document|input|data)\]",
    ),
    _family(
        "addresses_model",
        0.6,
        "ai|bot|assistant|llm|model|agent|assistent|asistente|claude|gpt|gemini|copilot|summari|when you",
        rf"\b(?:note|notice|message|attention|important|instructions?|reminder|request)\s+(?:to|for)\s+(?:the\s+|any\s+|"
        rf"all\s+)?{_MODEL}s?\b|\b(?:ai|llm) (?:assistant|agent|system|model)s? (?:reading|processing|reviewing|integrating)",
        r"\bif you are an? (?:ai|llm|language model|assistant)\b|\bfor ai (?:coding )?agents\b|\bas the assistant\b",
        rf"\b(?:dear|hey|hi|hello|attention|to the)\s+{_MODEL}\b|\bto you,?\s+(?:the\s+|an?\s+)?{_MODEL}\b",
        r"\bwhen (?:you(?:'re| are)?\s+)?(?:summari[sz]|process|read|review|analy[sz]|answer|respond|translat)\w*\s+"
        r"(?:this|these|the above)\b",
        r"\b(?:come|als|en tant qu'|como) (?:assistente|assistent|assistant|asistente)\b",
    ),
    _family(
        "urgency",
        0.5,
        "urgent|emergenc|danger|die|hurt|life|apolog|sorry|critical|immediately|dringend|urgence|urgencia|urgenza"
        "|important|attention|warning",
        r"\b(?:important|attention|urgent|warning|critical)\s*!{2,}",
        r"\b(?:urgent|emergency|critical|immediately|life or death|time[- ]sensitive)\b.{0,80}\b(?:you must|you need to|"
        r"assistant|ai|model|respond|reply|instructions?|override|ignore|do not|don't)\b",
        r"\b(?:the )?user (?:is|will be|could be) in (?:danger|trouble|grave danger)\b|\b(?:someone|a person|people|the user)"
        r" (?:will|could|might) (?:die|be hurt|get hurt|be harmed)\b",
        r"\b(?:i apologi[sz]e|my apologies|sorry)\b.{0,60}\b(?:real|actual|true|correct|new|different|updated)\s+"
        r"(?:task|request|instructions?|question|goal)\b",
        r"\b(?:dringend|notfall)\b.{0,60}\b(?:du musst|sofort)\b|\burgence\b.{0,60}\btu dois\b"
        r"|\burgencia\b.{0,60}\bdebes\b|\burgenza\b.{0,60}\bdevi\b",
    ),
    _family(
        "real_task",
        1.0,
        "real|actual|true|hidden|secret|wahre|vraie|verdadera|vero",
        r"\byour (?:real|actual|true|hidden|secret|primary) (?:task|goal|job|assignment|objective|mission|purpose|"
        r"instructions?|directive)\b",
        r"\b(?:i apologi[sz]e|my apologies|sorry)\b.{0,40}\bthe (?:real|actual|true) (?:task|request|goal)\b",
        r"\bdeine (?:wahre|eigentliche) aufgabe\b|\bta (?:vraie|v[ée]ritable) (?:t[aâ]che|mission)\b"
        r"|\btu (?:verdadera|real) (?:tarea|misi[oó]n)\b|\bil tuo (?:vero|reale) compito\b",
    ),
    _family(
        "task_hijack",
        0.7,
        "before|instead|rather|task|request|following|after you|nothing else|only with|reply with|respond with",
        r"\b(?:before|instead of|rather than)\s+(?:you\s+)?(?:can\s+)?(?:solv|complet|continu|proceed|answer|finish|"
        r"summari[sz]|translat|respond|repl|perform|do|help)\w*\s+(?:with\s+)?(?:the|this|your|any|that|my)\s+"
        r"(?:original\s+|current\s+|user'?s\s+)?(?:task|request|question|summary|job|assignment|query)",
        r"\b(?:the|your) (?:original|current|summari[sz]ation|user'?s?|initial) (?:task|request)\s+(?:is|has been|was)\s+"
        r"(?:now\s+)?(?:cancell?ed|no longer|irrelevant|void|replaced|complete)",
        r"\b(?:please\s+)?do the following (?:first|instead)\b|\bafter you(?:'ve| have)? (?:do(?:ne)?|complet\w*) "
        r"(?:that|this)\b,? you (?:can|may)\b",
        r"\b(?:reply|respond|answer|output|say|print|write)\b.{0,60}\b(?:and nothing else|nothing else\b|and only that)"
        r"|\b(?:reply|respond|answer)\s+(?:only\s+)?with\s+(?:the\s+)?(?:exact\s+|following\s+)?(?:word|phrase|text|"
        r"string|token|code|sentence)\b",
        r"\binstead,?\s+(?:you\s+(?:should|must|will)\s+)?(?:reply|respond|output|say|write|tell the user|print)\b",
    ),
    _family(
        "canary_reply",
        0.7,
        "reply|respond|answer|output|say",
        r"\b(?:[Rr]eply|[Rr]espond|[Aa]nswer|[Oo]utput|[Ss]ay|REPLY|RESPOND|ANSWER|OUTPUT|SAY)\s+(?:only\s+)?(?:with\s+)?"
        r"['\"`]?[A-Z0-9]+(?:[_-][A-Z0-9]+)+\b",
        cased=True,
    ),
    _family(
        "hidden_comment",
        0.6,
        "<!--",
        r"<!--[^>]{0,300}?\b(?:assistant|ai|model|llm|agent|ignore|disregard|instructions?|system|you must|respond|reply|"
        r"summari[sz]|output|include|append)\b",
    ),
    _family(
        "authority",
        0.6,
        "from|user|behalf|signed|authori",
        r"\b(?:this is|a message|an? (?:important|urgent) message|instructions?)\s+from\s+(?:me,?\s+)?(?:the user|your user"
        r"|your (?:developer|owner|creator|operator|admin\w*)|the (?:developer|owner|administrator|system administrator|"
        r"operator|security team|openai|anthropic))\b",
        r"\bthe user (?:has\s+)?(?:asked|wants|instructed|authori[sz]ed|requested|told|would like)\s+(?:you|me to tell you|"
        r"that you)\b|\bon behalf of (?:the|your) user\b",
        r"\b(?:pre-?)?authori[sz]ed by (?:the user|your user|the administrator|the developer|your developer)\b",
    ),
    _family(
        "tool_directive",
        0.7,
        "_|tool|function|plugin|api|endpoint|action|command",
        r"\b(?:call|use|invoke|run|execute|trigger)\s+(?:the\s+)?`?[a-z]+_[a-z_]+`?\b",
        r"\b(?:call|use|invoke|run|execute|trigger)\s+(?:the\s+|your\s+)?`?[\w.-]+`?\s+(?:tool|plugin)\s+(?:to|with|and|on|"
        r"for)\b",
        r"\"(?:tool|tool_name|function|function_call|action|name)\"\s*:\s*\"[\w.-]+\"\s*,\s*\"(?:arguments|args|"
        r"parameters|code|query|sql|input|command)\"",
    ),
    _family(
        "stealth",
        0.6,
        "without|tell|mention|inform|notify|silent|secret|quiet",
        r"\bwithout (?:the user(?:'s)? )?(?:approval|asking|confirmation|permission|telling|informing|notifying|"
        r"knowing|knowledge|consent|noticing)\b",
        r"\b(?:do not|don't|never)\s+(?:tell|inform|mention|notify|alert|show|reveal|let)\b.{0,30}\b(?:the )?(?:user|"
        r"human|operator|customer|anyone)\b",
        r"\b(?:silently|secretly|quietly|covertly)\s+(?:send|forward|call|run|execute|delete|upload|copy|add|include|"
        r"append|transfer|email)\b",
    ),
    _family(
        "transfer",
        0.6,
        "@|http|extern|.com|.net|.org|.io|.ru|.xyz|.example",
        r"\b(?:send|email|e-mail|forward|post|upload|transmit|submit|exfiltrate|leak|copy|sync|deliver|envoie|env[ií]a"
        r"|invia|sende)\b.{0,80}?(?:\bto\b|\ba\b|\ban\b|\bat\b).{0,40}?(?:[\w.+-]+@[\w-]+\.[\w.]+|https?://|externally"
        r"|extern|\b[\w-]+\.(?:com|net|org|io|ru|cn|xyz|info|biz|site|top|example)\b)",
        r"!\[[^\]]*\]\(https?://[^)\s]*[?&][\w-]+=",
        r"\b(?:call|use|invoke)\s+`?\w*(?:post|send|upload|webhook|fetch|request)\w*`?\s+(?:to|with|on)\s+https?://",
    ),
    _family(
        "sensitive_data",
        0.4,
        "customer|credential|api key|password|environment variable|internal|order data|admin|confidential|donnees|daten"
        "|ssh|private key|token|history|secret|user data|passwd|.env|id_rsa",
        r"\b(?:customer (?:list|data(?:base)?|emails)|credentials|api keys?|passwords?|environment variables|"
        r"internal (?:data|configuration)|order data|admin (?:password|access|pages)|confidential data|donnees clients"
        r"|interne daten)\b",
        r"\b(?:conversation|chat) history\b|\ball (?:prior|previous) (?:messages|tokens|conversation)\b|\buser data\b"
        r"|\b(?:ssh|private|secret) keys?\b|\baccess tokens?\b|\bsession (?:cookies?|tokens?)\b",
    ),
    _family(
        "dangerous_action",
        0.6,
        "/etc/|.ssh|id_rsa|rm -rf|drop table|os.system|chmod|.aws|curl|wget|.env|subprocess",
        r"/etc/(?:passwd|shadow|sudoers)|~?/\.ssh\b|\bid_(?:rsa|ed25519)\b|\brm -rf\b|\bdrop table\b|\bos\.system\s*\("
        r"|\bchmod 777\b|\.aws/credentials|\b(?:curl|wget)\b[^\n]{0,80}\|\s*(?:ba)?sh\b|\bsubprocess\.\w+\(",
    ),
    _family(
        "obedience",
        0.5,
        "comply|obey|refus|without question",
        r"\b(?:comply|obey)\b.{0,20}\b(?:all|every|any)\s+(?:requests?|commands?|instructions?|orders?|questions?)\b"
        r"|\b(?:always|must) (?:comply|obey)\b|\b(?:never|do not|don't|cannot|can't) refuse\b|\bwithout (?:refusing|"
        r"question|hesitation)\b",
    ),
    _family(
        "imperative",
        0.5,
        "you |new |your |from now|from this|supersede|for the re|before|instead|ab jetzt|ab sofort|sormais|ahora eres"
        "|ora sei|du bist|without",
        r"\byou (?:must|are hereby instructed|should first|are now|now answer|now allow)\b|\bnew (?:instructions?|directive)\b"
        r"|\byour (?:real|new|true) (?:task|directive|instructions?|purpose)\b|\bfrom now on\b|\bfrom this point\b"
        r"|\bsupersedes?\b|\bfor the (?:rest|remainder) of\b|\b(?:before|instead of) (?:you )?(?:answer|respond|repl)"
        r"|\bab (?:jetzt|sofort)\b|\bd[ée]sormais\b|\bahora eres\b|\bora sei\b|\bdu bist jetzt\b|\bwithout (?:asking|question)",
    ),
    _family(
        "plant_output",
        1.0,
        "append|include|add|print|repeat|angeh|ajout|adirse|aggiunto|end with|end your|finish with|sign off",
        r"\b(?:append|include|add|print|repeat)\b.{0,80}?\b(?:to|in|at)\s+(?:the (?:end|start|bottom|top) of\s+)?"
        r"(?:your|every|each|any|the|all)\s+(?:future\s+)?(?:reply|replies|response|responses|summary|summaries|answer|"
        r"review|report|output)s?\b",
        r"\b(?:end|finish|start|begin|conclude|sign off)\s+(?:your|the|each|every)\s+(?:reply|replies|response|responses|"
        r"summary|answer|output|message)\s+with\b",
        r"\b(?:angeh[aä]ngt|ajout[ée]|a[nñ]adirse|aggiunto)\b",
    ),
    _family(
        "persistence",
        0.6,
        "save|store|persist|remember|note to self",
        r"\b(?:save|store|persist|remember)\b.{0,60}\b(?:memory|all future|every future|across (?:turns|sessions)|persists?)\b"
        r"|\bnote to self\b",
    ),
    _family(
        "safety_off",
        1.0,
        "safety|security|content|exempt|compromised|sicherheit|curit|seguridad|sicurezza|guardrail|moderation|safe",
        r"\b(?:safety|security|content) (?:protocols?|checks|rules|guidelines|polic(?:y|ies)|filters?)\b.{0,30}"
        r"\b(?:disabled|off|do not apply|don't apply|not apply|not meant|were not meant|are compromised|no longer apply)\b",
        r"\b(?:skip|disable|bypass|disregard)\b.{0,20}\b(?:safety|security|content|confidentiality)\s+(?:checks|"
        r"polic(?:y|ies)|rules|filters?)\b",
        r"\b(?:ignore|disregard|bypass|disable|turn off|switch off|skip)\s+(?:all\s+|the\s+|your\s+|any\s+)?(?:safety|"
        r"ethics|ethical guidelines|guardrails|content filters?|moderation|safeguards)\b(?!\s*(?:switch|interlock|valve|"
        r"glasses|lock|equipment|features?|mechanisms?|devices?|pins?|catch|belts?|data sheets?|training|inspections?))",
        r"\bsafe[_ ]?mode\s*[=:]\s*(?:false|off|0|disabled)\b|\bsafety\s*[=:]\s*(?:false|off|0|disabled)\b",
        r"\bexempt from\b.{0,30}\brestrictions\b|\bmessages .{0,30}are compromised\b",
        r"\b(?:linee guida di sicurezza|sicherheitsrichtlinien|r[eè]gles de s[ée]curit[ée]|reglas de seguridad)\b.{0,40}"
        r"\b(?:non valgono|nicht gelten|ne s'appliquent pas|no aplican)\b",
    ),
    _family(
        "decode_and_obey",
        1.0,
        "decode|translate|convert|what it says|instruction|comply",
        r"\b(?:decode|translate|convert)\b.{0,60}\b(?:and|then)\b.{0,20}\b(?:do|follow|execute|obey|act on|comply|run)\b",
        r"\bdo (?:exactly )?what it says\b|\bfollow the instructions? inside\b|\bthen comply\b",
    ),
)
THRESHOLD = 1.0
HIDDEN_THRESHOLD = 2
"""Two or more invisible or tag characters: one zero-width space is a copy-and-paste accident, more is a message."""


def score(text: str) -> tuple[float, list[str]]:
    """The summed weight of the families found in the text, and their names."""
    return _score(text, text.lower())


def _score(text: str, lowered: str) -> tuple[float, list[str]]:
    names = [family.name for family in FAMILIES if family.found(text, lowered)]
    return sum(family.weight for family in FAMILIES if family.name in names), names


def assess(text: str, threshold: float = THRESHOLD) -> tuple[float, list[str], str] | None:
    """The best-scoring (score, signal families, form) over the text's decoded forms, if it reaches the threshold.

    Each form is scanned with confusable letters folded to ASCII; the form's name says so when that changed it.
    """
    best: tuple[float, list[str], str] | None = None
    for form, candidate in variants(text):
        folded = fold(candidate)
        value, families = _score(folded, folded.lower())
        label = form if folded == candidate else ("confusables" if form == "plain" else f"{form}+confusables")
        if value >= threshold and (best is None or value > best[0]):
            best = (value, families, label)
    return best


class Injection:
    name = "injection"
    kinds: frozenset[str] | None = None

    def scan(self, text: str, where: Where) -> Sequence[Hit]:
        hits = []
        hidden = hidden_characters(text)
        if hidden >= HIDDEN_THRESHOLD:
            hits.append(
                Hit("injection.hidden_text", f"{hidden} hidden Unicode characters", placeholder="<HIDDEN TEXT>")
            )
        settings = getattr(where.settings, "injection", None)
        found = assess(text, getattr(settings, "threshold", THRESHOLD))
        if found is not None:
            value, families, form = found
            how = "" if form == "plain" else f", {form}-encoded"
            message = f"instructions aimed at the model ({', '.join(families)}; score {value:.1f}{how})"
            hits.append(Hit("injection.instructions", message, placeholder="<REMOVED: INSTRUCTIONS TO THE MODEL>"))
        return hits
