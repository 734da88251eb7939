"""The ``<think>`` split on its own: exact whatever the chunking, with the thinking fixture's real
tokenizer and chat template (the tags are three tokens each there, so token boundaries fall
inside them), the template's forced-open block detected from the prompt, the grammar that
leaves the thoughts free, and which parser each model of a table gets.
"""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path
from typing import Any

import pytest

from reference.cli.serve import settings_from_args
from reference.config import ConfigError
from reference.presets import THINK_MODEL, get_preset, materialize
from reference.protocol.detokenize import IncrementalDetokenizer
from reference.protocol.grammar import json_grammar, with_reasoning
from reference.protocol.prompt import render_prompt
from reference.protocol.reasoning import ReasoningParser, ThinkTags, parser_tags, reasoning_mode

_TAGS = parser_tags("think")
assert _TAGS is not None
TAGS: ThinkTags = _TAGS
# (generated text, whether the prompt opened the block, expected (reasoning, content))
CASES = [
    ("I add them.\n</think>\n\n2 + 2 = 4.", True, ("I add them.", "2 + 2 = 4.")),
    ("<think>\nI add them.\n</think>\n\n2 + 2 = 4.", False, ("I add them.", "2 + 2 = 4.")),
    ("<think>\nI add them.\n</think>\n\n2 + 2 = 4.", True, ("I add them.", "2 + 2 = 4.")),  # opened twice
    ("\n\n<think>a <b> </th c\n\n</think>x </think> y", False, ("a <b> </th c", "x </think> y")),
    ("No thinking, <think>here</think> at all.", False, ("", "No thinking, <think>here</think> at all.")),
    ("\n\nPlain answer.", False, ("", "\n\nPlain answer.")),
    ("Cut off in the middle </thi", True, ("Cut off in the middle </thi", "")),
    ("<think>\nnever closed\n", False, ("never closed", "")),
    ("</think>\n\nno thoughts", True, ("", "no thoughts")),
    ("<thi", False, ("", "<thi")),
]


def split(text: str, opened: bool, pieces: list[str]) -> tuple[str, str]:
    parser = ReasoningParser(TAGS, opened)
    reasoning = content = ""
    for piece in pieces:
        r, c = parser.feed(piece)
        reasoning, content = reasoning + r, content + c
    r, c = parser.finish()
    assert "".join(pieces) == text
    return reasoning + r, content + c


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    preset = get_preset(THINK_MODEL)
    assert preset is not None
    return AutoTokenizer.from_pretrained(materialize(preset))


@pytest.mark.parametrize(("text", "opened", "expected"), CASES)
def test_every_character_split_gives_the_same_result(text: str, opened: bool, expected: Any) -> None:
    assert split(text, opened, [text]) == expected
    assert split(text, opened, list(text)) == expected
    for cut in range(len(text) + 1):
        assert split(text, opened, [text[:cut], text[cut:]]) == expected
    rng = random.Random(0)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(0, len(text) - 1)))
        pieces = [text[a:b] for a, b in itertools.pairwise([0, *cuts, len(text)])]
        assert split(text, opened, pieces) == expected


@pytest.mark.parametrize(("text", "opened", "expected"), CASES[:4])
def test_token_by_token_through_the_real_detokenizer(
    tokenizer: Any, text: str, opened: bool, expected: Any
) -> None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    tag_ids = tokenizer.encode(TAGS.close, add_special_tokens=False)
    assert len(tag_ids) > 1, "the test needs a tag that spans token boundaries"
    detok = IncrementalDetokenizer(tokenizer)
    pieces = [detok.push(i) for i in ids] + [detok.flush()]
    assert split(text, opened, pieces) == expected
    for a, b in itertools.combinations(range(1, len(ids)), 2):  # every 3-way cut at token boundaries
        cut = [tokenizer.decode(ids[s:e]) for s, e in ((0, a), (a, b), (b, len(ids)))]
        if "".join(cut) == text:
            assert split(text, opened, cut) == expected


