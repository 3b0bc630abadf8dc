"""Personal data: email addresses, phone numbers, card numbers, IBANs and national identifiers.

Numbers are only findings when their checksum holds (Luhn for cards, ISO 7064
for IBANs, the national rules for identifiers, via python-stdnum); phone numbers
are parsed with Google's libphonenumber port, so an order number is not a phone.
The engine hands detectors normalised text (ASCII digits, one kind of dash and
space), so a card number in fullwidth digits reads like any other; its digits may
be grouped with spaces, dashes, dots or slashes, mixed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import phonenumbers
from stdnum import iban, luhn
from stdnum.es import dni
from stdnum.it import codicefiscale
from stdnum.us import ssn

from gateway.guardrails.detectors.base import Hit, Where

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ ./-]{0,3}\d){12,18}(?![\d-])")
_GROUPS = re.compile(r"\d+")
_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[0689]|6(?:011|5|4[4-9]|22)|35)")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_PHONE_LIKE = re.compile(r"(?:\d[\s().-]{0,2}){7,}")
_NATIONAL: tuple[tuple[str, re.Pattern[str], Callable[[str], bool]], ...] = (
    ("us_ssn", re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), ssn.is_valid),
    ("es_dni", re.compile(r"\b\d{8}-?[A-Z]\b"), dni.is_valid),
    ("it_codice_fiscale", re.compile(r"\b[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z]\b"), codicefiscale.is_valid),
)


class Emails:
    name = "emails"
    kinds = None

    def scan(self, text: str, where: Where) -> Sequence[Hit]:
        if "@" not in text:
            return ()
        return [Hit("personal.email", "an email address", *m.span(), "<EMAIL>") for m in _EMAIL.finditer(text)]


class Cards:
    name = "cards"
    kinds = None

    def scan(self, text: str, where: Where) -> Sequence[Hit]:
        hits = []
        for match in _CARD.finditer(text):
            if not _grouped_like_a_card(match.group()):
                continue
            groups = list(_GROUPS.finditer(match.group()))
            while groups:  # "4111 1111 1111 1111 12/29": the expiry date is not part of the number
                digits = "".join(group.group() for group in groups)
                if len(digits) < 13:
                    break
                if len(digits) <= 19 and _CARD_PREFIX.match(digits) and luhn.is_valid(digits):
                    start = match.start()
                    hits.append(
                        Hit("personal.card_number", "a payment card number", start, start + groups[-1].end(), "<CARD>")
                    )
                    break
                if len(groups) == 1:
                    break
                groups.pop()
        return hits


def _grouped_like_a_card(candidate: str) -> bool:
    """Dots and slashes also write decimals, prices and dates ("4.12 3.45 ..."): with them, the digits must
    come in groups of three or more, or one by one, as card numbers are written."""
    if "." not in candidate and "/" not in candidate:
        return True
    sizes = {len(group) for group in _GROUPS.findall(candidate)}
    return min(sizes) >= 3 or sizes == {1}


class Ibans:
    name = "ibans"
    kinds = None

    def scan(self, text: str, where: Where) -> Sequence[Hit]:
        return [
            Hit("personal.iban", "an IBAN", *m.span(), "<IBAN>")
            for m in _IBAN.finditer(text)
            if iban.is_valid(m.group())
        ]


class Phones:
    name = "phones"
    kinds = None

    def __init__(self, region: str = "US") -> None:
        self.region = region

    def scan(self, text: str, where: Where) -> Sequence[Hit]:
        if not _PHONE_LIKE.search(text):
            return ()  # no run of seven digits: libphonenumber would find nothing
        region = getattr(getattr(where.settings, "personal", None), "phone_region", self.region)
        matcher = phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID)
        return [Hit("personal.phone", "a phone number", m.start, m.end, "<PHONE>") for m in matcher]


class NationalIds:
    name = "national_ids"
    kinds = None

    def scan(self, text: str, where: Where) -> Sequence[Hit]:
        hits = []
        for kind, pattern, valid in _NATIONAL:
            for match in pattern.finditer(text):
                if valid(match.group()):
                    hits.append(
                        Hit(f"personal.{kind}", f"a national identifier ({kind})", *match.span(), "<NATIONAL_ID>")
                    )
        return hits
