"""Text normalisation shared by detectors: hidden characters and encoded forms.

Attackers hide instructions from the person reading a result while the model
still reads them: Unicode tag characters, zero-width and bidirectional
controls, homoglyph-friendly compatibility forms, base64/hex/binary blobs and
URL escapes. `variants` yields the forms worth scanning, each at most once.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from collections.abc import Iterator
from urllib.parse import unquote

TAG_CHARS = re.compile("[\U000e0000-\U000e007f]")
INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u00ad\u180e]")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{24,}={0,2}")
_BASE32 = re.compile(r"[A-Z2-7]{24,}=*")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}){12,}")
_BINARY = re.compile(r"(?:[01]{8}\s?){6,}")
_U_ESCAPE = re.compile(r"(?:\\u[0-9a-fA-F]{4}){4,}")
_SPACED = re.compile(r"\b(?:\w ){3,}\w\b")
_LEET_WORD = re.compile(r"\b(?=\w*[a-zA-Z])(?=\w*[0-9])[a-zA-Z0-9]{3,}\b")
_WORD = re.compile(r"[a-zà-ÿ]+")
_COMMON = frozenset(
    ["the", "and", "to", "of", "a", "in", "is", "you", "your", "for", "it", "this", "that", "on", "with", "as", "are", "be", "or", "at", "by", "not", "from", "we", "our", "an", "if", "can", "will", "all", "der", "die", "das", "und", "ist", "nicht", "le", "la", "les", "et", "est", "pas", "de", "el", "los", "y", "es", "que", "il", "di", "che", "non"]
)
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})


def hidden_characters(text: str) -> int:
    return len(TAG_CHARS.findall(text)) + len(INVISIBLE.findall(text))


def reveal(text: str) -> str:
    """Tag characters mapped back to the ASCII they mirror; invisible controls removed; NFKC."""
    text = TAG_CHARS.sub(lambda m: chr(ord(m.group()) - 0xE0000), text)
    return unicodedata.normalize("NFKC", INVISIBLE.sub("", text))


def variants(text: str) -> Iterator[tuple[str, str]]:
    """(how it was decoded, text) for the plain form and every decodable form found in it."""
    plain = reveal(text)
    yield "plain", plain
    if "%" in plain:
        decoded = unquote(plain)
        if decoded != plain:
            yield "url", decoded
    for match in _U_ESCAPE.finditer(plain):
        yield "unicode_escape", match.group().encode().decode("unicode_escape", "replace")
    for match in _BASE64.finditer(plain):
        decoded = _printable(_b64(match.group()))
        if decoded:
            yield "base64", decoded
    for match in _BASE32.finditer(plain):
        try:
            decoded = _printable(base64.b32decode(match.group() + "=" * (-len(match.group()) % 8)))
        except (binascii.Error, ValueError):
            decoded = None
        if decoded:
            yield "base32", decoded
    for match in _HEX.finditer(plain):
        decoded = _printable(bytes.fromhex(match.group()))
        if decoded:
            yield "hex", decoded
    for match in _BINARY.finditer(plain):
        bits = match.group().split()
        decoded = _printable(bytes(int(b, 2) for b in bits if len(b) == 8))
        if decoded:
            yield "binary", decoded
    if _SPACED.search(plain):
        yield "spaced", _SPACED.sub(lambda m: m.group().replace(" ", ""), plain)
    if len(_LEET_WORD.findall(plain)) >= 2:
        yield "leet", plain.translate(_LEET)
    if not _reads_as_prose(plain):
        # Reversed or rot13 text has almost no common words; ordinary prose is not scanned twice more.
        yield "reversed", plain[::-1]
        yield "rot13", codecs.encode(plain, "rot13")


def _reads_as_prose(text: str) -> bool:
    words = _WORD.findall(text.lower())
    return len(words) >= 4 and sum(w in _COMMON for w in words) >= 0.1 * len(words)


def _b64(value: str) -> bytes | None:
    padded = value + "=" * (-len(value) % 4)
    try:
        return base64.b64decode(padded, altchars=b"-_" if ("-" in value or "_" in value) else None, validate=True)
    except (binascii.Error, ValueError):
        return None


def _printable(data: bytes | None) -> str | None:
    """Decoded bytes that read as text (mostly letters and spaces), else None."""
    if not data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    letters = sum(c.isalpha() or c.isspace() for c in text)
    return text if letters >= 0.8 * len(text) and " " in text else None
