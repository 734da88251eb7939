"""The fake server's ``/responses`` and legacy ``/completions``, built on the fake chat model.

Each request is turned into a chat body, validated and generated as the fake's chat route does,
then rendered in the other API's shape (JSON, or its SSE events). Defects named ``resp_*`` and
``cmpl_*`` break one behaviour each; ``no_responses`` / ``no_completions`` drop a route. Owns the
fake's response store. Knows nothing about the suite.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from conformance.tests.fakemodel import Choice, generate, token_text

__all__ = [
    "RouteError",
    "completion_chunks",
    "completion_obj",
    "generate_response",
    "response_events",
    "stored",
]

STORE: dict[str, dict[str, Any]] = {}  # response id -> {"response", "messages"}
_IDS = itertools.count(1)


class RouteError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


# ---- responses ---------------------------------------------------------------------------


def _messages(body: dict[str, Any], defects: set[str]) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = []
    prev = body.get("previous_response_id")
    if prev is not None:
        if prev not in STORE:
            raise RouteError(
                404, "previous response not found", "previous_response_id", "previous_response_not_found"
            )
        if "resp_previous_ignored" not in defects:
            msgs += STORE[prev]["messages"]
    items = body.get("input")
    if isinstance(items, str):
        return [*msgs, {"role": "user", "content": items}]
    if not isinstance(items, list):
        raise RouteError(400, "input must be a string or a list of items", "input")
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            content = item.get("content")
            if isinstance(content, list):  # input_text / output_text parts
                content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
            msgs.append({"role": item.get("role"), "content": content})
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            msgs.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            msgs.append({"role": "tool", "content": item.get("output"), "tool_call_id": item.get("call_id")})
    return msgs


def chat_body(body: dict[str, Any], defects: set[str]) -> dict[str, Any]:
    """The chat request the fake model generates for a Responses request."""
    chat: dict[str, Any] = {"model": body.get("model"), "messages": _messages(body, defects)}
    for key, to in (("temperature", "temperature"), ("top_p", "top_p"), ("max_output_tokens", "max_tokens")):
        if body.get(key) is not None and not (
            key == "max_output_tokens" and "resp_ignore_max_output_tokens" in defects
        ):
            chat[to] = body[key]
    tools = body.get("tools")
    if tools and "resp_tools_ignored" not in defects:
        chat["tools"] = [
            {
                "type": "function",
                "function": {k: t[k] for k in ("name", "description", "parameters") if k in t},
            }
            for t in tools
        ]
        choice = body.get("tool_choice")
        chat["tool_choice"] = (
            {"type": "function", "function": {"name": choice.get("name")}}
            if isinstance(choice, dict)
            else choice
        )
        if body.get("parallel_tool_calls") is not None:
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    fmt = (body.get("text") or {}).get("format") or {}
    if fmt.get("type") in ("json_object", "json_schema") and "resp_format_ignored" not in defects:
        chat["response_format"] = {
            "type": fmt["type"],
            "json_schema": {"name": fmt.get("name"), "schema": fmt.get("schema")},
        }
    return {k: v for k, v in chat.items() if v is not None}


def _words(messages: list[dict[str, Any]]) -> int:
    return len(json.dumps(messages).split())


def response_obj(
    body: dict[str, Any], chat: dict[str, Any], choice: Choice, defects: set[str]
) -> dict[str, Any]:
    rid = f"resp_{next(_IDS)}"
    output: list[dict[str, Any]] = []
    status = "incomplete" if choice.finish == "length" else "completed"
    for i, call in enumerate(choice.tool_calls):
        args = call["function"]["arguments"] + ("}" if "resp_tool_args_not_json" in defects else "")
        output.append(
            {
                "type": "function_call",
                "id": f"fc_{i}",
                "call_id": call["id"],
                "name": call["function"]["name"],
                "arguments": args,
                "status": "completed",
            }
        )
    if not choice.tool_calls:
        part = {"type": "output_text", "text": choice.text, "annotations": [], "logprobs": []}
        output.append(
            {"type": "message", "id": f"msg_{rid}", "role": "assistant", "status": status, "content": [part]}
        )
    tokens_in = _words(chat["messages"])
    tokens_out = max(1, len(choice.tokens)) if not choice.tool_calls else 5
    usage = {
        "input_tokens": tokens_in,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": tokens_out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": tokens_in + tokens_out + ("resp_usage_wrong_total" in defects),
    }
    response = {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": body["model"],
        "output": output,
        "error": None,
        "instructions": body.get("instructions"),
        "metadata": {},
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "parallel_tool_calls": True,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "usage": usage,
    }
    store = body.get("store") is not False or "resp_store_false_kept" in defects
    if store:
        turn = {"role": "assistant", "content": choice.text or None}
        STORE[rid] = {"response": response, "messages": [*chat["messages"], turn]}
    return response


def stored(response_id: str, defects: set[str]) -> dict[str, Any]:
    if response_id in STORE:
        return dict(STORE[response_id]["response"])
    if "resp_get_unknown_200" in defects and STORE:
        return dict(next(iter(STORE.values()))["response"])
    raise RouteError(404, f"Response with id {response_id!r} not found.", "response_id", "not_found")


def _item_events(index: int, item: dict[str, Any], defects: set[str]) -> list[dict[str, Any]]:
    if item["type"] == "function_call":
        args = item["arguments"]
        done_args = args + ("x" if "resp_args_done_differs" in defects else "")
        return [
            {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**item, "arguments": "", "status": "in_progress"},
            },
            *(
                {
                    "type": "response.function_call_arguments.delta",
                    "item_id": item["id"],
                    "output_index": index,
                    "delta": d,
                }
                for d in (args[: len(args) // 2], args[len(args) // 2 :])
            ),
            {
                "type": "response.function_call_arguments.done",
                "item_id": item["id"],
                "output_index": index,
                "name": item["name"],
                "arguments": done_args,
            },
            {"type": "response.output_item.done", "output_index": index, "item": item},
        ]
    part = item["content"][0]
    text, ids = part["text"], {"item_id": item["id"], "output_index": index, "content_index": 0}
    deltas = [text[i : i + 4] for i in range(0, len(text), 4)]
    done_text = text + ("!" if "resp_done_text_differs" in defects else "")
    closing = [
        {"type": "response.output_text.done", **ids, "text": done_text, "logprobs": []},
        {"type": "response.content_part.done", **ids, "part": part},
    ]
    if "resp_done_order" in defects:
        closing.reverse()
    return [
        {
            "type": "response.output_item.added",
            "output_index": index,
            "item": {**item, "content": [], "status": "in_progress"},
        },
        {"type": "response.content_part.added", **ids, "part": {**part, "text": ""}},
        *({"type": "response.output_text.delta", **ids, "delta": d, "logprobs": []} for d in deltas),
        *closing,
        {"type": "response.output_item.done", "output_index": index, "item": item},
    ]


def response_events(response: dict[str, Any], defects: set[str]) -> list[dict[str, Any]]:
    """The stream of ``response`` in OpenAI's order, numbered."""
    start = {**response, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": start},
        {"type": "response.in_progress", "response": start},
    ]
    for i, item in enumerate(response["output"]):
        events += _item_events(i, item, defects)
    if "resp_no_completed" not in defects:
        end = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        events.append({"type": end, "response": response})
    for n, e in enumerate(events):
        e["sequence_number"] = n
    return events


