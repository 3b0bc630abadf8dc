"""Conditions on a rule: a small expression language, parsed once at load, evaluated per call.

    args.amount <= 100
    args.to endswith "@acme.example"
    args.priority in ["high", "urgent"] and subject.tenant == "acme"
    not (args.note matches "^(?i)refund.*")

References start at `args` (the call's arguments) or `subject` (`id`, `tenant`, `roles`).
Operators: == != < <= > >= in, not in, startswith, endswith, contains, matches (a
regular expression, whole value); and, or, not, parentheses. Literals: numbers,
"strings" or 'strings', true, false, null, [lists].

A condition that cannot be evaluated (a missing field, a wrong type) raises
`ConditionError`; the engine then drops an allow rule and lets a deny or approve
rule deny: it never allows and it always denies.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ROOTS = frozenset({"args", "subject"})
SUBJECT_FIELDS = frozenset({"id", "tenant", "roles"})
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>-?\d+(?:\.\d+)?)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op><=|>=|==|!=|<|>|\(|\)|\[|\]|,|\.)
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_WORD_OPERATORS = frozenset({"in", "startswith", "endswith", "contains", "matches"})


class ConditionSyntaxError(ValueError):
    """The condition text is not a valid expression."""


class ConditionError(Exception):
    """The condition cannot be evaluated for this call (missing field, wrong type)."""


Evaluate = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Condition:
    text: str
    references: tuple[tuple[str | int, ...], ...]
    """Every field path the condition reads, starting with its root (`args`, `subject`)."""
    _evaluate: Evaluate

    def __call__(self, context: dict[str, Any]) -> bool:
        """True or False, or `ConditionError` when it cannot be decided."""
        value = self._evaluate(context)
        if not isinstance(value, bool):
            raise ConditionError(f"condition {self.text!r} does not give true or false")
        return value


def parse_condition(text: str) -> Condition:
    parser = _Parser(text)
    evaluate = parser.expression()
    if parser.peek() is not None:
        raise ConditionSyntaxError(f"unexpected {parser.peek()!r} in condition")
    return Condition(text, tuple(parser.references), evaluate)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.position = 0
        self.references: list[tuple[str | int, ...]] = []

    def peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise ConditionSyntaxError(f"condition ends early{f', expected {expected!r}' if expected else ''}")
        token = self.tokens[self.position]
        if expected is not None and token[1] != expected:
            raise ConditionSyntaxError(f"expected {expected!r}, found {token[1]!r}")
        self.position += 1
        return token

    def expression(self) -> Evaluate:
        left = self.conjunction()
        while self.peek() == "or":
            self.take()
            right = self.conjunction()
            left = _or(left, right)
        return left

    def conjunction(self) -> Evaluate:
        left = self.negation()
        while self.peek() == "and":
            self.take()
            right = self.negation()
            left = _and(left, right)
        return left

    def negation(self) -> Evaluate:
        if self.peek() == "not":
            self.take()
            inner = self.negation()
            return lambda context: not _boolean(inner(context))
        return self.comparison()

    def comparison(self) -> Evaluate:
        left = self.operand()
        operator = self.peek()
        if operator == "not" and self._next_is("in"):
            self.take()
            self.take()
            right = self.operand()
            return _compare("not in", left, right)
        if operator in ("==", "!=", "<", "<=", ">", ">=") or operator in _WORD_OPERATORS:
            self.take()
            right = self.operand()
            if operator == "matches":
                return _matches(left, right)
            return _compare(operator, left, right)
        return left

    def _next_is(self, value: str) -> bool:
        return self.position + 1 < len(self.tokens) and self.tokens[self.position + 1][1] == value

    def operand(self) -> Evaluate:
        kind, value = self.take()
        if value == "(":
            inner = self.expression()
            self.take(")")
            return inner
        if value == "[":
            items: list[Any] = []
            while self.peek() != "]":
                items.append(self.literal())
                if self.peek() == ",":
                    self.take()
                elif self.peek() != "]":
                    raise ConditionSyntaxError(f"expected ',' or ']' in a list, found {self.peek()!r}")
            self.take("]")
            frozen = list(items)
            return lambda context: frozen
        if kind == "word" and value in ROOTS:
            return self.reference(value)
        self.position -= 1
        constant = self.literal()
        return lambda context: constant

    def literal(self) -> Any:
        kind, value = self.take()
        if kind == "number":
            return float(value) if "." in value else int(value)
        if kind == "string":
            return bytes(value[1:-1], "utf-8").decode("unicode_escape")
        if kind == "word" and value in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[value]
        raise ConditionSyntaxError(f"expected a value, found {value!r}")

    def reference(self, root: str) -> Evaluate:
        path: list[str | int] = [root]
        while self.peek() in (".", "["):
            if self.take()[1] == ".":
                kind, name = self.take()
                if kind != "word":
                    raise ConditionSyntaxError(f"expected a field name after '.', found {name!r}")
                path.append(name)
            else:
                kind, index = self.take()
                if kind != "number" or "." in index:
                    raise ConditionSyntaxError(f"expected an index in [], found {index!r}")
                self.take("]")
                path.append(int(index))
        if len(path) == 1:
            raise ConditionSyntaxError(f"'{root}' needs a field ({root}.name)")
        if root == "subject" and path[1] not in SUBJECT_FIELDS:
            raise ConditionSyntaxError(
                f"unknown subject field {path[1]!r} (known: {', '.join(sorted(SUBJECT_FIELDS))})"
            )
        frozen = tuple(path)
        self.references.append(frozen)
        return lambda context: _lookup(context, frozen)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ConditionSyntaxError(f"cannot read the condition at {text[position : position + 12]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    if not tokens:
        raise ConditionSyntaxError("empty condition")
    return tokens


def _lookup(context: dict[str, Any], path: tuple[str | int, ...]) -> Any:
    value: Any = context
    for part in path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            raise ConditionError(f"{'.'.join(map(str, path))} is missing") from None
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConditionError(f"expected true or false, got {type(value).__name__}")
    return value


def _or(left: Evaluate, right: Evaluate) -> Evaluate:
    return lambda context: _boolean(left(context)) or _boolean(right(context))


def _and(left: Evaluate, right: Evaluate) -> Evaluate:
    return lambda context: _boolean(left(context)) and _boolean(right(context))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(operator: str, left: Evaluate, right: Evaluate) -> Evaluate:
    def evaluate(context: dict[str, Any]) -> bool:
        a, b = left(context), right(context)
        if operator in ("==", "!="):
            if type(a) is not type(b) and not (_number(a) and _number(b)):
                raise ConditionError(f"cannot compare {type(a).__name__} with {type(b).__name__}")
            return bool((a == b) == (operator == "=="))
        if operator in ("<", "<=", ">", ">="):
            if not ((_number(a) and _number(b)) or (isinstance(a, str) and isinstance(b, str))):
                raise ConditionError(f"cannot order {type(a).__name__} and {type(b).__name__}")
            return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[operator])
        if operator in ("in", "not in"):
            if not isinstance(b, list | str):
                raise ConditionError(f"'in' needs a list or a string on its right, got {type(b).__name__}")
            if isinstance(b, str) and not isinstance(a, str):
                raise ConditionError("'in' a string needs a string on its left")
            return (a in b) == (operator == "in")
        if not isinstance(a, str) or not isinstance(b, str):
            if operator == "contains" and isinstance(a, list):
                return b in a
            raise ConditionError(f"'{operator}' needs strings")
        return {"startswith": a.startswith, "endswith": a.endswith, "contains": a.__contains__}[operator](b)

    return evaluate


def _matches(left: Evaluate, right: Evaluate) -> Evaluate:
    try:
        pattern = re.compile(right({}))
    except (ConditionError, TypeError, re.error) as exc:
        raise ConditionSyntaxError(f"'matches' needs a valid regular expression literal: {exc}") from exc

    def evaluate(context: dict[str, Any]) -> bool:
        value = left(context)
        if not isinstance(value, str):
            raise ConditionError(f"'matches' needs a string, got {type(value).__name__}")
        return pattern.fullmatch(value) is not None

    return evaluate