def test_the_template_that_opens_the_block_is_detected(tokenizer: Any) -> None:
    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    opened = render_prompt(tokenizer, messages)
    mode = reasoning_mode("think", tokenizer, opened)
    assert mode is not None and mode.opened
    closed = render_prompt(tokenizer, messages, None, {"enable_thinking": False})
    mode = reasoning_mode("qwen3", tokenizer, closed)  # vLLM's name for the same parser
    assert mode is not None and not mode.opened
    assert reasoning_mode("none", tokenizer, opened) is None
    assert reasoning_mode(None, tokenizer, opened) is None


def test_reasoning_effort_and_unknown_variables_reach_the_template(tokenizer: Any) -> None:
    messages = [{"role": "user", "content": "hi"}]
    plain = tokenizer.decode(render_prompt(tokenizer, messages))
    high = tokenizer.decode(render_prompt(tokenizer, messages, None, {"reasoning_effort": "high"}))
    assert "Reasoning: high" in high and "Reasoning:" not in plain
    assert tokenizer.decode(render_prompt(tokenizer, messages, None, {"not_in_template": 1})) == plain


@pytest.mark.parametrize("opened", [True, False])
def test_grammar_leaves_the_thoughts_free(tokenizer: Any, opened: bool) -> None:
    import llguidance.hf
    from llguidance import LLMatcher

    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    lark = with_reasoning(json_grammar(schema), TAGS.open, TAGS.close, opened=opened)
    ll = llguidance.hf.from_tokenizer(tokenizer, n_vocab=len(tokenizer), eos_token=[tokenizer.eos_token_id])

    def accepts(text: str) -> bool:
        matcher = LLMatcher(ll, LLMatcher.grammar_from_lark(lark))
        ok = all(matcher.consume_token(t) for t in tokenizer.encode(text, add_special_tokens=False))
        return ok and bool(matcher.is_accepting())

    head = "" if opened else "<think>\n"
    assert accepts(head + 'I think {"a": 2} is right.\n</think>\n\n{"a": 1}')
    assert not accepts(head + 'Thinking.\n</think>\n\nThe answer is {"a": 1}')
    assert accepts('{"a": 1}') is not opened  # without the block only when the prompt did not open it


def _parsers(*argv: str) -> dict[str, str | None]:
    return {s.id: s.reasoning_parser for s in settings_from_args(list(argv)).sources()}


def test_the_parser_is_chosen_per_model(tmp_path: Path) -> None:
    assert _parsers("--model", "tiny", "--model", THINK_MODEL) == {
        "tiny-random-llama": None,
        THINK_MODEL: "think",
    }
    assert _parsers(
        "--model", "r1=tiny,reasoning_parser=deepseek_r1", "--model", "think,reasoning_parser=none"
    ) == {
        "r1": "deepseek_r1",
        THINK_MODEL: None,
    }
    # the flag sets every model that does not set its own, a preset's own parser included
    assert _parsers(
        "--reasoning-parser", "qwen3", "--model", "tiny", "--model", "t=tiny,reasoning_parser=none"
    ) == {
        "tiny-random-llama": "qwen3",
        "t": None,
    }
    assert _parsers("--reasoning-parser", "none", "--model", THINK_MODEL) == {THINK_MODEL: None}
    config = tmp_path / "models.toml"
    config.write_text('[server]\nreasoning_parser = "think"\n[[model]]\nsource = "tiny"\n')
    assert _parsers("--config", str(config)) == {"tiny-random-llama": "think"}
    config.write_text('[[model]]\nsource = "tiny"\nreasoning_parser = "harmony"\n')
    with pytest.raises(ConfigError, match=re.escape("reasoning_parser = 'harmony': expected none | think")):
        settings_from_args(["--config", str(config)])
    with pytest.raises(ConfigError, match="reasoning_parser"):
        settings_from_args(["--model", "tiny,reasoning_parser=r2"]).sources()
    with pytest.raises(SystemExit):
        settings_from_args(["--reasoning-parser", "r2"])
