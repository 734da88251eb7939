"""The fake server's responses: the ``chat.completion`` body, the stream's chunks and ``usage``.

Owns rendering choices into JSON objects, with the rendering defects (ids, roles, finish
reasons, usage, multi-byte text, reasoning fields, tool-call deltas). Knows nothing about HTTP or generation.
"""

from __future__ import annotations

import json
from typing import Any

from conformance.tests.fakemodel import Choice

__all__ = ["chunks", "completion_obj", "usage"]


def completion_obj(
    body: dict[str, Any],
    choices: list[Choice],
    cid: str,
    created: int,
    defects: set[str],
    cached: bool = False,
) -> dict[str, Any]:
    out = []
    for i, ch in enumerate(choices):
        msg: dict[str, Any] = {"role": "assistant", "content": None if ch.tool_calls else ch.text}
        if ch.tool_calls:
            msg["tool_calls"] = ch.tool_calls
        if ch.reasoning:
            msg |= _reasoning_fields(ch.reasoning, defects)
        lp = {"content": ch.logprobs, "refusal": None} if ch.logprobs is not None else None
        out.append({"index": i, "message": msg, "finish_reason": ch.finish, "logprobs": lp})
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": body["model"],
        "choices": out,
        "usage": usage(body, choices, defects, cached=cached),
    }


def usage(
    body: dict[str, Any], choices: list[Choice], defects: set[str], cached: bool = False, stream: bool = False
) -> dict[str, int]:
    p = len(json.dumps(body["messages"]).split())
    if "prompt_tokens_constant" in defects:
        p = 10
    if cached and "prompt_tokens_cached_discount" in defects:
        p = max(1, p - 3)  # counts only the prompt tokens the (pretend) prefix cache missed
    per_token = 1 + (body.get("top_logprobs") or 0) if stream and body.get("logprobs") else 1
    if "usage_counts_top_logprobs" not in defects:
        per_token = 1
    c = sum(max(1, len(ch.tokens)) * per_token if not ch.tool_calls else 5 for ch in choices)
    return {
        "prompt_tokens": p,
        "completion_tokens": c,
        "total_tokens": p + c + ("usage_wrong_total" in defects),
    }


def _reasoning_fields(text: str, defects: set[str]) -> dict[str, str]:
    return {
        "reasoning_content": text,
        "reasoning": text.upper() if "reasoning_fields_differ" in defects else text,
    }


def _reasoning_deltas(ch: Choice, defects: set[str]) -> list[dict[str, Any]]:
    words = ch.reasoning.split(" ")
    pieces = [" ".join(words[:2]), " " + " ".join(words[2:4]), " " + " ".join(words[4:])]
    if "stream_reasoning_differs" in defects:
        pieces = pieces[1:]
    return [_reasoning_fields(p, defects) for p in pieces if ch.reasoning]


def _text_pieces(ch: Choice, defects: set[str]) -> list[str]:
    """The content of each token's delta: a character split over tokens is held back until whole."""
    if "utf8_split" in defects:
        return [p.decode(errors="replace") for p in ch.pieces]
    out, held = [], b""
    for p in ch.pieces:
        held += p
        for cut in range(len(held), max(-1, len(held) - 4), -1):  # the longest whole-character prefix
            try:
                text = held[:cut].decode()
            except UnicodeDecodeError:
                continue
            out.append(text)
            held = held[cut:]
            break
    if held:
        out[-1] += held.decode(errors="replace")
    return out


def _tool_deltas(calls: list[dict[str, Any]], defects: set[str]) -> list[dict[str, Any]]:
    """The tool-call deltas of a stream: id, type and name first, then the arguments in halves."""
    out = []
    for j, call in enumerate(calls):
        index = 2 * j if "tool_index_gap" in defects else j
        args = call["function"]["arguments"]
        half = 0 if "tool_args_one_delta" in defects else len(args) // 2
        first = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": args[:half] if half else args},
        }
        out.append(first)
        if half:
            rest: dict[str, Any] = {"index": index, "function": {"arguments": args[half:]}}
            if "tool_id_every_delta" in defects:
                rest |= {"id": call["id"], "type": "function"}
            out.append(rest)
    return out


def chunks(
    body: dict[str, Any],
    choices: list[Choice],
    cid: str,
    created: int,
    defects: set[str],
    cached: bool = False,
) -> list[Any]:
    """The stream's chunk objects (without [DONE])."""

    def mk(i: int, delta: dict[str, Any], finish: str | None = None, lp: Any = None) -> dict[str, Any]:
        return {
            "id": cid + (str(len(out)) if "id_changes" in defects else ""),
            "object": "chat.completion.chunk",
            "created": created,
            "model": body["model"],
            "choices": [{"index": i, "delta": delta, "finish_reason": finish, "logprobs": lp}],
        }

    out: list[dict[str, Any]] = []
    for i, ch in enumerate(choices):
        if "no_role" not in defects:
            out.append(mk(i, {"role": "assistant", "content": ""}))
        thoughts = [mk(i, d) for d in _reasoning_deltas(ch, defects)]
        if "reasoning_after_content" not in defects:
            out += thoughts
        for k, piece in enumerate(_text_pieces(ch, defects)):
            if (
                "stream_differs" in defects
                and k == 0
                and not (body.get("stop") or body.get("logprobs") or body.get("response_format"))
            ):
                piece = piece.upper()
            delta = {"content": piece} | ({"role": "assistant"} if "role_every_delta" in defects else {})
            lp = {"content": [ch.logprobs[k]], "refusal": None} if ch.logprobs is not None else None
            if piece or lp:
                out.append(mk(i, delta, None, lp))
            if "double_finish" in defects and k == 0:
                out[-1]["choices"][0]["finish_reason"] = "length"
        if "reasoning_after_content" in defects:
            out += thoughts
        for d in _tool_deltas(ch.tool_calls, defects):
            out.append(mk(i, {"tool_calls": [d]}))
        out.append(mk(i, {}, ch.finish))
    use = usage(body, choices, defects, cached=cached, stream=True)
    include = bool((body.get("stream_options") or {}).get("include_usage"))
    if "usage_always" in defects:
        for c in out:
            c["usage"] = use
    elif include and "usage_not_final" in defects:
        out[-1]["usage"] = use
    elif include:
        out.append(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body["model"],
                "choices": [],
                "usage": use,
            }
        )
    return out
