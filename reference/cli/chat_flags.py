"""Generation flags of ``chatref chat``: ``key=value`` pairs → typed request parameters.

Owns the table of known flags (type, allowed range, whether the OpenAI SDK knows the field or it
must travel in ``extra_body``), the parsing of one pair or many with a clear error for each
malformed one, and the split of a flag set into SDK keyword arguments. Knows nothing of the
terminal, the conversation or the network.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FLAGS",
    "FlagError",
    "FlagSpec",
    "Flags",
    "format_flags",
    "parse_flag",
    "parse_flags",
    "request_kwargs",
]

# A flag's parsed value: what the request field will carry.
FlagValue = int | float | str | list[str] | dict[str, Any]
Flags = dict[str, FlagValue]


class FlagError(ValueError):
    """A malformed or unknown ``key=value`` pair; the message is meant for the user as is."""


def _unescape(text: str) -> str:
    r"""Turn the escapes people type on a command line (``\n``, ``\t``, ``\\``) into characters."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "nt\\":
            out.append({"n": "\n", "t": "\t", "\\": "\\"}[text[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _to_int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise FlagError("expected an integer") from None


def _to_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise FlagError("expected a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise FlagError("expected a finite number")
    return value


def _to_stop(raw: str) -> str | list[str]:
    """One stop string, or a JSON list of up to 4 (``stop='["\\n\\n", "User:"]'``)."""
    if raw.startswith("["):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise FlagError(f"looks like a JSON list but is not valid JSON ({exc.msg})") from None
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise FlagError("a JSON list of stop strings must hold only strings")
        if not 1 <= len(value) <= 4:
            raise FlagError("give 1 to 4 stop strings")
        if any(s == "" for s in value):
            raise FlagError("a stop string cannot be empty")
        return list(value)
    text = _unescape(raw)
    if not text:
        raise FlagError("a stop string cannot be empty")
    return text


def _to_tool_choice(raw: str) -> str | dict[str, Any]:
    """``auto``, ``none``, ``required``, or a function name: that function must be called."""
    if raw in ("auto", "none", "required"):
        return raw
    if not raw.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise FlagError("expected auto, none, required or a function name")
    return {"type": "function", "function": {"name": raw}}


@dataclass(frozen=True)
class FlagSpec:
    name: str
    kind: str  # shown in help: "float", "int", "text"
    help: str
    convert: Callable[[str], FlagValue]
    low: float | None = None
    high: float | None = None
    extra: bool = False  # not an OpenAI field: sent in ``extra_body`` (vLLM, llama.cpp, Ollama know it)

    def parse(self, raw: str) -> FlagValue:
        value = self.convert(raw)
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.low is not None and value < self.low:
                raise FlagError(f"must be ≥ {_num(self.low)}, got {raw}")
            if self.high is not None and value > self.high:
                raise FlagError(f"must be ≤ {_num(self.high)}, got {raw}")
        return value

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            bounds = f" [{_num(self.low)}..{_num(self.high)}]"
        elif self.low is not None:
            bounds = f" [≥ {_num(self.low)}]"
        else:
            bounds = ""
        return f"{self.name}={self.kind}{bounds}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


FLAGS: dict[str, FlagSpec] = {
    spec.name: spec
    for spec in (
        FlagSpec("temperature", "float", "sampling temperature; 0 = greedy", _to_float, 0.0, 2.0),
        FlagSpec("top_p", "float", "nucleus sampling mass", _to_float, 0.0, 1.0),
        FlagSpec("max_tokens", "int", "most tokens in one answer", _to_int, 1),
        FlagSpec("seed", "int", "sampling seed, for repeatable answers", _to_int),
        FlagSpec("stop", "text", r"stop string (\n allowed) or a JSON list of up to 4", _to_stop),
        FlagSpec(
            "frequency_penalty", "float", "penalize tokens by how often they appeared", _to_float, -2, 2
        ),
        FlagSpec("presence_penalty", "float", "penalize tokens that appeared at all", _to_float, -2.0, 2.0),
        FlagSpec("tool_choice", "text", "auto, none, required or a tool name", _to_tool_choice),
        FlagSpec("top_k", "int", "keep the k most likely tokens (non-OpenAI extra)", _to_int, 0, extra=True),
        FlagSpec(
            "min_p", "float", "min probability relative to the top token (extra)", _to_float, 0, 1, True
        ),
        FlagSpec(
            "repetition_penalty", "float", "HF-style repetition penalty (extra)", _to_float, 0.0, extra=True
        ),
    )
}

# Names people reach for, mapped to the flag they mean.
_ALIASES = {"max_new_tokens": "max_tokens", "max_completion_tokens": "max_tokens", "temp": "temperature"}


def _resolve(key: str) -> FlagSpec:
    name = _ALIASES.get(key, key)
    spec = FLAGS.get(name)
    if spec is None:
        known = ", ".join(FLAGS)
        hint = " (a chat has one answer per turn)" if key == "n" else ""
        raise FlagError(f"unknown flag {key!r}{hint}; known flags: {known}")
    return spec


def parse_flag(pair: str) -> tuple[str, FlagValue]:
    """Parse one ``key=value``; raise :class:`FlagError` with a message naming the pair."""
    key, sep, raw = pair.partition("=")
    key = key.strip()
    if not sep:
        raise FlagError(f"{pair!r}: expected key=value, e.g. temperature=0.7")
    if not key:
        raise FlagError(f"{pair!r}: missing the name before '='")
    try:
        spec = _resolve(key)
    except FlagError as exc:
        raise FlagError(f"{pair!r}: {exc}") from None
    if raw == "":
        raise FlagError(f"{pair!r}: missing the value after '=' (expected {spec.describe()})")
    try:
        return spec.name, spec.parse(raw if spec.name == "stop" else raw.strip())
    except FlagError as exc:
        raise FlagError(f"{pair!r}: {spec.name} {exc}") from None


def parse_flags(pairs: Iterable[str]) -> Flags:
    """Parse several pairs; the first malformed one raises. Later pairs override earlier ones."""
    flags: Flags = {}
    for pair in pairs:
        name, value = parse_flag(pair)
        flags[name] = value
    return flags


def request_kwargs(flags: Mapping[str, FlagValue]) -> dict[str, Any]:
    """SDK keyword arguments for ``chat.completions.create``: extras go into ``extra_body``."""
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, value in flags.items():
        (extra if FLAGS[name].extra else kwargs)[name] = value
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


def format_flags(flags: Mapping[str, FlagValue]) -> str:
    """``temperature=0.2 stop="\\n"``: how flags are shown in ``!status`` and ``!set``."""
    if not flags:
        return "(server defaults)"
    parts = []
    for name, value in flags.items():
        if isinstance(value, dict):  # a named tool_choice: show the name as it was typed
            value = str(value.get("function", {}).get("name", value))
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, str | list) else str(value)
        parts.append(f"{name}={shown}")
    return " ".join(parts)
