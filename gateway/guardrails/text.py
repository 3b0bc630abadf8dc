"""Text normalisation shared by detectors: hidden characters and encoded forms.

Attackers hide text from the person reading it while the model still reads it
(Unicode tag characters, zero-width and bidirectional controls, terminal escape
sequences), and split or re-spell values so a pattern misses them (a token with
zero-width spaces inside, a card number in fullwidth or Arabic-Indic digits).
`normalise` gives the one form every content detector reads, with a map back to
the original so a redaction replaces exactly what was sent; `variants` yields
the decoded forms (base64, hex, rot13, ...) worth scanning for instructions.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from collections.abc import Iterator
from typing import Self
from urllib.parse import unquote

TAG_CHARS = re.compile("[\U000e0000-\U000e007f]")
INVISIBLE = re.compile(
    "[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\u00ad\u180b-\u180f\u034f"
    "\u115f\u1160\u3164\uffa0\ufe00-\ufe0d\ufff9-\ufffb\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0100-\U000e01ef]"
)
"""Characters that render as nothing. Emoji presentation selectors (U+FE0E, U+FE0F) are left out: emoji carry them."""
CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
"""C0 and C1 control characters other than tab, line feed and carriage return (ESC starts terminal sequences)."""
_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x9b[0-?]*[ -/]*[@-~]|\x1b[ -/]*[0-~]")
"""Escape sequences that carry no text: CSI (colours, concealed text, erase line, cursor moves) and two-character
escapes. An OSC or DCS payload (a window title, a hyperlink target) is text and stays; its openers and closers go."""
_TAGS = range(0xE0020, 0xE007F)
_FILLERS = frozenset("\u034f\u115f\u1160\u3164\uffa0\u180b\u180c\u180d\u180f\ufe0e\ufe0f") | frozenset(
    chr(c) for c in [*range(0xFE00, 0xFE0E), *range(0xE0100, 0xE01F0)]
)


def _tables() -> tuple[frozenset[str], dict[int, str]]:
    """(characters the normalised form leaves out, digits to translate to ASCII), from one pass over Unicode."""
    drop, digits = set(_FILLERS), {}
    for code in [*range(0x80, 0x20000), *range(0xE0000, 0xE1000)]:  # no format, control or digit code points beyond
        category = unicodedata.category(chr(code))
        if category in ("Cf", "Cc") and code not in _TAGS:
            drop.add(chr(code))
        elif category == "Nd":
            digits[code] = str(unicodedata.decimal(chr(code)))
    drop.update(chr(c) for c in range(0x20) if chr(c) not in "\t\n\r")
    drop.add("\x7f")
    return frozenset(drop), digits


_DROP, _DIGITS = _tables()
"""Left out of the normalised form: format and control characters, variation selectors, fillers."""
_UNIFY: dict[int, str] = {
    **_DIGITS,
    **{ord(c): "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2e3a\u2e3b\ufe58\ufe63\uff0d"},
    **{ord(c): " " for c in "\u1680\u2028\u2029"},
    **{ord(c): "." for c in "\u3002\uff61\u2024"},
    **{ord(c): "/" for c in "\u2044\u2215\uff0f"},
}
"""After NFKC: every decimal digit as ASCII, dashes as '-', odd spaces as ' ', ideographic full stops and
division slashes as '.' and '/'."""


_SPECIAL = _DROP | frozenset(map(chr, _UNIFY)) | frozenset(map(chr, _TAGS))
"""Every character the normalised form changes other than through NFKC."""
_UNUSUAL = re.compile(r"[^\t\n\r -~]+")
"""Runs of anything but printable ASCII: where a special character can be (a set lookup is far faster than one
regular expression class of all of them, which the engine would test range by range)."""
_SHORT = 16
"""A part NFKC changes that is this short is normalised character by character; a longer one is halved."""
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{24,}={0,2}")
_BASE32 = re.compile(r"[A-Z2-7]{24,}=*")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}){12,}")
_BINARY = re.compile(r"(?:[01]{8}\s?){6,}")
_U_ESCAPE = re.compile(r"(?:\\u[0-9a-fA-F]{4}){4,}")
_SPACED = re.compile(r"\b(?:\w ){3,}\w\b")
_LEET_WORD = re.compile(r"\b(?=\w*[a-zA-Z])(?=\w*[0-9])[a-zA-Z0-9]{3,}\b")
_WORD = re.compile(r"[a-zà-ÿ]+")
_COMMON_WORDS = (
    "the and to of a in is you your for it this that on with as are be or at by not from we our an if can will all"
    " der die das und ist nicht le la les et est pas de el los y es que il di che non"
)
_COMMON = frozenset(_COMMON_WORDS.split())
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_WORD_BREAK = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|_+")


class Normalised(str):
    """The text detectors read (NFKC, hidden characters removed, digits and separators unified), which
    remembers the string it came from: `span` maps a match back onto the original."""

    original: str
    _starts: tuple[int, ...] | None
    _ends: tuple[int, ...] | None

    def __new__(
        cls, text: str, original: str, starts: tuple[int, ...] | None = None, ends: tuple[int, ...] | None = None
    ) -> Self:
        made = super().__new__(cls, text)
        made.original = original
        made._starts, made._ends = starts, ends
        return made

    @property
    def changed(self) -> bool:
        return self._starts is not None

    def span(self, start: int, end: int | None) -> tuple[int, int | None]:
        """The original span that normalised characters [start, end) came from (end None: to the end)."""
        if self._starts is None or self._ends is None:
            return start, end
        size = len(self._starts)
        first = self._starts[start] if start < size else len(self.original)
        if end is None:
            return first, None
        last = self._ends[end - 1] if 0 < end <= size and end > start else first
        return first, max(first, last)


def normalise(text: str) -> Normalised:
    """`text` as detectors should read it; a text already in that form is returned without a copy."""
    if isinstance(text, Normalised):
        return text
    if text.isascii():
        if not CONTROLS.search(text):
            return Normalised(text, text)
    elif unicodedata.is_normalized("NFKC", text) and all(_SPECIAL.isdisjoint(run) for run in _UNUSUAL.findall(text)):
        return Normalised(text, text)
    return _rebuild(text)


def _rebuild(text: str) -> Normalised:
    """Where NFKC changes nothing (most text), only the characters in `_SPECIAL` change and the runs
    between them are copied whole; a part NFKC does change is halved until the halves are short, and those
    are normalised one character (with its combining marks) at a time."""
    pieces: list[str] = []
    starts: list[int] = []
    ends: list[int] = []

    def emit(piece: str, begin: int, stop: int) -> None:
        for out in piece:
            pieces.append(out)
            starts.append(begin)
            ends.append(stop)

    def copy(begin: int, stop: int) -> None:
        pieces.append(text[begin:stop])
        starts.extend(range(begin, stop))
        ends.extend(range(begin + 1, stop + 1))

    def by_match(begin: int, stop: int) -> None:
        done = begin
        for run in _UNUSUAL.finditer(text, begin, stop):
            for at in range(run.start(), run.end()):
                if at < done or text[at] not in _SPECIAL:
                    continue
                escape = _ESCAPE.match(text, at, stop) if text[at] in "\x1b\x9b" else None
                end = at + 1 if escape is None else escape.end()
                copy(done, at)
                emit(_replacement(text[at:end]), at, end)
                done = end
        copy(done, stop)

    def by_character(begin: int, stop: int) -> None:
        index = begin
        while index < stop:
            escape = _ESCAPE.match(text, index, stop) if text[index] in "\x1b\x9b" else None
            end = escape.end() if escape is not None else index + 1
            while escape is None and end < stop and unicodedata.combining(text[end]):
                end += 1
            emit("" if escape is not None else _replacement(text[index:end]), index, end)
            index = end

    def part(begin: int, stop: int) -> None:
        if unicodedata.is_normalized("NFKC", text[begin:stop]):
            by_match(begin, stop)
        elif stop - begin <= _SHORT:
            by_character(begin, stop)
        else:  # halve at a space, so no escape sequence or accented letter is cut in two
            middle = (begin + stop) // 2
            space = text.find(" ", middle, stop)
            middle = space if space > begin else middle
            while middle < stop and unicodedata.combining(text[middle]):
                middle += 1
            part(begin, middle)
            part(middle, stop)

    part(0, len(text))
    return Normalised("".join(pieces), text, tuple(starts), tuple(ends))


def _replacement(source: str) -> str:
    """What one character (with its combining marks) or one escape sequence becomes."""
    first = source[0]
    if first in _DROP:
        return ""  # an escape sequence starts with ESC or CSI, both dropped; so are combining marks on a dropped one
    if "\U000e0020" <= first <= "\U000e007e":
        return chr(ord(first) - 0xE0000)  # a tag character spells the ASCII character it mirrors
    return unicodedata.normalize("NFKC", source).translate(_UNIFY)


def hidden_characters(text: str) -> int:
    """Tag and invisible characters in `text` (in the original, when `text` is a normalised form)."""
    source = text.original if isinstance(text, Normalised) else text
    return len(TAG_CHARS.findall(source)) + len(INVISIBLE.findall(source))


def control_characters(text: str) -> int:
    """Control characters other than tab and line breaks: terminal escape sequences start with one (ESC)."""
    source = text.original if isinstance(text, Normalised) else text
    return len(CONTROLS.findall(source))


def identifier_words(text: str) -> str:
    """`text` with identifiers split into words: `ignore_previous_instructions`, `readTheUsersIdRsa` ->
    `ignore previous instructions`, `read The Users Id Rsa`."""
    return _WORD_BREAK.sub(" ", text)


def reveal(text: str) -> str:
    """Tag characters mapped back to the ASCII they mirror; invisible and control characters removed; NFKC."""
    return str(normalise(text))


def variants(text: str) -> Iterator[tuple[str, str]]:
    """(how it was decoded, text) for the plain form and every decodable form found in it."""
    plain = reveal(text)
    yield "plain", plain
    decoded: str | None
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
