"""Unit tests of ``chatref chat``'s generation flags and command line (no server, no terminal)."""

from __future__ import annotations

import pytest

from reference.cli.chat import parse_args
from reference.cli.chat_flags import FLAGS, FlagError, format_flags, parse_flag, parse_flags, request_kwargs


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        ("temperature=0.2", ("temperature", 0.2)),
        ("temperature=0", ("temperature", 0.0)),
        ("top_p=1", ("top_p", 1.0)),
        ("max_tokens=100", ("max_tokens", 100)),
        ("seed=-3", ("seed", -3)),
        ("frequency_penalty=-2", ("frequency_penalty", -2.0)),
        ("presence_penalty=1.5", ("presence_penalty", 1.5)),
        ("stop=User:", ("stop", "User:")),
        ("stop=a=b", ("stop", "a=b")),  # only the first '=' separates
        (r"stop=\n\n", ("stop", "\n\n")),
        (r"stop=C:\\dir", ("stop", "C:\\dir")),
        ('stop=["\\n", "END"]', ("stop", ["\n", "END"])),
        ("stop= ", ("stop", " ")),  # a stop string keeps its spaces
        ("max_new_tokens=7", ("max_tokens", 7)),  # the transformers name
        ("temp=1", ("temperature", 1.0)),
        ("top_k=40", ("top_k", 40)),
        (" temperature = 0.5 ", ("temperature", 0.5)),
        ("tool_choice=required", ("tool_choice", "required")),
        (
            "tool_choice=get_weather",
            ("tool_choice", {"type": "function", "function": {"name": "get_weather"}}),
        ),
    ],
)
def test_valid_pairs_convert_to_typed_values(pair: str, expected: tuple[str, object]) -> None:
    name, value = parse_flag(pair)
    assert (name, value) == expected
    assert type(value) is type(expected[1])


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("temperature", "expected key=value"),
        ("=3", "missing the name"),
        ("temperature=", "missing the value"),
        ("temperature=hot", "expected a number"),
        ("temperature=nan", "finite"),
        ("temperature=2.5", "must be ≤ 2"),
        ("temperature=-1", "must be ≥ 0"),
        ("top_p=1.1", "must be ≤ 1"),
        ("max_tokens=0", "must be ≥ 1"),
        ("max_tokens=1.5", "expected an integer"),
        ("seed=abc", "expected an integer"),
        ("presence_penalty=3", "must be ≤ 2"),
        ("stop=[1, 2]", "only strings"),
        ("stop=[oops", "not valid JSON"),
        ('stop=["a","b","c","d","e"]', "1 to 4"),
        ('stop=[""]', "cannot be empty"),
        ("temprature=1", "unknown flag 'temprature'"),
        ("n=2", "one answer per turn"),
        ("tool_choice=a b", "a function name"),
    ],
)
def test_malformed_pairs_raise_a_message_naming_the_pair(pair: str, message: str) -> None:
    with pytest.raises(FlagError) as info:
        parse_flag(pair)
    assert message in str(info.value)
    assert repr(pair) in str(info.value)


def test_unknown_flag_lists_the_known_ones() -> None:
    with pytest.raises(FlagError) as info:
        parse_flag("bogus=1")
    for name in FLAGS:
        assert name in str(info.value)


def test_later_pairs_override_earlier_ones() -> None:
    assert parse_flags(["seed=1", "temperature=0", "seed=2"]) == {"seed": 2, "temperature": 0.0}


def test_request_kwargs_puts_non_openai_flags_in_extra_body() -> None:
    kwargs = request_kwargs(parse_flags(["temperature=0.3", "top_k=5", "max_tokens=9"]))
    assert kwargs == {"temperature": 0.3, "max_tokens": 9, "extra_body": {"top_k": 5}}
    assert request_kwargs({}) == {}


def test_format_flags_quotes_text() -> None:
    assert format_flags({}) == "(server defaults)"
    assert format_flags({"seed": 1, "stop": "\n"}) == 'seed=1 stop="\\n"'
    assert format_flags(parse_flags(["tool_choice=f"])) == 'tool_choice="f"'


def test_command_line_splits_model_and_flags_in_any_order() -> None:
    args = parse_args(["temperature=0", "tiny-random-llama", "--base-url", "http://x/v1", "seed=4"])
    assert args.model == "tiny-random-llama"
    assert args.flags == {"temperature": 0.0, "seed": 4}
    assert args.base_url == "http://x/v1"


def test_command_line_defaults() -> None:
    args = parse_args([])
    assert args.model is None
    assert args.flags == {}
    assert args.base_url is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["temperature=abc"], "'temperature=abc': temperature expected a number"),
        (["one", "two"], "one MODEL at most"),
        (["max_tokens=-1"], "must be ≥ 1"),
    ],
)
def test_command_line_errors_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
