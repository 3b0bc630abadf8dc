"""The text in an upstream's answer to a resource read, prompt get or completion, and the answer rewritten.

The output guardrails scan these texts as they scan a tool's content blocks:
a resource's `TextResourceContents.text`, a prompt's description and its
messages' text (embedded text resources too), a completion's values. Each
text has a label (`contents[0].text`), which is the path findings name.

An annotated text gets the notice in front of it (a resource's or a prompt
message's text goes to the model as it is, with no room for a separate
block), and the answer's `_meta` lists the findings, as a tool result's does. A
completion value cannot carry a notice: an annotated value is dropped, since a
suggestion that reads like instructions is no suggestion.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from gateway.canonical import canonical_json

Location = tuple[str | int, ...]


def answer_texts(answer: BaseModel) -> dict[str, str]:
    """Label -> text of every string in `answer` that reaches the agent as text."""
    dumped = answer.model_dump(mode="json", by_alias=True)
    return {_label(location): _get(dumped, location) for location in _locations(dumped)}


def rewritten(answer: BaseModel, texts: dict[str, str], annotated: set[str], notice: str) -> BaseModel:
    """`answer` with the scanned `texts` in place, `notice` before each annotated one (completions: dropped)."""
    dumped = answer.model_dump(mode="json", by_alias=True, exclude_none=True)
    dropped: list[int] = []
    for location in _locations(dumped):
        label = _label(location)
        text = texts.get(label, _get(dumped, location))
        if label in annotated:
            if location[:2] == ("completion", "values"):
                dropped.append(int(location[2]))
                continue
            text = f"{notice}\n\n{text}"
        _set(dumped, location, text)
    if dropped:
        completion = dumped["completion"]
        completion["values"] = [v for i, v in enumerate(completion["values"]) if i not in dropped]
        if isinstance(completion.get("total"), int):
            completion["total"] = max(completion["total"] - len(dropped), len(completion["values"]))
    return type(answer).model_validate(dumped)


def answer_size(answer: BaseModel) -> int:
    return len(canonical_json(answer.model_dump(mode="json")).encode())


def _locations(dumped: dict[str, Any]) -> list[Location]:
    found: list[Location] = []
    for index, item in enumerate(dumped.get("contents") or []):
        if isinstance(item.get("text"), str):
            found.append(("contents", index, "text"))
    if isinstance(dumped.get("description"), str) and "messages" in dumped:
        found.append(("description",))
    for index, message in enumerate(dumped.get("messages") or []):
        content = message.get("content") or {}
        if content.get("type") == "text":
            found.append(("messages", index, "content", "text"))
        elif content.get("type") == "resource" and isinstance((content.get("resource") or {}).get("text"), str):
            found.append(("messages", index, "content", "resource", "text"))
    completion = dumped.get("completion")
    if isinstance(completion, dict):
        found.extend(("completion", "values", index) for index in range(len(completion.get("values") or [])))
    return found


def _label(location: Location) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in location).lstrip(".")


def _get(value: Any, location: Location) -> Any:
    for part in location:
        value = value[part]
    return value


def _set(value: Any, location: Location, text: str) -> None:
    for part in location[:-1]:
        value = value[part]
    value[location[-1]] = text