def generate_response(
    body: dict[str, Any], validate: Any, defects: set[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate and run a Responses request on the fake model: (chat body, response object)."""
    chat = validate(chat_body(body, defects), set())
    (choice,) = generate({**chat, "n": 1}, set())
    return chat, response_obj(body, chat, choice, defects)


# ---- legacy completions ------------------------------------------------------------------


def _prompts(prompt: Any, defects: set[str]) -> list[str]:
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        prompt = [prompt]
    if not isinstance(prompt, list) or not prompt:
        raise RouteError(400, "prompt must be a string, strings or token ids", "prompt")
    out: list[str] = []
    for p in prompt:
        if isinstance(p, list) and all(isinstance(t, int) for t in p) and p:
            if "cmpl_token_ids_500" in defects:
                raise RouteError(500, "token ids crashed the fake")
            out.append("".join(token_text(t) for t in p))
        elif isinstance(p, str):
            out.append(p)
        else:
            raise RouteError(400, "prompt must be a string, strings or token ids", "prompt")
    return out[:1] if "cmpl_prompt_list_one" in defects else out


def _prompt_tokens(text: str) -> list[str]:
    return [w if i == 0 else " " + w for i, w in enumerate(text.split())]


def _legacy_logprobs(prompt: str | None, ch: Choice, k: int, defects: set[str]) -> dict[str, Any]:
    tokens, lps, tops, offsets, pos = [], [], [], [], 0
    entries: list[tuple[str, float | None, dict[str, float] | None]] = []
    if prompt is not None:
        head, *rest = _prompt_tokens(prompt)
        entries = [(head, None, None)] + [(t, -0.5, {t: -0.5}) for t in rest]
    for lp in ch.logprobs or []:
        value = 0.5 if "cmpl_logprobs_positive" in defects else lp["logprob"]
        alternatives = {alt["token"]: alt["logprob"] for alt in lp["top_logprobs"][:k]}
        entries.append((lp["token"], value, alternatives | {lp["token"]: value}))
    for token, value, top in entries:
        tokens.append(token)
        lps.append(value)
        tops.append(top)
        offsets.append(pos)
        pos += len(token)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


def _completion_choices(
    body: dict[str, Any], validate: Any, defects: set[str]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    prompts = _prompts(body.get("prompt"), defects)
    n, k = body.get("n") or 1, body.get("logprobs")
    max_tokens = body.get("max_tokens", 16)
    if "cmpl_ignore_max_tokens" in defects:
        max_tokens = None
    echo = body.get("echo") and "cmpl_ignore_echo" not in defects
    choices: list[dict[str, Any]] = []
    used = {"prompt_tokens": 0, "completion_tokens": 0}
    for p in prompts:
        chat = {"model": body.get("model"), "messages": [{"role": "user", "content": p}], "n": n}
        chat |= {
            key: body[key] for key in ("temperature", "top_p", "stop", "seed") if body.get(key) is not None
        }
        if max_tokens is not None:
            chat["max_tokens"] = max_tokens
        if k is not None:
            chat |= {"logprobs": True, "top_logprobs": k}
        generated = generate(validate(chat, set()), set())
        used["prompt_tokens"] += len(_prompt_tokens(p))
        for ch in generated:
            used["completion_tokens"] += len(ch.tokens)
            lp = _legacy_logprobs(p if body.get("echo") else None, ch, k, defects) if k is not None else None
            text = (p if echo else "") + ch.text
            choices.append({"text": text, "index": len(choices), "logprobs": lp, "finish_reason": ch.finish})
    return choices, used


def completion_obj(body: dict[str, Any], validate: Any, defects: set[str]) -> dict[str, Any]:
    choices, used = _completion_choices(body, validate, defects)
    usage = {**used, "total_tokens": used["prompt_tokens"] + used["completion_tokens"]}
    obj = "chat.completion" if "cmpl_wrong_object" in defects else "text_completion"
    return {
        "id": f"cmpl-{next(_IDS)}",
        "object": obj,
        "created": int(time.time()),
        "model": body["model"],
        "choices": choices,
        "usage": usage,
    }


def completion_chunks(body: dict[str, Any], validate: Any, defects: set[str]) -> list[dict[str, Any]]:
    full = completion_obj(body, validate, defects)
    head = {k: full[k] for k in ("id", "object", "created", "model")}
    out: list[dict[str, Any]] = []
    for c in full["choices"]:
        text, lp = c["text"], c["logprobs"]
        cut = len(text) // 2
        first_lp = lp and {key: v[: len(v) // 2] for key, v in lp.items()}
        rest_lp = lp and {key: v[len(v) // 2 :] for key, v in lp.items()}
        out.append(
            {
                **head,
                "choices": [
                    {"text": text[:cut], "index": c["index"], "logprobs": first_lp, "finish_reason": None}
                ],
            }
        )
        out.append({**head, "choices": [{**c, "text": text[cut:], "logprobs": rest_lp}]})
    if (body.get("stream_options") or {}).get("include_usage"):
        if "cmpl_usage_not_final" in defects:
            out[-1]["usage"] = full["usage"]
        else:
            out.append({**head, "choices": [], "usage": full["usage"]})
    return out
