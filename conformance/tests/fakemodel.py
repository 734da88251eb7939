"""The fake server's "model": deterministic word generation honouring the sampling parameters.

Owns turning a validated request into choices (text or tool calls, the bytes of each token,
logprobs, finish reasons) with optional defects. Token ``i`` is the word ``" w<i>"``; natural
text uses the first 64 of a 50,000-token vocabulary, the rest is reachable through
``logit_bias``. A prompt with non-ASCII characters is echoed back, each character split over
two tokens (multi-byte text); a prompt starting with "Count" has no natural end. Knows nothing
about HTTP or SSE.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "NATURAL_LEN",
    "REASONER",
    "VOCAB_SIZE",
    "Choice",
    "generate",
    "instance_of",
    "think",
    "token_text",
    "user_text",
]

NATURAL = 64  # natural text draws from the first NATURAL tokens
VOCAB_SIZE = 50_000
NATURAL_LEN = 24  # tokens produced when nothing stops generation earlier
ENDLESS_LEN = 4096  # a "Count ..." prompt without max_tokens


REASONER = "fake-reasoner"  # thinks first: its thoughts come in reasoning_content and reasoning


def token_text(t: int) -> str:
    return f" w{t}"


@dataclass
class Choice:
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    pieces: list[bytes] = field(default_factory=list)  # each token's bytes, as a stream sends them
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


def user_text(body: dict[str, Any]) -> str:
    """The text of the last user message."""
    users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    return _text(users[-1].get("content")) if users else ""


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
    banned = set() if "ignore_negative_bias" in defects else {t for t, b in bias.items() if b <= -50}
    forced = [t for t, b in bias.items() if b >= 50]
    out: list[int] = []
    for _ in range(limit):
        natural = rng.randrange(NATURAL)
        if (freq or pres) and natural in out:
            natural = next((t for t in range(NATURAL) if t not in out), natural)
        while natural in banned and natural < VOCAB_SIZE - 1:  # the next token the ban leaves
            natural += 1
        out.append(forced[0] if forced else natural)
    return out


def _logprobs(tokens: list[int], k: int, defects: set[str]) -> list[dict[str, Any]]:
    items = []
    for t in tokens:
        lp = 0.5 if "logprobs_positive" in defects else -0.25
        word = token_text(t)
        alts = [{"token": word, "logprob": lp, "bytes": list(word.encode())}]
        for j in range(1, k + 1):
            alt = word if "top_logprobs_duplicates" in defects else token_text((t + j) % VOCAB_SIZE)
            alts.append({"token": alt, "logprob": -1.0 * j - 1, "bytes": list(alt.encode())})
        count = k + 1 if "top_logprobs_wrong_count" in defects else k
        items.append(
            {"token": word, "logprob": lp, "bytes": list(word.encode()), "top_logprobs": alts[:count]}
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


def _stop_cut(text: str, pieces: list[str], stops: list[str], body: dict[str, Any], defects: set[str]) -> int:
    """Where ``stops`` cut ``text`` (-1: nowhere): at the stop that completes first while generating."""
    stops = [s for s in stops if s]
    if "stop_first_listed_only" in defects:
        stops = stops[:1]
    hits = [(text.find(s) + len(s), text.find(s), s) for s in stops if s in text]
    if not hits:
        return -1
    if "stop_earliest_start" in defects:
        return min(pos for _, pos, _ in hits)
    if "stop_two_chunk_window" in defects and body.get("stream"):
        # looks for a stop only in the last two chunks' text: misses one spanning three
        start = 0
        for k in range(len(pieces)):
            window_start = start - (len(pieces[k - 1]) if k else 0)
            window = text[window_start : start + len(pieces[k])]
            found = [window_start + window.find(s) for s in stops if s in window]
            if found:
                return min(found)
            start += len(pieces[k])
        return -1
    return min(hits)[1]


def _pieces(text: str, sizes: list[int]) -> list[str]:
    out, pos = [], 0
    for size in sizes:
        if pos >= len(text):
            break
        out.append(text[pos : pos + size])
        pos += size
    return out


def _echo(body: dict[str, Any], limit: int | None) -> Choice:
    """Echo a prompt's non-ASCII characters, each character's bytes split over two tokens."""
    chars = [c for c in user_text(body) if ord(c) > 127]
    pieces: list[bytes] = []
    for c in chars:
        data = c.encode()
        pieces += [data[:1], data[1:]]
    finish = "length" if limit is not None and limit < len(pieces) else "stop"
    pieces = pieces[:limit] if limit is not None else pieces
    return Choice(tokens=[0] * len(pieces), text=b"".join(pieces).decode(errors="replace"), pieces=pieces,
                  finish=finish)  # fmt: skip


def generate(body: dict[str, Any], defects: set[str]) -> list[Choice]:
    """The choices for a validated request."""
    n = 1 if "ignore_n" in defects else body.get("n") or 1
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if "ignore_max_tokens" in defects:
        limit = None
    stops = body.get("stop") or []
    stops = [stops] if isinstance(stops, str) else stops
    fmt = (body.get("response_format") or {}).get("type", "text")
    natural_len = ENDLESS_LEN if user_text(body).startswith("Count") else NATURAL_LEN
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
            pieces = [p.encode() for p in _pieces(text, [4] * len(text))]
            choices.append(Choice(tokens=[0] * len(text), text=text, pieces=pieces))
            continue
        if any(ord(c) > 127 for c in user_text(body)):
            choices.append(_echo(body, limit))
            continue
        budget = min(limit or natural_len, natural_len)
        tokens = _tokens(body, idx, budget, defects)
        finish = "length" if limit is not None and limit <= natural_len else "stop"
        words = [token_text(t) for t in tokens]
        text = "".join(words)
        cut = -1 if "ignore_stop" in defects else _stop_cut(text, words, stops, body, defects)
        if cut >= 0:
            stop = next(s for s in stops if s and text.find(s, cut) == cut) if stops else ""
            cut += len(stop) if "stop_not_trimmed" in defects else 0
            text, finish = text[:cut], "stop"
            kept, acc = [], 0
            for t in tokens:
                if acc >= cut:
                    break
                kept.append(t)
                acc += len(token_text(t))
            tokens = kept
        pieces = [p.encode() for p in _pieces(text, [len(token_text(t)) for t in tokens])]
        ch = Choice(tokens=tokens, text=text, pieces=pieces, finish=finish)
        if body.get("logprobs"):
            ch.logprobs = _logprobs(tokens, body.get("top_logprobs") or 0, defects)
        choices.append(ch)
    return choices


def think(body: dict[str, Any], choices: list[Choice], defects: set[str]) -> None:
    """The fake reasoning model's thoughts, put where its defects put them."""
    if body["model"] != REASONER:
        return
    for ch in choices:
        thoughts = f"The question has {len(json.dumps(body['messages']).split())} words. I answer."
        if "think_in_content" in defects:  # no parser: the raw block stays in the answer
            _prepend(ch, f"<think>\n{thoughts}\n</think>\n\n")
        elif "reasoning_in_content" in defects:
            _prepend(ch, thoughts)
            ch.reasoning = thoughts
        else:
            ch.reasoning = thoughts


def _prepend(ch: Choice, text: str) -> None:
    """Text before the answer, streamed with its first token."""
    ch.text = text + ch.text
    ch.pieces = [text.encode() + (ch.pieces[0] if ch.pieces else b""), *ch.pieces[1:]]
