"""Pure pieces without a server: stop matching, detokenization, sampling semantics."""

from __future__ import annotations

import pytest
import torch

from reference.engine import SamplingParams
from reference.engine.sampling import SamplerState, sample
from reference.errors import ContextLengthExceeded
from reference.presets import TINY_MODEL, get_preset, materialize
from reference.protocol.detokenize import IncrementalDetokenizer
from reference.protocol.prompt import check_prompt_size
from reference.protocol.stops import StopMatcher


@pytest.mark.parametrize(
    "pieces",
    [["Hello wor", "ld. STOP here"], ["Hel", "lo world. ST", "OP"], ["Hello world. S", "T", "O", "P!"]],
)
def test_stop_matcher_across_pieces(pieces: list[str]) -> None:
    m = StopMatcher(["STOP"])
    out = "".join(m.push(p) for p in pieces)
    assert out == "Hello world. "
    assert m.matched == "STOP"


def test_stop_matcher_releases_false_prefix() -> None:
    m = StopMatcher(["STOP"])
    assert m.push("ST") == ""
    assert m.push("ART") == "START"
    assert m.flush() == ""


def test_stop_matcher_earliest_of_several() -> None:
    m = StopMatcher(["world", "lo"])
    assert m.push("hello world") == "hel"


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(materialize(get_preset(TINY_MODEL)))  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["Hello, world!", "naïve café — 東京 🚀🚀", "  spaces\n\nand\ttabs  "])
def test_incremental_detokenizer_matches_full_decode(tokenizer, text: str) -> None:  # type: ignore[no-untyped-def]
    ids = tokenizer.encode(text, add_special_tokens=False)
    d = IncrementalDetokenizer(tokenizer)
    out = "".join(d.push(i) for i in ids) + d.flush()
    assert out == tokenizer.decode(ids, clean_up_tokenization_spaces=False)


def _state(**kw: object) -> SamplerState:
    return SamplerState(SamplingParams(max_new_tokens=10, **kw), vocab_size=5)  # type: ignore[arg-type]


def test_penalties_follow_openai_formula() -> None:
    logits = torch.tensor([5.0, 4.5, 0.0, 0.0, 0.0])
    s = _state(temperature=0.0, frequency_penalty=0.4, presence_penalty=0.2)
    picks = [sample(logits, s)[0] for _ in range(3)]
    # 5.0 → 5-0.4-0.2=4.4 < 4.5 → token 1 → 4.5-0.6=3.9 < 4.4 → token 0
    assert picks == [0, 1, 0]


def test_logprobs_and_top_logprobs() -> None:
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, -2.0])
    token, lp, top = sample(logits, _state(temperature=0.0, top_logprobs=2))
    expected = torch.log_softmax(logits, -1)
    assert token == 0 and lp == pytest.approx(float(expected[0]))
    assert [t for t, _ in top] == [0, 1]


def test_seeded_generators_are_independent_of_global_rng() -> None:
    logits = torch.zeros(5)
    a = [sample(logits, s)[0] for s in [_state(seed=3)] for _ in range(20)]
    torch.manual_seed(999)
    b = [sample(logits, s)[0] for s in [_state(seed=3)] for _ in range(20)]
    assert a == b


def test_top_p_keeps_the_nucleus() -> None:
    logits = torch.tensor([10.0, 9.0, -10.0, -10.0, -10.0])
    s = _state(temperature=1.0, top_p=0.5, seed=0)
    assert {sample(logits, s)[0] for _ in range(50)} == {0}


@pytest.mark.parametrize(
    "text",
    [
        "hello " * 300,
        "\n" + " " * 500,  # the longest vocabulary entries are whitespace runs
        "日本語のテキスト🙂🙂 " * 40,
        "<|im_start|><|im_end|>" * 30,
        "def f(x):\n        return x\n" * 30,
    ],
)
def test_prompt_size_bound_never_exceeds_the_real_count(tokenizer, text: str) -> None:  # type: ignore[no-untyped-def]
    chars_per_token = max(len(piece) for piece in tokenizer.get_vocab())
    real = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    # a context of exactly the real count must pass the pre-check: the bound is a lower bound
    check_prompt_size([{"role": "user", "content": text}], chars_per_token, context_length=real)
    with pytest.raises(ContextLengthExceeded):
        too_long = "x" * (real * chars_per_token + 1)
        check_prompt_size([{"role": "user", "content": too_long}], chars_per_token, real)
