"""The one normalised form every content detector reads: what it undoes (invisible characters, Unicode
digits, odd separators, terminal escapes), and how a match in it maps back onto the original string,
so a redaction replaces exactly the characters that were sent and leaves the rest alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.guardrails import Guardrails, GuardrailsConfig
from gateway.guardrails import text as normalisation
from gateway.guardrails.config import ToolRule

pytestmark = pytest.mark.anyio

ZW = "\u200b"
SLACK = "xoxb-2048-1234567890-abcdefghijABCDEFGHIJ"
GITHUB = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
FULLWIDTH = str.maketrans("0123456789 -", "０１２３４５６７８９\u3000－")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def original_of(text: str, needle: str) -> str:
    """The characters of the original `text` that the normalised `needle` came from."""
    view = normalisation.normalise(text)
    start = view.index(needle)
    first, last = view.span(start, start + len(needle))
    return text[first:last]


# --- the normalised form and its map back ------------------------------------------------


def test_a_token_split_by_invisible_characters_maps_back_over_all_of_them() -> None:
    split = f"token {SLACK[:8]}{ZW}{SLACK[8:16]}\u2060\u00ad{SLACK[16:]} end"
    view = normalisation.normalise(split)
    assert SLACK in view
    assert original_of(split, SLACK) == f"{SLACK[:8]}{ZW}{SLACK[8:16]}\u2060\u00ad{SLACK[16:]}"


@pytest.mark.parametrize("table", [FULLWIDTH, ARABIC_INDIC], ids=["fullwidth", "arabic-indic"])
def test_digits_in_other_scripts_read_as_ascii_and_map_back_one_to_one(table: dict[int, int]) -> None:
    card = "4111 1111-1111 1111".translate(table)
    text = f"card {card} thanks"
    assert "4111 1111-1111 1111" in normalisation.normalise(text)
    assert original_of(text, "4111 1111-1111 1111") == card


def test_a_compatibility_character_that_expands_maps_every_piece_to_its_source() -> None:
    text = "a\ufb01b"  # the "fi" ligature: one character, two after NFKC
    view = normalisation.normalise(text)
    assert view == "afib"
    assert view.span(1, 2) == (1, 2) and view.span(2, 3) == (1, 2) and view.span(3, 4) == (2, 3)


def test_a_letter_with_a_combining_accent_is_composed_and_maps_to_both_characters() -> None:
    text = "cafe\u0301 ok"
    view = normalisation.normalise(text)
    assert view == "café ok"
    assert view.span(3, 4) == (3, 5) and view.span(5, 7) == (6, 8)


def test_terminal_escape_sequences_are_removed_and_their_payload_text_stays() -> None:
    text = "Echo\x1b[8m hidden\x1b[0m.\x1b[2K\x1b]8;;https://evil.example\x07link\x1b]8;;\x1b\\"
    assert normalisation.normalise(text) == "Echo hidden.8;;https://evil.examplelink8;;"
    assert original_of(text, "hidden") == "hidden"


def test_tag_characters_spell_the_ascii_they_mirror() -> None:
    hidden = "".join(chr(0xE0000 + ord(c)) for c in "call me")
    assert normalisation.normalise(f"ok{hidden}") == "okcall me"


def test_ordinary_text_is_not_copied_and_maps_to_itself() -> None:
    for text in ["Refunds take five business days.", "Grüße aus Köln, ça va très bien"]:
        view = normalisation.normalise(text)
        assert view == text and not view.changed and view.span(2, 5) == (2, 5)


def test_unicode_dashes_and_spaces_become_ascii_in_place() -> None:
    text = "ça va \u2014 très\u00a0bien"
    view = normalisation.normalise(text)
    assert view == "ça va - très bien" and view.changed
    assert [view.span(i, i + 1) for i in range(len(view))] == [(i, i + 1) for i in range(len(text))]


def test_spans_at_the_edges_stay_inside_the_original() -> None:
    text = f"{ZW}abc{ZW}"
    view = normalisation.normalise(text)
    assert view == "abc"
    assert view.span(0, None) == (1, None)
    assert view.span(3, 3) == (5, 5)
    assert view.span(0, 3) == (1, 4)


# --- through the engine: every content detector reads the normalised form -----------------

RULES = GuardrailsConfig(
    budget_ms=10_000,  # detection, not timing: a loaded machine must not turn a slow detector into a finding
    rules=(
        ToolRule(tools=("tickets.create",), arguments={"secrets": "redact", "cards": "redact", "phones": "flag"}),
        ToolRule(tools=("email.send",), arguments={"secrets": "block", "cards": "block"}),
        ToolRule(tools=("kb.search",), outputs={"injection": "annotate", "secrets": "redact"}),
    ),
)


async def scan(tool: str, value: Any, direction: str = "arguments", tmp: Path = Path()) -> tuple[list[str], Any]:
    guardrails = Guardrails(RULES, tmp, tmp)
    report = await guardrails.scan(guardrails.guard(tool), direction, value)  # type: ignore[arg-type]
    return [f.rule for f in report.findings], report.value


@pytest.mark.parametrize(
    ("secret", "rule"),
    [
        (f"{SLACK[:10]}{ZW}{SLACK[10:20]}{ZW}{SLACK[20:]}", "secrets.slack_token"),
        (f"{GITHUB[:4]}\u2062{GITHUB[4:20]}\ufeff{GITHUB[20:]}", "secrets.github_token"),
        (SLACK.translate(str.maketrans("0123456789-", "０１２３４５６７８９－")), "secrets.slack_token"),
        (f"{GITHUB[:12]}\x1b[8m{GITHUB[12:]}\x1b[0m", "secrets.github_token"),
    ],
    ids=["zero-width", "invisible-times-and-bom", "fullwidth", "terminal-escape"],
)
async def test_an_encoded_secret_is_redacted_exactly_and_the_rest_of_the_text_kept(secret: str, rule: str) -> None:
    body = f"Hi team,\nmy token is {secret} — please rotate it.\nThanks"
    rules, value = await scan("tickets.create", {"body": body})
    assert rules == [rule]
    after = "\x1b[0m" if secret.endswith("\x1b[0m") else ""  # only the token's own characters are replaced
    assert value["body"] == f"Hi team,\nmy token is <SECRET>{after} — please rotate it.\nThanks"


@pytest.mark.parametrize(
    "card",
    [
        "４１１１ １１１１ １１１１ １１１１",
        "٤١١١ ١١١١ ١١١١ ١١١١",
        "4111 1111-1111.1111",
        "4111/1111/1111/1111",
        "4111\u20131111\u20141111\u20121111",
        f"4111{ZW}1111{ZW}1111{ZW}1111",
        "4111\u00a01111\u202f1111\u30001111",
    ],
    ids=["fullwidth", "arabic-indic", "mixed", "slashes", "unicode-dashes", "zero-width", "unicode-spaces"],
)
async def test_an_encoded_card_number_is_redacted_exactly(card: str) -> None:
    rules, value = await scan("tickets.create", {"body": f"Card: {card}, exp 12/29. Ref T-1."})
    assert rules == ["personal.card_number"]
    assert value["body"] == "Card: <CARD>, exp 12/29. Ref T-1."


async def test_a_card_number_followed_by_its_expiry_is_still_found() -> None:
    rules, value = await scan("tickets.create", {"body": "card 4111 1111 1111 1111 12/29"})
    assert rules == ["personal.card_number"] and value["body"] == "card <CARD> 12/29"


LOOK_ALIKES = [
    "card ４１１１ １１１１ １１１１ １１１２ (checksum fails)",
    "prices 4.12 3.45 6.78 9.01 2.34 5.67 EUR",
    "dates 2024/01/15 2024/02/16 2024/03/17",
    "Refunds take five to ten business days — escalate above 500 EUR.",
    "Hosts 10.20.30.40 and 10.20.30.41 answered.",
]


async def test_only_the_encoded_card_is_redacted_among_look_alikes() -> None:
    body = "\n".join([*LOOK_ALIKES, "pay with ５５５５.５５５５ ５５５５-４４４４ today"])
    rules, value = await scan("tickets.create", {"body": body})
    assert rules == ["personal.card_number"]
    assert value["body"] == "\n".join([*LOOK_ALIKES, "pay with <CARD> today"])


@pytest.mark.parametrize(
    "phone",
    ["+44 20\u200b7946\u200b0958", "+44\u00a020\u20117946\u20110958"],
    ids=["zero-width", "non-breaking-hyphens"],
)
async def test_an_encoded_phone_number_is_flagged(phone: str) -> None:
    rules, _ = await scan("tickets.create", {"body": f"call me on {phone}"})
    assert rules == ["personal.phone"]


async def test_a_blocked_secret_is_masked_in_the_audit_copy() -> None:
    guardrails = Guardrails(RULES, Path(), Path())
    body = f"key {SLACK[:6]}{ZW}{SLACK[6:]} ok"
    report = await guardrails.scan(guardrails.guard("email.send"), "arguments", {"body": body})
    assert report.verdict == "block"
    assert report.masked == {"body": "key <SECRET> ok"}


async def test_a_result_with_hidden_characters_is_reported_and_its_split_secret_redacted() -> None:
    text = f"Hel{ZW}lo{ZW} wo{ZW}rld, the key is {SLACK[:12]}{ZW}{SLACK[12:]}."
    rules, value = await scan("kb.search", {"text": text}, "outputs")
    assert sorted(rules) == ["injection.hidden_text", "secrets.slack_token"]
    assert value == {"text": f"Hel{ZW}lo{ZW} wo{ZW}rld, the key is <SECRET>."}
