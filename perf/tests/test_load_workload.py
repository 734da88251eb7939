"""The load workload: seeded order of the built-in prompts, JSONL datasets, request bodies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perf.load import builtin_workload, dataset_workload
from perf.load.prompts import BUILTIN_PROMPTS


def test_builtin_prompts_are_varied_and_of_the_intended_length() -> None:
    assert len(BUILTIN_PROMPTS) >= 24 and len(set(BUILTIN_PROMPTS)) == len(BUILTIN_PROMPTS)
    words = [len(p.split()) for p in BUILTIN_PROMPTS]
    assert min(words) >= 25 and max(words) <= 100  # 33-106 tokens with SmolLM2's tokenizer
    assert max(words) >= 2 * min(words)  # prefill cost varies


def test_the_seed_fixes_the_order_and_every_prompt_is_used() -> None:
    a, b, c = builtin_workload(seed=1), builtin_workload(seed=1), builtin_workload(seed=2)
    n = len(BUILTIN_PROMPTS)
    assert a.order == b.order != c.order and sorted(a.order) == list(range(n))
    assert a.request(n + 3) == a.request(3)  # cycles past the end


def test_a_body_streams_with_usage_and_the_defaults() -> None:
    body = builtin_workload(max_tokens=12, temperature=0.5).body(0, "m")
    assert body["model"] == "m" and body["max_tokens"] == 12 and body["temperature"] == 0.5
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"][0]["role"] == "user" and body["messages"][0]["content"] in BUILTIN_PROMPTS


def test_dataset_lines_keep_their_own_parameters_but_not_the_benchmarks(tmp_path: Path) -> None:
    path = tmp_path / "chats.jsonl"
    lines = [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]},
        {"messages": [{"role": "user", "content": "Count"}], "max_tokens": 3, "top_p": 0.9,
         "stream": False, "model": "other"},
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    wl = dataset_workload(path, max_tokens=20, seed=0)
    bodies = {len(b["messages"]): b for b in (wl.body(i, "m") for i in range(2))}
    assert bodies[2]["max_tokens"] == 20 and bodies[2]["messages"][0]["content"] == "Be brief."
    assert bodies[1]["max_tokens"] == 3 and bodies[1]["top_p"] == 0.9
    assert bodies[1]["stream"] is True and bodies[1]["model"] == "m"
    assert wl.describe()["name"] == "chats.jsonl" and wl.describe()["requests_in_set"] == 2


@pytest.mark.parametrize(
    ("text", "match"), [("not json", "not JSON"), ('{"prompt": "x"}', "messages"), ("", "no")]
)
def test_a_bad_dataset_is_refused_with_its_line(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(text + "\n")
    with pytest.raises(ValueError, match=match):
        dataset_workload(path)
