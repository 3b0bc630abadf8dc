"""Fold look-alike letters from other scripts into the ASCII letters they imitate.

"іgnore аll previous іnstructions" written with Cyrillic і and а reads like English to a
model but matches no English pattern. Folding each character to its UTS #39 skeleton
prototype (Unicode's confusables data, table in `confusables_table.py`) before matching
closes that gap. Only letters are folded and ASCII is left alone, so English, German,
French, Spanish and Italian text is unchanged; genuine Cyrillic or Greek prose becomes
Latin-looking nonsense, which no English pattern matches either.
"""

from __future__ import annotations

from gateway.guardrails.confusables_table import SOURCE, TARGET

_FOLDS = str.maketrans(SOURCE, TARGET)


def fold(text: str) -> str:
    """The text with every confusable letter replaced by the ASCII letter it imitates."""
    if text.isascii():
        return text
    return text.translate(_FOLDS)


def has_confusables(text: str) -> bool:
    """Whether folding would change the text."""
    return not text.isascii() and fold(text) != text
