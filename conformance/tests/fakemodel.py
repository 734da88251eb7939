"""The fake server's "model": deterministic word generation honouring the sampling parameters.

Owns turning a validated request into choices (text or tool calls, logprobs, finish reasons)
with optional defects. Knows nothing about HTTP or SSE.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NATURAL_LEN", "VOCAB", "Choice", "generate", "instance_of"]

VOCAB = [f" w{i}" for i in range(64)]
NATURAL_LEN = 24  # tokens produced when nothing stops generation earlier


@dataclass
class Choice:
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    finish: str = "stop"
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    logprobs: list[dict[str, Any]] | None = None
    reasoning: str = ""  # the thoughts of the fake reasoning model


def instance_of(schema: dict[str, Any]) -> Any:
    """A small instance of a JSON schema (objects, enums, scalars)."""
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    t = schema.get("type", "object")
    if t == "object":
        props = schema.get("properties", {})
        return {k: instance_of(v) for k, v in props.items()}
    return {"string": "Paris", "integer": 3, "number": 1.5, "boolean": True, "array": [], "null": None}.get(
        t, "x"
    )


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


def _rng(body: dict[str, Any], choice: int, defects: set[str]) -> random.Random:
    temperature = body.get("temperature", 1.0)
    top_p = body.get("top_p", 1.0)
    greedy = (
        temperature == 0
        or "ignore_temperature" in defects
        or (top_p < 0.01 and "ignore_top_p" not in defects)
    )
    prompt = json.dumps([(m.get("role"), _text(m.get("content"))) for m in body.get("messages") or []])
    if greedy:
        return random.Random(hashlib.sha256(prompt.encode()).hexdigest())
    seed = body.get("seed")
    if seed is None or "ignore_seed" in defects:
        return random.Random()
    return random.Random(f"{prompt}/{seed}/{choice}")


def _tokens(body: dict[str, Any], choice: int, limit: int, defects: set[str]) -> list[int]:
    rng = _rng(body, choice, defects)
    bias = (
        {}
        if "ignore_logit_bias" in defects
        else {int(k): v for k, v in (body.get("logit_bias") or {}).items()}
    )
    freq = 0.0 if "ignore_frequency_penalty" in defects else body.get("frequency_penalty") or 0.0
    pres = 0.0 if "ignore_presence_penalty" in defects else body.get("presence_penalty") or 0.0
    out: list[int] = []
    for _ in range(limit):
        natural = rng.randrange(len(VOCAB))
        if (freq or pres) and natural in out:
            natural = next((t for t in range(len(VOCAB)) if t not in out), natural)
        forced = [t for t, b in bias.items() if b >= 50]
        out.append(forced[0] % len(VOCAB) if forced else natural)
    return out


def _logprobs(tokens: list[int], k: int, defects: set[str]) -> list[dict[str, Any]]:
    items = []
    for t in tokens:
        lp = 0.5 if "logprobs_positive" in defects else -0.25
        alts = [{"token": VOCAB[t], "logprob": lp, "bytes": list(VOCAB[t].encode())}]
        for j in range(1, k + 1):
            alt = VOCAB[(t + j) % len(VOCAB)]
            alts.append({"token": alt, "logprob": -1.0 * j - 1, "bytes": list(alt.encode())})
        count = k + 1 if "top_logprobs_wrong_count" in defects else k
        items.append(
            {"token": VOCAB[t], "logprob": lp, "bytes": list(VOCAB[t].encode()), "top_logprobs": alts[:count]}
        )
    return items


def _tool_calls(body: dict[str, Any], defects: set[str]) -> list[dict[str, Any]]:
    tools = body.get("tools") or []
    choice = body.get("tool_choice", "auto")
    if not tools or (choice == "none" and "tool_choice_none_ignored" not in defects):
        return []
    if isinstance(choice, dict):
        chosen = [t for t in tools if t["function"]["name"] == choice["function"]["name"]]
    elif body.get("parallel_tool_calls") is False and "ignore_parallel" not in defects:
        chosen = tools[:1]
    else:
        chosen = tools[:2]
    calls = []
    for i, tool in enumerate(chosen):
        args = json.dumps(instance_of(tool["function"].get("parameters") or {}))
        if "tool_args_not_json" in defects:
            args = args[:-1]
        calls.append(
            {
                "id": f"call_{i}_{abs(hash(args)) % 10_000}",
                "type": "function",
                "function": {"name": tool["function"]["name"], "arguments": args},
            }
        )
    return calls


def generate(body: dict[str, Any], defects: set[str]) -> list[Choice]:
    """The choices for a validated request."""
    n = 1 if "ignore_n" in defects else body.get("n") or 1
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if "ignore_max_tokens" in defects:
        limit = None
    stops = body.get("stop") or []
    stops = [stops] if isinstance(stops, str) else stops
    fmt = (body.get("response_format") or {}).get("type", "text")
    choices = []
    for idx in range(n):
        calls = _tool_calls(body, defects)
        if calls:
            choices.append(Choice(finish="tool_calls", tool_calls=calls))
            continue
        if fmt in ("json_object", "json_schema"):
            schema = (body["response_format"].get("json_schema") or {}).get("schema") or {
                "properties": {"answer": {"enum": ["yes"]}}
            }
            text = json.dumps(instance_of(schema))
            if "structured_not_json" in defects:
                text = text[:-1]
            choices.append(Choice(tokens=[0] * len(text), text=text))
            continue
        budget = min(limit or NATURAL_LEN, NATURAL_LEN)
        tokens = _tokens(body, idx, budget, defects)
        finish = "length" if limit is not None and limit <= NATURAL_LEN else "stop"
        text = "".join(VOCAB[t] for t in tokens)
        if "ignore_stop" not in defects:
            hits = [(text.find(s), s) for s in stops if s and s in text]
            if hits:
                pos, s = min(hits)
                cut = pos + (len(s) if "stop_not_trimmed" in defects else 0)
                text, finish = text[:cut], "stop"
                kept, acc = [], ""
                for t in tokens:
                    if len(acc) >= cut:
                        break
                    kept.append(t)
                    acc += VOCAB[t]
                tokens = kept
        ch = Choice(tokens=tokens, text=text, finish=finish)
        if body.get("logprobs"):
            ch.logprobs = _logprobs(tokens, body.get("top_logprobs") or 0, defects)
        choices.append(ch)
    return choices
