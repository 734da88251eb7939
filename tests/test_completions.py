"""Legacy ``/v1/completions`` with the real SDK: prompt forms, sampling, logprobs, echo, errors.

Prompt logprobs (``echo`` with ``logprobs``) are checked against the model's own forward pass
run here with transformers, token by token.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import openai
import pytest

from reference.presets import get_preset, materialize
from tests.helpers import TINY, sse_events

PROMPT = "The quick brown fox"


def _complete(http: httpx.Client, stream: bool = False, **body: Any) -> dict[str, Any]:
    """One request in either mode; a stream is folded into the object a JSON call returns."""
    payload = {"model": TINY, "prompt": PROMPT, "max_tokens": 5, "temperature": 0, **body}
    if stream:
        payload |= {"stream": True, "stream_options": {"include_usage": True}}
    r = http.post("/v1/completions", json=payload)
    assert r.status_code == 200, r.text
    if not stream:
        return dict(r.json())
    events = sse_events(r)
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "text_completion" and c["id"] == chunks[0]["id"] for c in chunks)
    choices: dict[int, dict[str, Any]] = {}
    for c in chunks:
        for ch in c["choices"]:
            entry = choices.setdefault(ch["index"], {"index": ch["index"], "text": "", "logprobs": None})
            entry["text"] += ch["text"]
            entry["finish_reason"] = ch["finish_reason"] or entry.get("finish_reason")
            if ch["logprobs"]:
                lp = entry["logprobs"] = entry["logprobs"] or {k: [] for k in ch["logprobs"]}
                for k, v in ch["logprobs"].items():
                    lp[k].extend(v)
    assert events[-1] == "[DONE]" and chunks[-1]["choices"] == [] and "usage" not in chunks[0]
    return {"choices": [choices[i] for i in sorted(choices)], "usage": chunks[-1]["usage"]}


def test_sdk_create_shape(client: openai.OpenAI) -> None:
    r = client.completions.create(model=TINY, prompt=PROMPT, max_tokens=4)
    assert r.object == "text_completion" and r.id.startswith("cmpl-") and r.model == TINY
    (choice,) = r.choices
    assert choice.index == 0 and choice.finish_reason == "length" and choice.text and choice.logprobs is None
    assert r.usage and r.usage.completion_tokens == 4
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_sdk_stream(client: openai.OpenAI) -> None:
    chunks = list(
        client.completions.create(
            model=TINY,
            prompt=PROMPT,
            max_tokens=4,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    plain = client.completions.create(model=TINY, prompt=PROMPT, max_tokens=4, temperature=0)
    assert text == plain.choices[0].text
    assert chunks[-1].usage and chunks[-1].usage.completion_tokens == 4


def test_stream_folds_to_the_json_response(http: httpx.Client) -> None:
    body: dict[str, Any] = {"n": 2, "prompt": [PROMPT, "Hello"], "logprobs": 2, "echo": True}
    plain, streamed = _complete(http, **body), _complete(http, True, **body)
    assert [c["text"] for c in streamed["choices"]] == [c["text"] for c in plain["choices"]]
    assert [c["logprobs"]["tokens"] for c in streamed["choices"]] == [
        c["logprobs"]["tokens"] for c in plain["choices"]
    ]
    assert streamed["usage"] == plain["usage"]


def test_prompt_forms_agree(http: httpx.Client) -> None:
    scored = _complete(http, echo=True, logprobs=0, max_tokens=0)
    text = _complete(http)
    n_prompt = scored["usage"]["prompt_tokens"]
    assert n_prompt == text["usage"]["prompt_tokens"] == len(scored["choices"][0]["logprobs"]["tokens"])
    token_ids = _token_ids(PROMPT)
    assert len(token_ids) == n_prompt
    as_ids = _complete(http, prompt=token_ids)
    assert as_ids["choices"][0]["text"] == text["choices"][0]["text"]
    batch = _complete(http, prompt=[token_ids, token_ids[:2]], n=2)
    assert [c["index"] for c in batch["choices"]] == [0, 1, 2, 3]
    assert batch["choices"][0]["text"] == batch["choices"][1]["text"] == text["choices"][0]["text"]
    assert batch["usage"]["prompt_tokens"] == n_prompt + 2
    strings = _complete(http, prompt=[PROMPT, PROMPT])
    assert [c["text"] for c in strings["choices"]] == [text["choices"][0]["text"]] * 2


def _token_ids(text: str) -> list[int]:
    from transformers import AutoTokenizer

    preset = get_preset(TINY)
    assert preset is not None
    return [int(t) for t in AutoTokenizer.from_pretrained(materialize(preset))(text)["input_ids"]]


def test_echo_logprobs_are_the_models_own(http: httpx.Client) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    out = _complete(http, echo=True, logprobs=3, max_tokens=2)
    choice = out["choices"][0]
    assert choice["text"].startswith(PROMPT)
    lp = choice["logprobs"]
    ids = _token_ids(PROMPT)
    n = len(ids)
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == n + 2
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert lp["text_offset"] == sorted(lp["text_offset"]) and lp["text_offset"][0] == 0
    assert lp["text_offset"][n] == len(PROMPT)  # the completion's first token starts after the echo
    preset = get_preset(TINY)
    assert preset is not None
    model = AutoModelForCausalLM.from_pretrained(materialize(preset), dtype=torch.float32).eval()
    with torch.inference_mode():
        own = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)  # [n, vocab]
    for i in range(1, n):
        assert math.isclose(lp["token_logprobs"][i], float(own[i - 1, ids[i]]), abs_tol=1e-3)
        tops = lp["top_logprobs"][i]
        assert lp["tokens"][i] in tops and 3 <= len(tops) <= 4
        assert max(tops.values()) == pytest.approx(float(own[i - 1].max()), abs=1e-3)
    plain = _complete(http, logprobs=3, max_tokens=2)["choices"][0]["logprobs"]
    assert plain["token_logprobs"] == pytest.approx(lp["token_logprobs"][n:], abs=1e-4)
    assert plain["text_offset"][0] == 0


def test_prompt_logprobs_across_prefill_chunks_and_a_warm_prefix_cache(http: httpx.Client) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    ids = list(range(10, 310))  # more than one 256-token prefill chunk
    first, again = (_complete(http, prompt=ids, echo=True, logprobs=0, max_tokens=0) for _ in range(2))
    scored = first["choices"][0]["logprobs"]["token_logprobs"]
    assert again["choices"][0]["logprobs"]["token_logprobs"] == scored  # a cached prefix is still scored
    preset = get_preset(TINY)
    assert preset is not None
    model = AutoModelForCausalLM.from_pretrained(materialize(preset), dtype=torch.float32).eval()
    with torch.inference_mode():
        own = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)  # [n, vocab]
    expected = [float(own[i - 1, ids[i]]) for i in range(1, len(ids))]
    assert scored[0] is None and scored[1:] == pytest.approx(expected, abs=1e-3)


def test_max_tokens_zero_scores_the_prompt_only(http: httpx.Client) -> None:
    out = _complete(http, echo=True, logprobs=1, max_tokens=0)
    choice = out["choices"][0]
    assert choice["text"] == PROMPT and choice["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 0
    assert len(choice["logprobs"]["tokens"]) == out["usage"]["prompt_tokens"]


def test_default_max_tokens_is_16(http: httpx.Client) -> None:
    out = _complete(http, max_tokens=None, logit_bias={"2": -100})  # no end token: the default ends it
    assert out["usage"]["completion_tokens"] == 16 and out["choices"][0]["finish_reason"] == "length"


def test_sampling_parameters_apply(http: httpx.Client) -> None:
    seeded = [_complete(http, temperature=1.0, seed=s, max_tokens=6)["choices"][0]["text"] for s in (1, 1, 2)]
    assert seeded[0] == seeded[1] != seeded[2]
    forced = _complete(http, logit_bias={"300": 100}, max_tokens=3, logprobs=0)["choices"][0]["logprobs"]
    assert len(set(forced["tokens"])) == 1
    plain = _complete(http, max_tokens=8)["choices"][0]["text"]
    penalised = _complete(http, max_tokens=8, frequency_penalty=2.0)["choices"][0]["text"]
    assert plain != penalised
    cut = plain[2:5]
    stopped = _complete(http, max_tokens=8, stop=[cut])["choices"][0]
    assert stopped["text"] == plain[: plain.index(cut)] and stopped["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("override", "param", "code"),
    [
        ({"suffix": "tail"}, "suffix", "unsupported_parameter"),
        ({"best_of": 3}, "best_of", "unsupported_parameter"),
        ({"best_of": 1, "n": 2}, "best_of", "invalid_value"),
        ({"max_tokens": 0}, "max_tokens", "invalid_value"),
        ({"prompt": []}, "prompt", "invalid_value"),
        ({"prompt": [[1, 2], []]}, "prompt[1]", "invalid_value"),
        ({"prompt": [1, 10**9]}, "prompt", "invalid_value"),
        ({"prompt": [{"text": "x"}]}, "prompt[0]", "invalid_value"),
        ({"prompt": "x " * 3000}, "prompt", "context_length_exceeded"),
        ({"max_tokens": 100_000}, "max_tokens", "context_length_exceeded"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "invalid_value"),
        ({"logprobs": 21}, "logprobs", "invalid_value"),
        ({"logit_bias": {"x": 1}}, "logit_bias", "invalid_value"),
    ],
)
def test_bad_requests_get_the_envelope(
    http: httpx.Client, override: dict[str, Any], param: str, code: str
) -> None:
    r = http.post("/v1/completions", json={"model": TINY, "prompt": PROMPT, **override})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["param"], err["code"], err["type"]) == (param, code, "invalid_request_error")
